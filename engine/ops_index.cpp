// Indexing ops: gather / scatter_add (each the other's adjoint), index_select (adjoint: index_add)
// and one_hot. Index values are checked on the host before any output is written, so a bad index
// is reported as an orbit::Error naming the op, the value and the valid range.
#include "engine/op_utils.h"

namespace orbit {

using namespace detail;

namespace {

void check_index_tensor(const Tensor& x, const Tensor& index, const char* op) {
  check_defined(index, op, "index");
  ORBIT_CHECK(index.dtype() == DType::I64, op, ": index must be an int64 tensor, got ",
              dtype_name(index.dtype()));
  ORBIT_CHECK(index.device() == x.device(), op, ": index is on ", index.device().str(),
              " but the input is on ", x.device().str());
}

// Every value of `index` must lie in [0, size) (negative indices are not wrapped, as in PyTorch).
void check_index_range(const Tensor& index, int64_t size, int64_t dim, const char* op) {
  for (int64_t v : index.to_vector<int64_t>())
    ORBIT_CHECK(v >= 0 && v < size, op, ": index ", v, " is out of range for dim ", dim,
                " of size ", size, " (valid range [0, ", size, "))");
}

// The kernels without checks or recording, shared by the ops and their backward functions.
Tensor gather_raw(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor out = empty_like(x, index.shape());
  if (out.numel() > 0) backend_of(x).gather(contiguous_data(x), dim, contiguous_data(index), out);
  return out;
}

// zeros(shape) with src (index-shaped) added at index along dim.
Tensor scatter_add_into_zeros(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor out = Tensor::zeros(shape, src.dtype(), src.device());
  if (index.numel() > 0)
    backend_of(src).scatter_add(contiguous_data(src), dim, contiguous_data(index), out);
  return out;
}

// Handles 0-d operands as 1-element vectors (PyTorch accepts dim 0 / -1 for them).
int64_t index_dim(int64_t dim, int64_t ndim, const char* op) {
  return normalize_dim(dim, ndim == 0 ? 1 : ndim, op);
}
Tensor as_1d_if_scalar(const Tensor& t) { return t.dim() == 0 ? t.reshape({1}) : t; }

}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  check_defined(x, op, "x");
  check_index_tensor(x, index, op);
  ORBIT_CHECK(index.dim() == x.dim(), op, ": index ", shape_str(index.shape()),
              " must have the same number of dims as the input ", shape_str(x.shape()));
  const int64_t d = index_dim(dim, x.dim(), op);
  const Tensor x1 = as_1d_if_scalar(x), i1 = as_1d_if_scalar(index);
  for (int64_t k = 0; k < x1.dim(); ++k)
    ORBIT_CHECK(k == d || i1.shape()[k] <= x1.shape()[k], op, ": index ", shape_str(index.shape()),
                " is larger than the input ", shape_str(x.shape()), " in dim ", k,
                " (only dim ", d, " may differ)");
  check_index_range(i1, x1.shape()[d], d, op);
  Tensor out = gather_raw(x1, d, i1).reshape(index.shape());
  const Shape xshape = x.shape(), x1shape = x1.shape();
  const Tensor idx = i1;
  record(op, out, {x}, [xshape, x1shape, idx, d](const Tensor& g) -> std::vector<Tensor> {
    return {scatter_add_into_zeros(x1shape, d, idx, as_1d_if_scalar(g)).reshape(xshape)};
  });
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add";
  check_same(x, src, op);
  check_index_tensor(x, index, op);
  ORBIT_CHECK(index.dim() == x.dim() && src.dim() == x.dim(), op, ": input ", shape_str(x.shape()),
              ", index ", shape_str(index.shape()), " and src ", shape_str(src.shape()),
              " must have the same number of dims");
  const int64_t d = index_dim(dim, x.dim(), op);
  const Tensor x1 = as_1d_if_scalar(x), i1 = as_1d_if_scalar(index), s1 = as_1d_if_scalar(src);
  for (int64_t k = 0; k < x1.dim(); ++k) {
    ORBIT_CHECK(i1.shape()[k] <= s1.shape()[k], op, ": index ", shape_str(index.shape()),
                " is larger than src ", shape_str(src.shape()), " in dim ", k);
    ORBIT_CHECK(k == d || i1.shape()[k] <= x1.shape()[k], op, ": index ", shape_str(index.shape()),
                " is larger than the input ", shape_str(x.shape()), " in dim ", k,
                " (only dim ", d, " may differ)");
  }
  check_index_range(i1, x1.shape()[d], d, op);
  // Only the index-shaped leading block of src is used (as PyTorch).
  Tensor src_used = s1.detach();
  for (int64_t k = 0; k < s1.dim(); ++k) src_used = src_used.narrow(k, 0, i1.shape()[k]);
  Tensor out = empty_like(x, x1.shape());
  backend_of(x).copy(x1.detach(), out);
  if (i1.numel() > 0)
    backend_of(x).scatter_add(contiguous_data(src_used), d, contiguous_data(i1), out);
  out = out.reshape(x.shape());
  const Shape sshape = s1.shape(), src_shape = src.shape();
  const Tensor idx = i1;
  record(op, out, {x, src}, [idx, d, sshape, src_shape](const Tensor& g) -> std::vector<Tensor> {
    // d/dx is the identity; d/dsrc gathers g at the same positions (zero where src was unused).
    const Tensor picked = gather_raw(as_1d_if_scalar(g), d, idx);
    Tensor gsrc = picked;
    if (picked.shape() != sshape) {
      gsrc = Tensor::zeros(sshape, g.dtype(), g.device());
      Tensor block = gsrc;
      for (int64_t k = 0; k < block.dim(); ++k) block = block.narrow(k, 0, picked.shape()[k]);
      block.copy_(picked);
    }
    return {g, gsrc.reshape(src_shape)};
  });
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  check_defined(x, op, "x");
  check_index_tensor(x, index, op);
  ORBIT_CHECK(x.dim() >= 1, op, ": expected an input with at least one dim, got a 0-d tensor");
  ORBIT_CHECK(index.dim() <= 1, op, ": index must be 1-D, got shape ", shape_str(index.shape()));
  const int64_t d = normalize_dim(dim, x.dim(), op);
  const Tensor idx = index.reshape({index.numel()});
  check_index_range(idx, x.shape()[d], d, op);
  Shape oshape = x.shape();
  oshape[d] = idx.numel();
  Tensor out = empty_like(x, oshape);
  if (out.numel() > 0) backend_of(x).index_select(contiguous_data(x), d, contiguous_data(idx), out);
  const Shape xshape = x.shape();
  record(op, out, {x}, [xshape, idx, d](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = Tensor::zeros(xshape, g.dtype(), g.device());
    if (g.numel() > 0) backend_of(g).index_add(contiguous_data(g), d, contiguous_data(idx), gx);
    return {gx};
  });
  return out;
}

Tensor one_hot(const Tensor& labels, int64_t num_classes, DType dtype) {
  const char* op = "one_hot";
  check_defined(labels, op, "labels");
  ORBIT_CHECK(labels.dtype() == DType::I64, op, ": labels must be an int64 tensor of class indices, got ",
              dtype_name(labels.dtype()));
  ORBIT_CHECK(num_classes > 0, op, ": num_classes must be positive, got ", num_classes);
  ORBIT_CHECK(is_floating(dtype), op, ": output dtype must be float32 or float64, got ",
              dtype_name(dtype));
  for (int64_t v : labels.to_vector<int64_t>())
    ORBIT_CHECK(v >= 0 && v < num_classes, op, ": label ", v, " is out of range for ", num_classes,
                " classes (valid range [0, ", num_classes, "))");
  NoGradGuard ng;
  Shape oshape = labels.shape();
  oshape.push_back(num_classes);
  // [..., 1] == [C] broadcast to [..., C].
  const Tensor classes = Tensor::arange(num_classes, DType::I64, labels.device());
  return eq(labels.unsqueeze(-1).expand(oshape), classes.expand(oshape)).to(dtype);
}

}  // namespace orbit

// Reductions, softmax and the broadcasting adjoint sum_to.
#include <algorithm>

#include "engine/op_utils.h"

namespace orbit {

namespace detail {
std::vector<bool> dim_mask(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<bool> mask(ndim, dims.empty());
  for (int64_t d : dims) {
    const int64_t nd = normalize_dim(d, ndim, op);
    if (ndim == 0) continue;
    ORBIT_CHECK(!mask[nd], op, ": dim ", d, " listed twice in ", shape_str(dims));
    mask[nd] = true;
  }
  return mask;
}
}  // namespace detail

using namespace detail;

namespace {

Shape keepdim_shape(const Shape& s, const std::vector<bool>& mask) {
  Shape k = s;
  for (size_t d = 0; d < s.size(); ++d)
    if (mask[d]) k[d] = 1;
  return k;
}

Shape squeezed_shape(const Shape& s, const std::vector<bool>& mask) {
  Shape k;
  for (size_t d = 0; d < s.size(); ++d)
    if (!mask[d]) k.push_back(s[d]);
  return k;
}

// Runs a reduction kernel into a keepdim-shaped output (no autograd).
Tensor reduce_raw(ReduceOp op, const Tensor& x, const std::vector<bool>& mask) {
  Tensor out = empty_like(x, keepdim_shape(x.shape(), mask));
  backend_of(x).reduce(op, x.detach(), mask, out);
  return out;
}

int64_t reduced_count(const Shape& s, const std::vector<bool>& mask) {
  int64_t n = 1;
  for (size_t d = 0; d < s.size(); ++d)
    if (mask[d]) n *= s[d];
  return n;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined(x, "sum", "x");
  const auto mask = dim_mask(dims, x.dim(), "sum");
  Tensor out = reduce_raw(ReduceOp::Sum, x, mask);
  if (!keepdim) out = out.view(squeezed_shape(x.shape(), mask));
  const Shape in_shape = x.shape(), kshape = keepdim_shape(x.shape(), mask);
  if (is_floating(x.dtype()))
    record("sum", out, {x}, [in_shape, kshape](const Tensor& g) -> std::vector<Tensor> {
      return {g.reshape(kshape).expand(in_shape)};
    });
  return out;
}

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined(x, "mean", "x");
  check_floating(x, "mean");
  const auto mask = dim_mask(dims, x.dim(), "mean");
  const int64_t n = reduced_count(x.shape(), mask);
  ORBIT_CHECK(n > 0, "mean: reducing over zero elements (shape ", shape_str(x.shape()), ")");
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(n));
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

namespace {
Tensor extreme(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool is_max) {
  const char* name = is_max ? "amax" : "amin";
  check_defined(x, name, "x");
  const auto mask = dim_mask(dims, x.dim(), name);
  ORBIT_CHECK(reduced_count(x.shape(), mask) > 0, name, ": reducing over zero elements (shape ",
              shape_str(x.shape()), ")");
  Tensor kept = reduce_raw(is_max ? ReduceOp::Max : ReduceOp::Min, x, mask);
  Tensor out = keepdim ? kept : kept.view(squeezed_shape(x.shape(), mask));
  if (!is_floating(x.dtype())) return out;
  SavedTensor sx(x, name), sk(kept, name);
  const std::vector<int64_t> all_dims = [&] {
    std::vector<int64_t> v;
    for (size_t d = 0; d < mask.size(); ++d)
      if (mask[d]) v.push_back(static_cast<int64_t>(d));
    return v;
  }();
  const Shape kshape = kept.shape();
  record(name, out, {x}, [sx, sk, kshape, all_dims](const Tensor& g) -> std::vector<Tensor> {
    const Tensor x = sx.get(), k = sk.get();
    // Ties share the gradient equally.
    const Tensor hit = eq(x, k);
    const Tensor count = sum(hit, all_dims, true);
    return {mul(div(hit, count), g.reshape(kshape))};
  });
  return out;
}
}  // namespace

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme(x, dims, keepdim, true);
}
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme(x, dims, keepdim, false);
}

namespace {
std::pair<Tensor, Tensor> arg_extreme(const Tensor& x, int64_t dim, bool keepdim, bool is_max) {
  const char* name = is_max ? "max" : "min";
  check_defined(x, name, "x");
  ORBIT_CHECK(x.dim() > 0, name, ": expected a tensor with at least one dim, got a 0-d tensor");
  const int64_t d = normalize_dim(dim, x.dim(), name);
  ORBIT_CHECK(x.shape()[d] > 0, name, ": dim ", d, " has size 0 (shape ", shape_str(x.shape()), ")");
  Shape kshape = x.shape();
  kshape[d] = 1;
  Tensor values = empty_like(x, kshape);
  Tensor indices = Tensor::empty(kshape, DType::I64, x.device());
  backend_of(x).arg_reduce(is_max, contiguous_data(x), d, values, indices);
  if (!keepdim) {
    values = values.squeeze(d);
    indices = indices.squeeze(d);
  }
  if (is_floating(x.dtype())) {
    const Shape in_shape = x.shape();
    const Tensor idx = indices.reshape(kshape);
    record(name, values, {x}, [in_shape, idx, d, kshape](const Tensor& g) -> std::vector<Tensor> {
      // The gradient goes to the selected index: a one-hot mask along d.
      Shape ashape(in_shape.size(), 1);
      ashape[d] = in_shape[d];
      const Tensor positions = Tensor::arange(in_shape[d], DType::I64, g.device()).reshape(ashape);
      const Tensor onehot = eq(positions.expand(in_shape), idx.expand(in_shape)).to(g.dtype());
      return {mul(onehot, g.reshape(kshape))};
    });
  }
  return {values, indices};
}
}  // namespace

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extreme(x, dim, keepdim, true);
}
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extreme(x, dim, keepdim, false);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return arg_extreme(x, dim, keepdim, true).second;
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return arg_extreme(x, dim, keepdim, false).second;
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, bool unbiased, bool keepdim) {
  check_defined(x, "var", "x");
  check_floating(x, "var");
  const auto mask = dim_mask(dims, x.dim(), "var");
  const int64_t n = reduced_count(x.shape(), mask);
  const int64_t denom = n - (unbiased ? 1 : 0);
  ORBIT_CHECK(denom > 0, "var: ", n, " elements are too few for the ",
              unbiased ? "unbiased" : "biased", " variance (shape ", shape_str(x.shape()), ")");
  const Tensor centered = sub(x, mean(x, dims, true));
  return mul(sum(square(centered), dims, keepdim), 1.0 / static_cast<double>(denom));
}

namespace {
Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_defined(x, name, "x");
  check_floating(x, name);
  const int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), name);
  const Tensor xc = contiguous_data(x.dim() == 0 ? x.reshape({1}) : x);
  Tensor out = empty_like(x, xc.shape());
  backend_of(x).softmax(xc, d, log, out);
  if (x.dim() == 0) out = out.reshape({});
  SavedTensor so(out, name);
  record(name, out, {x}, [so, d, log](const Tensor& g) -> std::vector<Tensor> {
    const Tensor y = so.get();
    const Shape shape = y.shape();
    const Tensor yc = y.dim() == 0 ? y.reshape({1}) : y;
    Tensor gx = empty_like(g, yc.shape());
    backend_of(g).softmax_backward(yc, contiguous_data(g).reshape(yc.shape()), d, log, gx);
    return {gx.reshape(shape)};
  });
  return out;
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  ORBIT_CHECK(shape.size() <= x.shape().size(), "sum_to: cannot sum shape ", shape_str(x.shape()),
              " to the higher-rank shape ", shape_str(shape));
  const size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (d < lead) {
      dims.push_back(static_cast<int64_t>(d));
      continue;
    }
    const int64_t want = shape[d - lead];
    ORBIT_CHECK(want == x.shape()[d] || want == 1, "sum_to: shape ", shape_str(x.shape()),
                " does not broadcast from ", shape_str(shape));
    if (want == 1 && x.shape()[d] != 1) dims.push_back(static_cast<int64_t>(d));
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace orbit

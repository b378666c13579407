#include "engine/tensor.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace orbit {

// ====================================================================== helpers

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string did_you_mean(const std::string& got, const std::vector<std::string>& names) {
  // Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
  // neighbouring characters each cost 1; letters compare without case.
  auto distance = [](const std::string& a, const std::string& b) {
    auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); ++i)
      for (size_t j = 1; j <= b.size(); ++j) {
        const size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
        d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
        if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
          d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    return d[a.size()][b.size()];
  };
  const size_t limit = got.size() / 3;  // so a name of one or two letters differs in case only
  const std::string* best = nullptr;
  size_t best_distance = limit + 1;
  for (const std::string& n : names) {
    const size_t dist = distance(got, n);
    if (n != got && dist < best_distance) {  // the first of equally close names
      best = &n;
      best_distance = dist;
    }
  }
  return best ? " (did you mean \"" + *best + "\"?)" : std::string();
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  ORBIT_CHECK(dim >= lo && dim <= hi, op, ": dim ", dim, " is out of range for a tensor of rank ",
              ndim, " (expected a dim in [", lo, ", ", hi, "])");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ORBIT_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

std::shared_ptr<TensorImpl> make_impl(std::shared_ptr<Storage> storage, Shape shape, Shape strides,
                                      int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = dtype;
  return impl;
}

// A view of `base` with new geometry, sharing storage; no autograd record.
Tensor alias(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  return Tensor(make_impl(base.storage(), std::move(shape), std::move(strides), offset, base.dtype()));
}

// Strides for viewing (shape, strides) as new_shape without copying, if possible (PyTorch's rule:
// each run of dims that is contiguous in memory may be split or merged).
std::optional<Shape> view_strides(const Shape& old_shape, const Shape& old_strides,
                                  const Shape& new_shape) {
  Shape new_strides(new_shape.size());
  if (old_shape.empty()) return contiguous_strides(new_shape);
  if (shape_numel(old_shape) == 0) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = static_cast<int64_t>(old_shape.size()) - 1; td >= 0; --td) {
    tensor_numel *= old_shape[td];
    if (td == 0 || (old_shape[td - 1] != 1 && old_strides[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        new_strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (td > 0) {
        chunk_base_stride = old_strides[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return new_strides;
}

// Resolves a single -1 in a requested shape.
Shape infer_shape(const Shape& requested, int64_t numel, const char* op, const Shape& from) {
  Shape s = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      ORBIT_CHECK(infer < 0, op, ": only one dim may be -1, got shape ", shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      ORBIT_CHECK(s[i] >= 0, op, ": invalid size ", s[i], " in shape ", shape_str(requested));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    ORBIT_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(requested),
                " is invalid for a tensor of shape ", shape_str(from), " (", numel, " elements)");
    s[infer] = numel / known;
  }
  ORBIT_CHECK(shape_numel(s) == numel, op, ": cannot reshape a tensor of shape ", shape_str(from),
              " (", numel, " elements) to ", shape_str(requested), " (", shape_numel(s),
              " elements)");
  return s;
}

void check_inplace(const Tensor& t, const char* op) {
  ORBIT_CHECK(!(grad_enabled() && (t.requires_grad() || t.grad_fn())), op,
              ": in-place write to a tensor that takes part in autograd (requires_grad or produced by "
              "a recorded op) while grad mode is on; use NoGradGuard or an out-of-place op");
}

}  // namespace

// ====================================================================== storage

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = backend(device).allocate(nbytes);
}

Storage::~Storage() {
  if (data_) {
    try {
      backend(device_).deallocate(data_, nbytes_);
    } catch (...) {
      // Destructors must not throw; a backend that vanished at exit leaks instead.
    }
  }
}

// ====================================================================== factories

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape)
    ORBIT_CHECK(s >= 0, "Tensor::empty: negative size in shape ", shape_str(shape));
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  auto storage = std::make_shared<Storage>(nbytes, device);
  return Tensor(make_impl(std::move(storage), shape, contiguous_strides(shape), 0, dtype));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  backend(device).fill(t, value);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

namespace {
template <class T>
Tensor from_host(const std::vector<T>& values, const Shape& shape, Device device) {
  ORBIT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from_vector: ",
              values.size(), " values do not fill shape ", shape_str(shape), " (",
              shape_numel(shape), " elements)");
  Tensor t = Tensor::empty(shape, dtype_of<T>::value, device);
  backend(device).copy_from_host(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}
}  // namespace

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s, Device d) { return from_host(v, s, d); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s, Device d) { return from_host(v, s, d); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& s, Device d) { return from_host(v, s, d); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  ORBIT_CHECK(n >= 0, "Tensor::arange: expected n >= 0, got ", n);
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 0.0);
  return from_vector(v, {n}, device).to(dtype);
}

namespace {
// Random values are always drawn on the host in element order, so results do not depend on the
// device or thread count.
template <class F>
Tensor random_tensor(const Shape& shape, DType dtype, Device device, F draw) {
  ORBIT_CHECK(is_floating(dtype), "random tensor: expected a floating dtype, got ", dtype_name(dtype));
  std::vector<double> v(shape_numel(shape));
  for (auto& x : v) x = draw();
  return Tensor::from_vector(v, shape, device).to(dtype);
}
}  // namespace

Tensor Tensor::rand(const Shape& shape, Generator* gen, DType dtype, Device device) {
  Generator& g = gen ? *gen : default_generator();
  return random_tensor(shape, dtype, device, [&] { return g.next_double(); });
}
Tensor Tensor::randn(const Shape& shape, Generator* gen, DType dtype, Device device) {
  Generator& g = gen ? *gen : default_generator();
  return random_tensor(shape, dtype, device, [&] { return g.normal(); });
}
Tensor Tensor::uniform(const Shape& shape, double lo, double hi, Generator* gen, DType dtype,
                       Device device) {
  ORBIT_CHECK(lo <= hi, "Tensor::uniform: expected lo <= hi, got [", lo, ", ", hi, ")");
  Generator& g = gen ? *gen : default_generator();
  return random_tensor(shape, dtype, device, [&] { return lo + (hi - lo) * g.next_double(); });
}

// ====================================================================== metadata

int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "Tensor::size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[normalize_dim(d, dim(), "Tensor::stride")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return str_cat("Tensor(", dtype_name(dtype()), ", ", shape_str(shape()), ", ", device().str(), ")");
}

void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

void Tensor::check_dtype_for_access(DType t) const {
  ORBIT_CHECK(dtype() == t, "Tensor::data<", dtype_name(t), ">: the tensor holds ", dtype_name(dtype()));
}

double Tensor::item() const {
  ORBIT_CHECK(numel() == 1, "Tensor::item: expected a tensor with one element, got shape ",
              shape_str(shape()));
  return to_vector<double>()[0];
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c;
  {
    NoGradGuard ng;
    c = to(Device::cpu()).contiguous();  // no copy for a contiguous CPU tensor
  }
  // Converted element by element straight into the vector, without a converted tensor in between (a
  // large temporary costs fresh pages from the system on every call).
  return dispatch_all(c.dtype(), "to_vector", [&](auto tag) {
    using S = decltype(tag);
    const S* p = static_cast<const S*>(c.raw_data());
    std::vector<T> out(static_cast<size_t>(c.numel()));
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(p[i]);
    return out;
  });
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

// ====================================================================== views

Tensor Tensor::view(const Shape& requested) const {
  const Shape new_shape = infer_shape(requested, numel(), "view", shape());
  auto st = view_strides(shape(), strides(), new_shape);
  ORBIT_CHECK(st.has_value(), "view: shape ", shape_str(requested), " is incompatible with the strides ",
              shape_str(strides()), " of a tensor of shape ", shape_str(shape()),
              "; use reshape() (which copies when needed)");
  Tensor out = alias(*this, new_shape, *st, offset());
  const Shape in_shape = shape();
  record("view", out, {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {g.reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape new_shape = infer_shape(requested, numel(), "reshape", shape());
  if (view_strides(shape(), strides(), new_shape)) return view(new_shape);
  return contiguous().view(new_shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = normalize_dim(start_dim, dim(), "flatten");
  const int64_t e = normalize_dim(end_dim, dim(), "flatten");
  ORBIT_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape ns(shape().begin(), shape().begin() + s);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= shape()[i];
  ns.push_back(m);
  ns.insert(ns.end(), shape().begin() + e + 1, shape().end());
  return reshape(ns);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  ORBIT_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(),
              " dims ", shape_str(dims), " for a tensor of rank ", dim());
  std::vector<int64_t> nd(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape shp(dims.size()), st(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    nd[i] = normalize_dim(dims[i], dim(), "permute");
    ORBIT_CHECK(!seen[nd[i]], "permute: dim ", nd[i], " repeated in ", shape_str(dims));
    seen[nd[i]] = true;
    shp[i] = shape()[nd[i]];
    st[i] = strides()[nd[i]];
  }
  Tensor out = alias(*this, shp, st, offset());
  std::vector<int64_t> inverse(nd.size());
  for (size_t i = 0; i < nd.size(); ++i) inverse[nd[i]] = static_cast<int64_t>(i);
  record("permute", out, {*this}, [inverse](const Tensor& g) -> std::vector<Tensor> {
    return {g.permute(inverse)};
  });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) return *this;
  std::vector<int64_t> p(dim());
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[normalize_dim(d0, dim(), "transpose")], p[normalize_dim(d1, dim(), "transpose")]);
  return permute(p);
}

Tensor Tensor::t() const {
  ORBIT_CHECK(dim() == 2, "t: expected a 2-D tensor, got shape ", shape_str(shape()));
  return transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  ORBIT_CHECK(dim() > 0, "slice: cannot slice a 0-d tensor");
  d = normalize_dim(d, dim(), "slice");
  ORBIT_CHECK(step > 0, "slice: expected step > 0, got ", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shp = shape(), st = strides();
  shp[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = alias(*this, shp, st, offset() + start * strides()[d]);
  const Shape in_shape = shape();
  record("slice", out, {*this}, [in_shape, d, start, end, step](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = Tensor::zeros(in_shape, g.dtype(), g.device());
    gx.slice(d, start, end, step).copy_(g);
    return {gx};
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  ORBIT_CHECK(dim() > 0, "narrow: cannot narrow a 0-d tensor");
  const int64_t nd = normalize_dim(d, dim(), "narrow");
  const int64_t n = shape()[nd];
  if (start < 0) start += n;
  ORBIT_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ",
              start + length, ") is outside dim ", nd, " of size ", n, " (shape ", shape_str(shape()), ")");
  return slice(nd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  ORBIT_CHECK(dim() > 0, "select: cannot select from a 0-d tensor");
  d = normalize_dim(d, dim(), "select");
  const int64_t n = shape()[d];
  ORBIT_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d,
              " of size ", n);
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& requested) const {
  ORBIT_CHECK(requested.size() >= shape().size(), "expand: cannot expand shape ", shape_str(shape()),
              " to fewer dims ", shape_str(requested));
  const size_t lead = requested.size() - shape().size();
  Shape shp(requested.size()), st(requested.size());
  for (size_t i = 0; i < requested.size(); ++i) {
    if (i < lead) {
      ORBIT_CHECK(requested[i] >= 0, "expand: size -1 not allowed in new leading dim ", i);
      shp[i] = requested[i];
      st[i] = 0;
      continue;
    }
    const int64_t cur = shape()[i - lead];
    const int64_t want = requested[i] == -1 ? cur : requested[i];
    ORBIT_CHECK(cur == want || cur == 1, "expand: shape ", shape_str(shape()), " cannot be expanded to ",
                shape_str(requested), " (dim ", i, ": ", cur, " vs ", want, ")");
    shp[i] = want;
    st[i] = cur == want ? strides()[i - lead] : 0;
  }
  if (shp == shape()) return *this;
  Tensor out = alias(*this, shp, st, offset());
  const Shape in_shape = shape();
  record("expand", out, {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(g, in_shape)};
  });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim(d, dim() + 1, "unsqueeze");
  Shape shp = shape();
  shp.insert(shp.begin() + d, 1);
  return view(shp);
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  d = normalize_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape shp = shape();
  shp.erase(shp.begin() + d);
  return view(shp);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  backend(device()).copy(*this, out);
  record("clone", out, {*this}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

Tensor Tensor::detach() const { return alias(*this, shape(), strides(), offset()); }

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), t, device());
  backend(device()).copy(*this, out);
  if (is_floating(t) && is_floating(dtype())) {
    const DType src = dtype();
    record("to_dtype", out, {*this}, [src](const Tensor& g) -> std::vector<Tensor> { return {g.to(src)}; });
  }
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), d);
  const size_t nbytes = static_cast<size_t>(numel()) * dtype_size(dtype());
  if (src.device().is_cpu()) {
    backend(d).copy_from_host(out.raw_data(), src.raw_data(), nbytes);
  } else if (d.is_cpu()) {
    backend(src.device()).copy_to_host(out.raw_data(), src.raw_data(), nbytes);
  } else {
    std::vector<char> host(nbytes);
    backend(src.device()).copy_to_host(host.data(), src.raw_data(), nbytes);
    backend(d).copy_from_host(out.raw_data(), host.data(), nbytes);
  }
  const Device from = device();
  record("to_device", out, {*this}, [from](const Tensor& g) -> std::vector<Tensor> { return {g.to(from)}; });
  return out;
}

// ====================================================================== in-place

const Tensor& Tensor::fill_(double value) const {
  check_inplace(*this, "fill_");
  backend(device()).fill(*this, value);
  storage()->bump_version();
  return *this;
}

const Tensor& Tensor::copy_(const Tensor& src) const {
  check_inplace(*this, "copy_");
  Tensor s = src.detach();
  if (s.device() != device()) s = s.to(device());
  s = s.expand(shape());
  backend(device()).copy(s, *this);
  storage()->bump_version();
  return *this;
}

const Tensor& Tensor::add_(const Tensor& other, double alpha) const {
  check_inplace(*this, "add_");
  NoGradGuard ng;
  Tensor o = other.detach();
  ORBIT_CHECK(o.dtype() == dtype(), "add_: dtype ", dtype_name(o.dtype()), " added to a ",
              dtype_name(dtype()), " tensor");
  Tensor r = alpha == 1.0 ? add(detach(), o) : add(detach(), mul(o, alpha));
  ORBIT_CHECK(r.shape() == shape(), "add_: the result shape ", shape_str(r.shape()),
              " differs from the destination shape ", shape_str(shape()));
  backend(device()).copy(r, *this);
  storage()->bump_version();
  return *this;
}

const Tensor& Tensor::mul_(double value) const {
  check_inplace(*this, "mul_");
  NoGradGuard ng;
  Tensor r = mul(detach(), value);
  backend(device()).copy(r, *this);
  storage()->bump_version();
  return *this;
}

// ====================================================================== autograd

Tensor& Tensor::requires_grad_(bool on) {
  ORBIT_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating tensors can require "
              "gradients, got ", dtype_name(dtype()));
  ORBIT_CHECK(is_leaf() || on, "requires_grad_(false) on a non-leaf tensor; use detach()");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    ORBIT_CHECK(g.shape() == shape(), "set_grad: gradient shape ", shape_str(g.shape()),
                " differs from the tensor shape ", shape_str(shape()));
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() const { impl().grad = nullptr; }

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  ORBIT_CHECK(requires_grad(), "backward: the tensor does not require grad (no input of the "
              "computation requires grad, or it was computed under NoGradGuard)");
  Tensor g = grad_output;
  if (!g.defined()) {
    ORBIT_CHECK(numel() == 1, "backward: a gradient can be implied only for a one-element tensor, "
                "got shape ", shape_str(shape()), "; pass grad_output");
    g = Tensor::ones(shape(), dtype(), device());
  }
  run_backward({*this}, {g}, retain_graph);
}

Tensor Tensor::operator-() const { return neg(*this); }
Tensor Tensor::sum() const { return orbit::sum(*this); }
Tensor Tensor::mean() const { return orbit::mean(*this); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) { return affine(b, -1.0, a); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) { return mul(reciprocal(b), a); }

}  // namespace orbit

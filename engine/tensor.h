// Tensor: a view (dtype, shape, strides, offset) onto reference-counted storage that lives on a
// device, plus the autograd record (requires_grad, grad, grad_fn).
//
// Views share storage: reshape/view, permute/transpose, narrow/slice/select, expand, (un)squeeze.
// Copies are explicit: contiguous(), clone(), to(). Every differentiable operation is a free
// function in engine/ops.h; the member functions here are thin conveniences that call them.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"

namespace orbit {

using Shape = std::vector<int64_t>;

class Generator;
struct Node;

// A block of device memory. `version` counts in-place writes, so that autograd can detect a saved
// tensor that was modified before backward.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  uint64_t version_ = 0;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::F32;

  // autograd
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // the op that produced this tensor (null for leaves)
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient (leaves only)
  std::weak_ptr<Node> grad_accumulator;  // shared by all uses of a leaf in one graph
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ------------------------------------------------------------------ factories
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
  // [0, 1, ..., n-1]
  static Tensor arange(int64_t n, DType dtype = DType::F32, Device device = Device::cpu());
  // Copies host values into a new tensor of the given shape (numel must match).
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            Device device = Device::cpu());
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            Device device = Device::cpu());
  static Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape,
                            Device device = Device::cpu());
  // Random tensors from a generator (the global one when gen is null).
  static Tensor rand(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::F32,
                     Device device = Device::cpu());  // uniform [0, 1)
  static Tensor randn(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::F32,
                      Device device = Device::cpu());  // standard normal
  static Tensor uniform(const Shape& shape, double lo, double hi, Generator* gen = nullptr,
                        DType dtype = DType::F32, Device device = Device::cpu());

  // ------------------------------------------------------------------ metadata
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  std::string str() const;  // "Tensor(float32, [2, 3], cpu)"
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // Pointer to the first element (offset applied). Host access only on CPU tensors.
  void* raw_data() const;
  template <class T> T* data() const {
    check_dtype_for_access(dtype_of<T>::value);
    return static_cast<T*>(raw_data());
  }
  // The single value of a one-element tensor, as double.
  double item() const;
  // A host copy of the elements in logical (row-major) order.
  template <class T> std::vector<T> to_vector() const;

  // ------------------------------------------------------------------ views and copies
  Tensor view(const Shape& shape) const;     // requires compatible strides; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // view when possible, else a copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // transpose of a 2-D tensor
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;  // -1 keeps a dim; broadcasting rules
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor contiguous() const;  // this tensor if already contiguous, else a differentiable copy
  Tensor clone() const;       // always a differentiable copy
  Tensor detach() const;      // shares storage, no autograd history, requires_grad false
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // ------------------------------------------------------------------ in-place (not recorded)
  // In-place writes bump the storage version; they refuse tensors that take part in autograd
  // while grad mode is on (use them inside NoGradGuard, as optimizers do).
  // They are const: a Tensor is a handle, and writing its elements does not change the handle.
  const Tensor& fill_(double value) const;
  const Tensor& zero_() const { return fill_(0.0); }
  const Tensor& copy_(const Tensor& src) const;  // src is broadcast to this shape; dtype converted
  const Tensor& add_(const Tensor& other, double alpha = 1.0) const;  // this += alpha * other
  const Tensor& mul_(double value) const;

  // ------------------------------------------------------------------ autograd
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  // The accumulated gradient of a leaf (undefined until a backward reaches it).
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  void zero_grad() const;  // drops the accumulated gradient
  // Back-propagates from this tensor. Without an argument the tensor must hold one element
  // (the gradient is 1). retain_graph keeps saved tensors for a second backward.
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;

  // ------------------------------------------------------------------ conveniences
  Tensor operator-() const;
  Tensor sum() const;
  Tensor mean() const;

  TensorImpl& impl() const {
    if (!impl_) throw Error("use of an undefined Tensor (default-constructed or moved-from)");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  void check_dtype_for_access(DType t) const;
  std::shared_ptr<TensorImpl> impl_;
};

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// Row-major contiguous strides for a shape.
Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);
// Normalizes a possibly negative dim against rank `ndim`; throws naming `op` when out of range.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);
// The broadcast of two shapes (NumPy rules); throws naming `op` when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace orbit

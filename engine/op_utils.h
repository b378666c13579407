// Small helpers shared by the op implementations (engine/ops_*.cpp). Not part of the public API.
#pragma once

#include <string>
#include <vector>

#include "engine/ops.h"

namespace orbit::detail {

// Throws unless t is defined.
inline void check_defined(const Tensor& t, const char* op, const char* arg) {
  ORBIT_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}

// Throws unless a and b share device and dtype.
inline void check_same(const Tensor& a, const Tensor& b, const char* op) {
  check_defined(a, op, "a");
  check_defined(b, op, "b");
  ORBIT_CHECK(a.device() == b.device(), op, ": tensors on different devices (", a.device().str(),
              " and ", b.device().str(), ")");
  ORBIT_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch (", dtype_name(a.dtype()), " and ",
              dtype_name(b.dtype()), "); convert one with .to(dtype)");
}

inline void check_floating(const Tensor& t, const char* op) {
  ORBIT_CHECK(is_floating(t.dtype()), op, ": expected a floating tensor (float32 or float64), got ",
              dtype_name(t.dtype()));
}

// A view of t with new shape/broadcast that is not recorded (for passing to kernels).
inline Tensor expanded(const Tensor& t, const Shape& shape) { return t.detach().expand(shape); }

// A contiguous, unrecorded version of t.
inline Tensor contiguous_data(const Tensor& t) {
  NoGradGuard ng;
  return t.detach().contiguous();
}

inline Tensor scalar_like(double v, const Tensor& t) { return Tensor::scalar(v, t.dtype(), t.device()); }

// Empty tensor with t's dtype and device.
inline Tensor empty_like(const Tensor& t, const Shape& shape) {
  return Tensor::empty(shape, t.dtype(), t.device());
}

// Normalizes a list of dims (empty = all), checking range and duplicates; returns a mask.
std::vector<bool> dim_mask(const std::vector<int64_t>& dims, int64_t ndim, const char* op);

}  // namespace orbit::detail

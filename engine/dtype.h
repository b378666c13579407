// Element types and devices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace orbit {

enum class DType : uint8_t { F32, F64, I64 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I64: return "int64";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::F32 || t == DType::F64; }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const {
    return type == DeviceType::CPU ? std::string("cpu") : "cuda:" + std::to_string(index);
  }
};

// Calls f with a typed null pointer for the floating dtype t: dispatch_float(t, [&](auto tag) { using T =
// decltype(tag); ... }). Throws for non-floating dtypes, naming `what`.
template <class F>
auto dispatch_float(DType t, const char* what, F&& f);

}  // namespace orbit

#include "engine/error.h"

namespace orbit {
template <class F>
auto dispatch_float(DType t, const char* what, F&& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F64: return f(double{});
    default: break;
  }
  throw Error(str_cat(what, ": expected a floating tensor (float32 or float64), got ", dtype_name(t)));
}

// As dispatch_float, plus int64.
template <class F>
auto dispatch_all(DType t, const char* what, F&& f) {
  if (t == DType::I64) return f(int64_t{});
  return dispatch_float(t, what, std::forward<F>(f));
}
}  // namespace orbit

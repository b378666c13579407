// What the CUDA backend's own kernels are made of, in plain C++17 that both nvcc and the host compiler
// read, so that every kernel's arithmetic runs on the CPU too.
//
// A kernel here is a function object with an `ORBIT_HD void operator()(int64_t i) const` that computes
// output element (or work item) i from raw pointers and sizes it holds by value. An executor runs it
// for every i in [0, n):
//   - GpuExec (engine/cuda/launch.cuh) launches a grid-stride CUDA kernel on the backend's stream;
//   - HostExec (below) is a plain loop on the CPU.
// The op functions (engine/cuda/kernels/*.h) are templates on the executor: the CUDA backend
// instantiates them with GpuExec, and the tests instantiate them with HostExec on CPU tensors and
// compare them with the CPU backend, so the index arithmetic of every kernel is tested on machines
// without a GPU. What only a GPU can check (launch limits, races, cuBLAS and cuDNN) is tested on a GPU
// by tests/test_cuda.cpp.
//
// Rules for kernels, so the two executors agree:
//   - work items are independent, except through atomic_add (below);
//   - no shared memory or warp intrinsics: a reduction is done in passes (a pass of partial results
//     into scratch memory, then a pass that combines them), each pass a launch;
//   - math through the k_* helpers below, which are the same functions on both sides.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/tensor.h"

#if defined(__CUDACC__)
#define ORBIT_HD __host__ __device__
#else
#define ORBIT_HD
#endif

namespace orbit::cuda::kernels {

constexpr int kMaxDims = 8;

// a / b for a >= 0 and b > 0, in 32-bit arithmetic when both fit: a GPU divides 64-bit integers by a
// long software sequence and 32-bit ones in a few instructions.
ORBIT_HD inline int64_t k_div(int64_t a, int64_t b) {
  if (((a | b) >> 32) == 0) return static_cast<int64_t>(static_cast<uint32_t>(a) / static_cast<uint32_t>(b));
  return a / b;
}

// Elementwise kernels compute kUnroll elements per work item: item i of m = unrolled_items(n) takes
// the elements i, i + m, i + 2m, ... below n, and loads all of them before it stores any. On a GPU a
// thread then has kUnroll independent loads in flight, and each load instruction of a warp still reads
// neighbouring addresses (a large unary op on an H200, counting one read and one write per element:
// 1.9 TB/s with one element per item, 2.3 TB/s with four). Items touch disjoint elements, so in-place
// ops stay safe.
constexpr int kUnroll = 4;
inline int64_t unrolled_items(int64_t n) { return (n + kUnroll - 1) / kUnroll; }

// ---------------------------------------------------------------------------- strided indexing
// Offsets (in elements) of K operands of the same logical shape from a flat row-major index i.
// Size-1 dims are dropped and neighbouring dims contiguous in every operand are merged on the host.
template <int K>
struct Indexer {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};

  // i is below the product of the sizes, so what is left of it at the outermost dim is that dim's
  // coordinate: no division there (a contiguous tensor, one merged dim, needs none at all).
  ORBIT_HD void offsets(int64_t i, int64_t* o) const {
    for (int k = 0; k < K; ++k) o[k] = 0;
    for (int d = ndim - 1; d > 0; --d) {
      const int64_t q = k_div(i, sizes[d]);
      const int64_t r = i - q * sizes[d];
      i = q;
      for (int k = 0; k < K; ++k) o[k] += r * strides[k][d];
    }
    if (ndim > 0)
      for (int k = 0; k < K; ++k) o[k] += i * strides[k][0];
  }
};

template <int K>
Indexer<K> make_indexer(const Shape& shape, const std::array<Shape, K>& strides) {
  Indexer<K> g;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (g.ndim > 0) {
      bool mergeable = true;
      for (int k = 0; k < K; ++k)
        if (g.strides[k][g.ndim - 1] != strides[k][d] * shape[d]) mergeable = false;
      if (mergeable) {
        g.sizes[g.ndim - 1] *= shape[d];
        for (int k = 0; k < K; ++k) g.strides[k][g.ndim - 1] = strides[k][d];
        continue;
      }
    }
    ORBIT_CHECK(g.ndim < kMaxDims, "cuda: the kernels take at most ", kMaxDims,
                " dims after merging contiguous ones, got shape ", shape_str(shape));
    g.sizes[g.ndim] = shape[d];
    for (int k = 0; k < K; ++k) g.strides[k][g.ndim] = strides[k][d];
    ++g.ndim;
  }
  return g;
}

// ---------------------------------------------------------------------------- executors
// The host executor: the same kernels as a plain loop over host memory.
struct HostExec {
  template <class F>
  void launch(int64_t n, const F& f) const {
    for (int64_t i = 0; i < n; ++i) f(i);
  }
  // Temporary memory for a pass's partial results, alive while the Buffer is.
  struct Buffer {
    std::vector<unsigned char> bytes;
    void* data() { return bytes.data(); }
  };
  Buffer scratch(size_t nbytes) const { return Buffer{std::vector<unsigned char>(nbytes == 0 ? 1 : nbytes)}; }
};

// ---------------------------------------------------------------------------- math
// The same functions on the host and on the device (CUDA declares the float and double overloads of
// these std functions for device code).
template <class T> ORBIT_HD inline T k_max(T a, T b) { return a > b ? a : b; }
template <class T> ORBIT_HD inline T k_min(T a, T b) { return a < b ? a : b; }
template <class T> ORBIT_HD inline T k_exp(T x) { return std::exp(x); }
template <class T> ORBIT_HD inline T k_log(T x) { return std::log(x); }
template <class T> ORBIT_HD inline T k_log1p(T x) { return std::log1p(x); }
template <class T> ORBIT_HD inline T k_sqrt(T x) { return std::sqrt(x); }
template <class T> ORBIT_HD inline T k_tanh(T x) { return std::tanh(x); }
template <class T> ORBIT_HD inline T k_erf(T x) { return std::erf(x); }
template <class T> ORBIT_HD inline T k_pow(T x, T y) { return std::pow(x, y); }
template <class T> ORBIT_HD inline T k_abs(T x) { return x < T(0) ? -x : x; }
template <class T> ORBIT_HD inline T k_floor(T x) { return std::floor(x); }
template <class T> ORBIT_HD inline T k_ceil(T x) { return std::ceil(x); }
template <class T> ORBIT_HD inline bool k_isnan(T x) { return x != x; }
template <class T> ORBIT_HD inline T k_inf() { return T(HUGE_VAL); }
template <class T> ORBIT_HD inline T k_nan() { return T(NAN); }

// *p += v, atomically on the GPU (the order of the additions is then unspecified, so sums that
// collide are not bit-reproducible there).
template <class T>
ORBIT_HD inline void atomic_add(T* p, T v) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 8 && !std::is_floating_point<T>::value)
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  else
    atomicAdd(p, v);
#else
  *p += v;
#endif
}

// Dtype dispatch: orbit::dispatch_float and orbit::dispatch_all (engine/dtype.h).
template <class T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

}  // namespace orbit::cuda::kernels

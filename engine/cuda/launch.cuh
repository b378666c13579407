// The GPU executor of the kernels in engine/cuda/kernels/ (see common.h there), and the backend's
// shared pieces that the .cu files use: its stream, scratch memory from the caching allocator, and
// error checks for CUDA, cuBLAS and cuDNN calls.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "engine/cuda/kernels/common.h"
#include "engine/error.h"

namespace orbit::cuda {

// A CUDA runtime call whose failure becomes an orbit::Error naming the call, file and line.
#define ORBIT_CUDA_CHECK(call)                                                                              \
  do {                                                                                                      \
    const cudaError_t orbit_cuda_err_ = (call);                                                             \
    if (orbit_cuda_err_ != cudaSuccess)                                                                     \
      throw ::orbit::Error(::orbit::str_cat("CUDA error in ", #call, " at ", __FILE__, ":", __LINE__, ": ", \
                                            cudaGetErrorString(orbit_cuda_err_)));                          \
  } while (0)

// Device memory from the backend's caching allocator (engine/cuda/cuda_backend.cu).
void* device_allocate(size_t nbytes);
void device_free(void* p);
// The stream every kernel, copy, cuBLAS and cuDNN call of the backend runs on.
cudaStream_t stream();

// A process-wide switch of the backend held as a non-negative int (TF32, the convolution algorithm
// policy, the cuDNN layers): decided at its first read from an environment variable, unless set()
// came first (an explicit set wins over the environment). from_env gets the variable's value, or
// nullptr when it is unset, and returns the setting; an orbit::Error it throws is reported with the
// variable's name.
class EnvSetting {
 public:
  constexpr explicit EnvSetting(const char* variable) : variable_(variable) {}
  template <class FromEnv>
  int get(const FromEnv& from_env) {
    int v = v_.load();
    if (v < 0) {
      int decided = 0;
      try {
        decided = from_env(std::getenv(variable_));
      } catch (const Error& e) {
        throw Error(str_cat(variable_, ": ", e.what()));
      }
      int unset = -1;
      v_.compare_exchange_strong(unset, decided);
      v = v_.load();
    }
    return v;
  }
  void set(int v) { v_.store(v); }

 private:
  const char* variable_;
  std::atomic<int> v_{-1};  // -1: not decided yet
};

template <class F>
__global__ void launch_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) f(i);
}

struct GpuExec {
  static constexpr int kThreads = 256;

  template <class F>
  void launch(int64_t n, const F& f) const {
    if (n <= 0) return;
    const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20);
    launch_kernel<F><<<static_cast<unsigned>(blocks), kThreads, 0, stream()>>>(n, f);
    ORBIT_CUDA_CHECK(cudaGetLastError());
  }

  // Scratch device memory, returned to the allocator's cache when the Buffer goes (kernels queued on
  // the stream before that still see it: the cache hands blocks out to work on the same stream only).
  class Buffer {
   public:
    explicit Buffer(size_t n) : p_(device_allocate(n == 0 ? 1 : n)) {}
    Buffer(Buffer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer& operator=(Buffer&& o) noexcept {
      if (this != &o) {
        device_free(p_);  // null (a moved-from Buffer) is ignored
        p_ = o.p_;
        o.p_ = nullptr;
      }
      return *this;
    }
    ~Buffer() { device_free(p_); }
    void* data() { return p_; }

   private:
    void* p_;
  };
  Buffer scratch(size_t nbytes) const { return Buffer(nbytes); }
};

}  // namespace orbit::cuda

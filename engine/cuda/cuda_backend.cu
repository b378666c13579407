// The CUDA backend's device, memory, stream, copies, fill and copy (engine/cuda/cuda_backend.h).
#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/elementwise.h"
#include "engine/cuda/launch.cuh"
#include "engine/error.h"

namespace orbit::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error of a failed query
    return 0;
  }
  return n;
}

namespace {

// ---------------------------------------------------------------------------- caching allocator
// Freed blocks are kept by their rounded size and handed out again, so a training step allocates
// with cudaMalloc only until its working set is cached. Sizes round up to 512 bytes below 1 MiB and
// to 2 MiB above. When cudaMalloc fails, the cache is emptied and the call retried once.
class CachingAllocator {
 public:
  static size_t round(size_t n) {
    if (n == 0) n = 1;
    const size_t q = n < (size_t(1) << 20) ? 512 : (size_t(2) << 20);
    return (n + q - 1) / q * q;
  }

  void* allocate(size_t nbytes) {
    const size_t size = round(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    void* p = nullptr;
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
      stats_.cached -= size;
    } else {
      if (cudaMalloc(&p, size) != cudaSuccess) {
        cudaGetLastError();
        release_cached();
        ORBIT_CUDA_CHECK(cudaMalloc(&p, size));
      }
      ++stats_.device_mallocs;
    }
    sizes_[p] = size;
    stats_.allocated += size;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    return p;
  }

  void deallocate(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    const size_t size = it->second;
    sizes_.erase(it);
    stats_.allocated -= size;
    stats_.cached += size;
    free_.emplace(size, p);
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated = stats_.allocated;
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  void release_cached() {
    for (auto& [size, p] : free_) cudaFree(p);
    free_.clear();
    stats_.cached = 0;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::map<void*, size_t> sizes_;
  MemoryStats stats_;
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();  // outlives every tensor (never destroyed)
  return *a;
}

cudaStream_t& stream_slot() {
  static cudaStream_t s = nullptr;
  return s;
}

}  // namespace

void* device_allocate(size_t nbytes) { return allocator().allocate(nbytes); }
void device_free(void* p) { allocator().deallocate(p); }
cudaStream_t stream() { return stream_slot(); }

// One stream for every kernel, copy and library call of the backend: work is ordered on it, so a
// block the allocator hands out again is never in use by an earlier kernel still running. It is a
// blocking stream, so the synchronous copies (cudaMemcpy, on the legacy default stream) wait for it.
CudaBackend::CudaBackend() {
  ORBIT_CUDA_CHECK(cudaSetDevice(0));
  if (!stream_slot()) ORBIT_CUDA_CHECK(cudaStreamCreate(&stream_slot()));
}
CudaBackend::~CudaBackend() = default;  // the stream and cached blocks live as long as the process

void* CudaBackend::allocate(size_t nbytes) { return allocator().allocate(nbytes); }
void CudaBackend::deallocate(void* ptr, size_t) { allocator().deallocate(ptr); }
void CudaBackend::copy_to_host(void* host_dst, const void* src, size_t n) {
  if (n) ORBIT_CUDA_CHECK(cudaMemcpy(host_dst, src, n, cudaMemcpyDeviceToHost));
}
void CudaBackend::copy_from_host(void* dst, const void* host_src, size_t n) {
  if (n) ORBIT_CUDA_CHECK(cudaMemcpy(dst, host_src, n, cudaMemcpyHostToDevice));
}

void CudaBackend::fill(const Tensor& out, double value) { kernels::fill(GpuExec{}, out, value); }

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  ORBIT_CHECK(src.device() == dst.device(), "cuda copy: both tensors must be on ", dst.device().str(), ", got ",
              src.device().str());
  kernels::copy(GpuExec{}, src, dst);
}

std::unique_ptr<Backend> make_backend() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) cudaGetLastError();
  ORBIT_CHECK(e == cudaSuccess && n > 0, "no usable CUDA device: ",
              e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
  return std::make_unique<CudaBackend>();
}

MemoryStats memory_stats() { return allocator().stats(); }
void reset_peak_memory() { allocator().reset_peak(); }
void synchronize() { ORBIT_CUDA_CHECK(cudaStreamSynchronize(stream())); }

}  // namespace orbit::cuda

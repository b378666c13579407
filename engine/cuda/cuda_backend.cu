// The CUDA backend's device, memory, stream, copies, fill and copy (engine/cuda/cuda_backend.h).
#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime.h>
#include <cuda_profiler_api.h>

#include <algorithm>
#include <cstring>
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

cudaStream_t& stream_slot() {
  static cudaStream_t s = nullptr;
  return s;
}

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
        const cudaError_t err = cudaMalloc(&p, size);
        if (err != cudaSuccess) {
          // Clear the (non-sticky) out-of-memory error before throwing: left set, the caller that catches
          // this (cuda_conv.cu tries the next algorithm) would see it again at the next launch's
          // cudaGetLastError check.
          cudaGetLastError();
          throw Error(str_cat("CUDA error in cudaMalloc(", size, " bytes) at ", __FILE__, ":", __LINE__, ": ",
                              cudaGetErrorString(err)));
        }
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
    // Kernels queued before may still use a cached block: let them finish before the blocks go.
    if (stream_slot()) cudaStreamSynchronize(stream_slot());
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

}  // namespace

void* device_allocate(size_t nbytes) { return allocator().allocate(nbytes); }
void device_free(void* p) { allocator().deallocate(p); }
cudaStream_t stream() { return stream_slot(); }

// One stream for every kernel, copy and library call of the backend: work is ordered on it, so a
// block the allocator hands out again is never in use by an earlier kernel still running.
CudaBackend::CudaBackend() {
  ORBIT_CUDA_CHECK(cudaSetDevice(0));
  if (!stream_slot()) ORBIT_CUDA_CHECK(cudaStreamCreate(&stream_slot()));
}
CudaBackend::~CudaBackend() = default;  // the stream and cached blocks live as long as the process

void* CudaBackend::allocate(size_t nbytes) { return allocator().allocate(nbytes); }
void CudaBackend::deallocate(void* ptr, size_t) { allocator().deallocate(ptr); }

// Device to host: queued on the stream after the work that computes src, then waited for.
void CudaBackend::copy_to_host(void* host_dst, const void* src, size_t n) {
  if (n == 0) return;
  ORBIT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n, cudaMemcpyDeviceToHost, stream()));
  ORBIT_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

namespace {

// Host to device goes through pinned (page-locked) staging buffers: the caller's bytes are copied into
// one on the host, and a DMA transfer from it is queued on the stream. The call returns without waiting
// for the GPU (the data loader's worker moves the next batch while the model computes), the caller's
// memory is free to reuse at once, and the transfer runs at the bus's full speed. A buffer is reused
// after the transfer queued from it last has finished (its event).
class PinnedStaging {
 public:
  void upload(void* dst, const void* src, size_t n) {
    std::lock_guard<std::mutex> lock(mutex_);
    Slot& s = slots_[next_];
    next_ = (next_ + 1) % kSlots;
    if (s.done) ORBIT_CUDA_CHECK(cudaEventSynchronize(s.done));
    else ORBIT_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    if (s.capacity < n) {
      if (s.host) ORBIT_CUDA_CHECK(cudaFreeHost(s.host));
      s.host = nullptr;
      s.capacity = 0;
      const size_t want = std::max<size_t>(n + n / 4, size_t(1) << 20);
      ORBIT_CUDA_CHECK(cudaHostAlloc(&s.host, want, cudaHostAllocDefault));
      s.capacity = want;
    }
    std::memcpy(s.host, src, n);
    ORBIT_CUDA_CHECK(cudaMemcpyAsync(dst, s.host, n, cudaMemcpyHostToDevice, stream()));
    ORBIT_CUDA_CHECK(cudaEventRecord(s.done, stream()));
  }

 private:
  static constexpr int kSlots = 4;
  struct Slot {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
  };
  std::mutex mutex_;
  Slot slots_[kSlots];
  int next_ = 0;
};

PinnedStaging& staging() {
  static PinnedStaging* s = new PinnedStaging();  // kept for the process's life, like the stream
  return *s;
}

}  // namespace

void CudaBackend::copy_from_host(void* dst, const void* host_src, size_t n) {
  if (n) staging().upload(dst, host_src, n);
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

void profiler_start() {
  ORBIT_CUDA_CHECK(cudaDeviceSynchronize());
  ORBIT_CUDA_CHECK(cudaProfilerStart());
}

void profiler_stop() {
  ORBIT_CUDA_CHECK(cudaDeviceSynchronize());
  ORBIT_CUDA_CHECK(cudaProfilerStop());
}

EventTimer::EventTimer() {
  cudaEvent_t a = nullptr, b = nullptr;
  ORBIT_CUDA_CHECK(cudaEventCreate(&a));
  const cudaError_t e = cudaEventCreate(&b);
  if (e != cudaSuccess) {
    cudaEventDestroy(a);
    ORBIT_CUDA_CHECK(e);
  }
  start_ = a;
  stop_ = b;
}
EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}
void EventTimer::start() { ORBIT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_), stream())); }
double EventTimer::stop_ms() {
  ORBIT_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_), stream()));
  ORBIT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0;
  ORBIT_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return ms;
}

}  // namespace orbit::cuda

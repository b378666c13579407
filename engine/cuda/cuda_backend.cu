// The CUDA backend's device memory, copies, fill and copy kernels (engine/cuda/cuda_backend.h).
#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

#include "engine/error.h"

namespace orbit::cuda {

// A CUDA runtime call whose failure becomes an orbit::Error naming the call, file and line.
#define ORBIT_CUDA_CHECK(call)                                                                          \
  do {                                                                                                  \
    const cudaError_t orbit_cuda_err_ = (call);                                                         \
    if (orbit_cuda_err_ != cudaSuccess)                                                                 \
      throw ::orbit::Error(::orbit::str_cat("CUDA error in ", #call, " at ", __FILE__, ":", __LINE__, ": ", \
                                            cudaGetErrorString(orbit_cuda_err_)));                      \
  } while (0)

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

// ---------------------------------------------------------------------------- strided kernels
constexpr int kMaxDims = 8;

// Sizes and per-operand strides (in elements) of an iteration; operand 0 is the destination.
struct Geometry {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[2][kMaxDims] = {};
};

Geometry geometry(const Tensor& dst, const Tensor* src) {
  ORBIT_CHECK(dst.dim() <= kMaxDims, "cuda: tensors of more than ", kMaxDims, " dims are not supported, got ", dst.dim());
  Geometry g;
  for (int64_t d = 0; d < dst.dim(); ++d) {
    if (dst.size(d) == 1) continue;
    g.sizes[g.ndim] = dst.size(d);
    g.strides[0][g.ndim] = dst.stride(d);
    g.strides[1][g.ndim] = src ? src->stride(d) : 0;
    ++g.ndim;
  }
  return g;
}

__device__ inline void offsets(const Geometry& g, int64_t i, int64_t& o0, int64_t& o1) {
  o0 = 0;
  o1 = 0;
  for (int d = g.ndim - 1; d >= 0; --d) {
    const int64_t k = i % g.sizes[d];
    i /= g.sizes[d];
    o0 += k * g.strides[0][d];
    o1 += k * g.strides[1][d];
  }
}

template <class T>
__global__ void fill_kernel(Geometry g, int64_t n, T* out, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t o0, o1;
    offsets(g, i, o0, o1);
    out[o0] = value;
  }
}

template <class S, class D>
__global__ void copy_kernel(Geometry g, int64_t n, const S* src, D* dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t o0, o1;
    offsets(g, i, o0, o1);
    dst[o0] = static_cast<D>(src[o1]);
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 65535)); }

template <class F>
void dispatch(DType t, const F& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F64: return f(double{});
    case DType::I64: return f(int64_t{});
  }
}

[[noreturn]] void not_yet(const char* what) {
  throw Error(str_cat("cuda: ", what, " is not implemented on the GPU yet; move the tensors to the CPU (.to(Device::cpu()))"));
}

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::cuda(0); }
  const char* name() const override { return "cuda"; }

  void* allocate(size_t nbytes) override { return allocator().allocate(nbytes); }
  void deallocate(void* ptr, size_t) override { allocator().deallocate(ptr); }
  void copy_to_host(void* host_dst, const void* src, size_t n) override {
    if (n) ORBIT_CUDA_CHECK(cudaMemcpy(host_dst, src, n, cudaMemcpyDeviceToHost));
  }
  void copy_from_host(void* dst, const void* host_src, size_t n) override {
    if (n) ORBIT_CUDA_CHECK(cudaMemcpy(dst, host_src, n, cudaMemcpyHostToDevice));
  }

  void fill(const Tensor& out, double value) override {
    const int64_t n = out.numel();
    if (n == 0) return;
    const Geometry g = geometry(out, nullptr);
    dispatch(out.dtype(), [&](auto tag) {
      using T = decltype(tag);
      fill_kernel<T><<<blocks_for(n), 256>>>(g, n, static_cast<T*>(out.raw_data()), static_cast<T>(value));
    });
    ORBIT_CUDA_CHECK(cudaGetLastError());
  }

  void copy(const Tensor& src, const Tensor& dst) override {
    const int64_t n = dst.numel();
    if (n == 0) return;
    ORBIT_CHECK(src.device() == dst.device(), "cuda copy: both tensors must be on ", dst.device().str(), ", got ",
                src.device().str());
    const Geometry g = geometry(dst, &src);
    dispatch(src.dtype(), [&](auto stag) {
      using S = decltype(stag);
      dispatch(dst.dtype(), [&](auto dtag) {
        using D = decltype(dtag);
        copy_kernel<S, D><<<blocks_for(n), 256>>>(g, n, static_cast<const S*>(src.raw_data()), static_cast<D*>(dst.raw_data()));
      });
    });
    ORBIT_CUDA_CHECK(cudaGetLastError());
  }

  void unary(UnaryOp, const Tensor&, const Tensor&, double, double) override { not_yet("unary ops"); }
  void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) override { not_yet("binary ops"); }
  void reduce(ReduceOp, const Tensor&, const std::vector<bool>&, const Tensor&) override { not_yet("reductions"); }
  void arg_reduce(bool, const Tensor&, int64_t, const Tensor&, const Tensor&) override { not_yet("argmax / argmin"); }
  void softmax(const Tensor&, int64_t, bool, const Tensor&) override { not_yet("softmax"); }
  void softmax_backward(const Tensor&, const Tensor&, int64_t, bool, const Tensor&) override { not_yet("softmax backward"); }
  void gemm(const GemmArgs&) override { not_yet("gemm (cuBLAS)"); }
  void conv2d(const Tensor&, const Tensor&, const Conv2dParams&, const Tensor&) override { not_yet("conv2d (cuDNN)"); }
  void conv2d_backward_input(const Tensor&, const Tensor&, const Conv2dParams&, const Tensor&) override {
    not_yet("conv2d backward (cuDNN)");
  }
  void conv2d_backward_weight(const Tensor&, const Tensor&, const Conv2dParams&, const Tensor&) override {
    not_yet("conv2d backward (cuDNN)");
  }
  void max_pool2d(const Tensor&, const Pool2dParams&, const Tensor&, const Tensor&) override { not_yet("max_pool2d"); }
  void max_pool2d_backward(const Tensor&, const Tensor&, const Tensor&) override { not_yet("max_pool2d backward"); }
  void avg_pool2d(const Tensor&, const Pool2dParams&, const Tensor&) override { not_yet("avg_pool2d"); }
  void avg_pool2d_backward(const Tensor&, const Pool2dParams&, const Tensor&) override { not_yet("avg_pool2d backward"); }
  void adaptive_avg_pool2d(const Tensor&, const Tensor&) override { not_yet("adaptive_avg_pool2d"); }
  void adaptive_avg_pool2d_backward(const Tensor&, const Tensor&) override { not_yet("adaptive_avg_pool2d backward"); }
  void batch_norm_stats(const Tensor&, const Tensor&, const Tensor&) override { not_yet("batch norm"); }
  void batch_norm_apply(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) override {
    not_yet("batch norm");
  }
  void batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&,
                           const Tensor&, const Tensor&) override {
    not_yet("batch norm backward");
  }
  void gather(const Tensor&, int64_t, const Tensor&, const Tensor&) override { not_yet("gather"); }
  void scatter_add(const Tensor&, int64_t, const Tensor&, const Tensor&) override { not_yet("scatter_add"); }
  void index_select(const Tensor&, int64_t, const Tensor&, const Tensor&) override { not_yet("index_select"); }
  void index_add(const Tensor&, int64_t, const Tensor&, const Tensor&) override { not_yet("index_add"); }
  void flip(const Tensor&, const std::vector<int64_t>&, const Tensor&) override { not_yet("flip"); }
  void roll(const Tensor&, const std::vector<int64_t>&, const std::vector<int64_t>&, const Tensor&) override {
    not_yet("roll");
  }
  void grid_sample(const Tensor&, const Tensor&, GridMode, GridPadding, bool, const Tensor&) override {
    not_yet("grid_sample");
  }
  void grid_sample_backward(const Tensor&, const Tensor&, const Tensor&, GridMode, GridPadding, bool, const Tensor&,
                            const Tensor&) override {
    not_yet("grid_sample backward");
  }
};

}  // namespace

std::unique_ptr<Backend> make_backend() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) cudaGetLastError();
  ORBIT_CHECK(e == cudaSuccess && n > 0, "no usable CUDA device: ",
              e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
  return std::make_unique<CudaBackend>();
}

MemoryStats memory_stats() { return allocator().stats(); }

}  // namespace orbit::cuda

// The CUDA backend's own kernels (engine/cuda/kernels/) run on the CPU: a backend on host memory
// whose ops are the kernel templates instantiated with HostExec, a plain loop over the same element
// functions the GPU runs. Registered in place of the CPU backend (EmulationScope), it makes every op,
// forward and backward, go through the GPU kernels' arithmetic, so the kernels are tested against the
// CPU reference on machines without a GPU. GEMM and convolution go to cuBLAS and cuDNN on a GPU and
// have no kernel of the engine's own: here they stay on the CPU backend.
#pragma once

#include <memory>

#include "engine/backend.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/kernels/elementwise.h"
#include "engine/cuda/kernels/index.h"
#include "engine/cuda/kernels/norm.h"
#include "engine/cuda/kernels/pool.h"
#include "engine/cuda/kernels/reduce.h"
#include "engine/cuda/kernels/spatial.h"

namespace orbit::testing {

class EmulatedCudaKernels final : public Backend {
 public:
  Device device() const override { return Device::cpu(); }
  const char* name() const override { return "cuda kernels on the host"; }

  void* allocate(size_t n) override { return cpu_.allocate(n); }
  void deallocate(void* p, size_t n) override { cpu_.deallocate(p, n); }
  void copy_to_host(void* d, const void* s, size_t n) override { cpu_.copy_to_host(d, s, n); }
  void copy_from_host(void* d, const void* s, size_t n) override { cpu_.copy_from_host(d, s, n); }

  void fill(const Tensor& out, double v) override { cuda::kernels::fill(ex_, out, v); }
  void copy(const Tensor& src, const Tensor& dst) override { cuda::kernels::copy(ex_, src, dst); }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) override {
    cuda::kernels::unary(ex_, op, x, out, a, b);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    cuda::kernels::binary(ex_, op, a, b, out);
  }

  void reduce(ReduceOp op, const Tensor& x, const std::vector<bool>& r, const Tensor& out) override {
    cuda::kernels::reduce(ex_, op, x, r, out);
  }
  void arg_reduce(bool is_max, const Tensor& x, int64_t dim, const Tensor& v, const Tensor& i) override {
    cuda::kernels::arg_reduce(ex_, is_max, x, dim, v, i);
  }
  void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) override {
    cuda::kernels::softmax(ex_, x, dim, log, out);
  }
  void softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log, const Tensor& gx) override {
    cuda::kernels::softmax_backward(ex_, y, gy, dim, log, gx);
  }

  void gemm(const GemmArgs& a) override { cpu_.gemm(a); }
  void conv2d(const Tensor& x, const Tensor& w, const Conv2dParams& p, const Tensor& out) override {
    cpu_.conv2d(x, w, p, out);
  }
  void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, const Tensor& gx) override {
    cpu_.conv2d_backward_input(gy, w, p, gx);
  }
  void conv2d_backward_weight(const Tensor& x, const Tensor& gy, const Conv2dParams& p, const Tensor& gw) override {
    cpu_.conv2d_backward_weight(x, gy, p, gw);
  }

  void max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out, const Tensor& idx) override {
    cuda::kernels::max_pool2d(ex_, x, p, out, idx);
  }
  void max_pool2d_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx) override {
    cuda::kernels::max_pool2d_backward(ex_, gy, idx, gx);
  }
  void avg_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out) override {
    cuda::kernels::avg_pool2d(ex_, x, p, out);
  }
  void avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, const Tensor& gx) override {
    cuda::kernels::avg_pool2d_backward(ex_, gy, p, gx);
  }
  void adaptive_avg_pool2d(const Tensor& x, const Tensor& out) override {
    cuda::kernels::adaptive_avg_pool2d(ex_, x, out);
  }
  void adaptive_avg_pool2d_backward(const Tensor& gy, const Tensor& gx) override {
    cuda::kernels::adaptive_avg_pool2d_backward(ex_, gy, gx);
  }

  void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) override {
    cuda::kernels::batch_norm_stats(ex_, x, mean, var);
  }
  void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& w, const Tensor& b,
                        const Tensor& y) override {
    cuda::kernels::batch_norm_apply(ex_, x, mean, invstd, w, b, y);
  }
  void batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& mean, const Tensor& invstd,
                           const Tensor& w, bool batch_stats, const Tensor& gx, const Tensor& gw,
                           const Tensor& gb) override {
    cuda::kernels::batch_norm_backward(ex_, x, gy, mean, invstd, w, batch_stats, gx, gw, gb);
  }

  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    cuda::kernels::gather(ex_, x, dim, index, out);
  }
  void scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) override {
    cuda::kernels::scatter_add(ex_, src, dim, index, out);
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override {
    cuda::kernels::index_select(ex_, x, dim, index, out);
  }
  void index_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) override {
    cuda::kernels::index_add(ex_, src, dim, index, out);
  }

  void flip(const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out) override {
    cuda::kernels::flip(ex_, x, dims, out);
  }
  void roll(const Tensor& x, const std::vector<int64_t>& shifts, const std::vector<int64_t>& dims,
            const Tensor& out) override {
    cuda::kernels::roll(ex_, x, shifts, dims, out);
  }
  void grid_sample(const Tensor& x, const Tensor& grid, GridMode mode, GridPadding pad, bool ac,
                   const Tensor& out) override {
    cuda::kernels::grid_sample(ex_, x, grid, mode, pad, ac, out);
  }
  void grid_sample_backward(const Tensor& gy, const Tensor& x, const Tensor& grid, GridMode mode, GridPadding pad,
                            bool ac, const Tensor& gx, const Tensor& ggrid) override {
    cuda::kernels::grid_sample_backward(ex_, gy, x, grid, mode, pad, ac, gx, ggrid);
  }

 private:
  cpu::CpuBackend cpu_;
  cuda::kernels::HostExec ex_;
};

// While alive, CPU tensors are computed by the CUDA kernels on the host; the CPU backend is restored
// when it goes (also when a test fails with an exception).
class EmulationScope {
 public:
  EmulationScope() { register_backend(DeviceType::CPU, std::make_unique<EmulatedCudaKernels>()); }
  ~EmulationScope() { register_backend(DeviceType::CPU, std::make_unique<cpu::CpuBackend>()); }
  EmulationScope(const EmulationScope&) = delete;
  EmulationScope& operator=(const EmulationScope&) = delete;
};

}  // namespace orbit::testing

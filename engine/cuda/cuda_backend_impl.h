// The CUDA backend class. Its member functions are defined in:
//   cuda_backend.cu      device, memory (caching allocator), stream, copies, fill, copy
//   cuda_elementwise.cu  unary and binary ops               (kernels/elementwise.h)
//   cuda_reduce.cu       reductions, arg-max/min, softmax   (kernels/reduce.h)
//   cuda_blas.cu         GEMM and batched GEMM through cuBLAS
//   cuda_conv.cu         conv2d forward and backward through cuDNN
//   cuda_nn.cu           pooling and batch norm             (kernels/pool.h, kernels/norm.h)
//   cuda_cudnn_layers.cu batch norm, average pooling and softmax through cuDNN instead, when switched
//                        on (set_cudnn_layers)
//   cuda_index.cu        gather, scatter_add, index_select, index_add (kernels/index.h)
//   cuda_spatial.cu      flip, roll, grid_sample            (kernels/spatial.h)
// The engine's own kernels are the templates in kernels/, run here with GpuExec (launch.cuh).
#pragma once

#include "engine/backend.h"

namespace orbit::cuda {

class CudaBackend final : public Backend {
 public:
  CudaBackend();
  ~CudaBackend() override;
  Device device() const override { return Device::cuda(0); }
  const char* name() const override { return "cuda"; }

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t nbytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t nbytes) override;

  void fill(const Tensor& out, double value) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha, double beta) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;

  void reduce(ReduceOp op, const Tensor& x, const std::vector<bool>& reduce, const Tensor& out) override;
  void arg_reduce(bool is_max, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) override;
  void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log, const Tensor& gx) override;

  void gemm(const GemmArgs& args) override;

  void conv2d(const Tensor& x, const Tensor& w, const Conv2dParams& p, const Tensor& out) override;
  void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, const Tensor& gx) override;
  void conv2d_backward_weight(const Tensor& x, const Tensor& gy, const Conv2dParams& p, const Tensor& gw) override;

  void max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out, const Tensor& indices) override;
  void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) override;
  void avg_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out) override;
  void avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, const Tensor& gx) override;
  void adaptive_avg_pool2d(const Tensor& x, const Tensor& out) override;
  void adaptive_avg_pool2d_backward(const Tensor& gy, const Tensor& gx) override;

  void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) override;
  void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                        const Tensor& bias, const Tensor& y) override;
  bool batch_norm_train_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, const Tensor& y,
                              const Tensor& mean, const Tensor& var, const Tensor& invstd) override;
  void batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& mean, const Tensor& invstd,
                           const Tensor& weight, bool batch_stats, const Tensor& gx, const Tensor& gweight,
                           const Tensor& gbias) override;

  void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) override;

  void flip(const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out) override;
  void roll(const Tensor& x, const std::vector<int64_t>& shifts, const std::vector<int64_t>& dims,
            const Tensor& out) override;
  void grid_sample(const Tensor& x, const Tensor& grid, GridMode mode, GridPadding padding, bool align_corners,
                   const Tensor& out) override;
  void grid_sample_backward(const Tensor& gy, const Tensor& x, const Tensor& grid, GridMode mode,
                            GridPadding padding, bool align_corners, const Tensor& gx, const Tensor& ggrid) override;
};

// The cuDNN paths of cuda_cudnn_layers.cu, which the backend's methods try first: each computes its
// result and returns true when its layer is switched on (set_cudnn_layers) and cuDNN can take the
// arguments; otherwise it does nothing and returns false, and the own kernel runs.
bool cudnn_batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& mean, const Tensor& invstd,
                               const Tensor& weight, bool batch_stats, const Tensor& gx, const Tensor& gweight,
                               const Tensor& gbias);
bool cudnn_avg_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out);
bool cudnn_adaptive_avg_pool2d(const Tensor& x, const Tensor& out);
bool cudnn_softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out);
bool cudnn_softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log, const Tensor& gx);

}  // namespace orbit::cuda

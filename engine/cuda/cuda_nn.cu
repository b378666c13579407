// Pooling and batch normalization on the GPU: the kernels of kernels/pool.h and kernels/norm.h, or
// cuDNN where switched on (cuda_cudnn_layers.cu).
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/norm.h"
#include "engine/cuda/kernels/pool.h"
#include "engine/cuda/launch.cuh"

namespace orbit::cuda {

void CudaBackend::max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out, const Tensor& indices) {
  kernels::max_pool2d(GpuExec{}, x, p, out, indices);
}
void CudaBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  kernels::max_pool2d_backward(GpuExec{}, gy, indices, gx);
}
void CudaBackend::avg_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out) {
  if (cudnn_avg_pool2d(x, p, out)) return;
  kernels::avg_pool2d(GpuExec{}, x, p, out);
}
void CudaBackend::avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, const Tensor& gx) {
  kernels::avg_pool2d_backward(GpuExec{}, gy, p, gx);
}
void CudaBackend::adaptive_avg_pool2d(const Tensor& x, const Tensor& out) {
  if (cudnn_adaptive_avg_pool2d(x, out)) return;
  kernels::adaptive_avg_pool2d(GpuExec{}, x, out);
}
void CudaBackend::adaptive_avg_pool2d_backward(const Tensor& gy, const Tensor& gx) {
  kernels::adaptive_avg_pool2d_backward(GpuExec{}, gy, gx);
}

void CudaBackend::batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  kernels::batch_norm_stats(GpuExec{}, x, mean, var);
}
void CudaBackend::batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                                   const Tensor& bias, const Tensor& y) {
  kernels::batch_norm_apply(GpuExec{}, x, mean, invstd, weight, bias, y);
}
void CudaBackend::batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& mean, const Tensor& invstd,
                                      const Tensor& weight, bool batch_stats, const Tensor& gx, const Tensor& gweight,
                                      const Tensor& gbias) {
  if (cudnn_batch_norm_backward(x, gy, mean, invstd, weight, batch_stats, gx, gweight, gbias)) return;
  kernels::batch_norm_backward(GpuExec{}, x, gy, mean, invstd, weight, batch_stats, gx, gweight, gbias);
}

}  // namespace orbit::cuda

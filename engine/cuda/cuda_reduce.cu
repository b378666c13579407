// Reductions, arg-max/min and softmax on the GPU: the kernels of kernels/reduce.h (softmax by cuDNN
// where switched on: cuda_cudnn_layers.cu).
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/reduce.h"
#include "engine/cuda/launch.cuh"

namespace orbit::cuda {

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<bool>& red, const Tensor& out) {
  kernels::reduce(GpuExec{}, op, x, red, out);
}
void CudaBackend::arg_reduce(bool is_max, const Tensor& x, int64_t dim, const Tensor& values, const Tensor& indices) {
  kernels::arg_reduce(GpuExec{}, is_max, x, dim, values, indices);
}
void CudaBackend::softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) {
  if (cudnn_softmax(x, dim, log, out)) return;
  kernels::softmax(GpuExec{}, x, dim, log, out);
}
void CudaBackend::softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log, const Tensor& gx) {
  if (cudnn_softmax_backward(y, gy, dim, log, gx)) return;
  kernels::softmax_backward(GpuExec{}, y, gy, dim, log, gx);
}

}  // namespace orbit::cuda

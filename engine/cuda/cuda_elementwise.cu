// Unary and binary ops on the GPU: the kernels of kernels/elementwise.h on the backend's stream.
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/elementwise.h"
#include "engine/cuda/launch.cuh"

namespace orbit::cuda {

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha, double beta) {
  kernels::unary(GpuExec{}, op, x, out, alpha, beta);
}
void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  kernels::binary(GpuExec{}, op, a, b, out);
}

}  // namespace orbit::cuda

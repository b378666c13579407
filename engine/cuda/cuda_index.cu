// Gather, scatter-add, index-select and index-add on the GPU: the kernels of kernels/index.h.
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/index.h"
#include "engine/cuda/launch.cuh"

namespace orbit::cuda {

void CudaBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  kernels::gather(GpuExec{}, x, dim, index, out);
}
void CudaBackend::scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  kernels::scatter_add(GpuExec{}, src, dim, index, out);
}
void CudaBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  kernels::index_select(GpuExec{}, x, dim, index, out);
}
void CudaBackend::index_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  kernels::index_add(GpuExec{}, src, dim, index, out);
}

}  // namespace orbit::cuda

// Flip, roll and grid sampling on the GPU (the group actions): the kernels of kernels/spatial.h.
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/spatial.h"
#include "engine/cuda/launch.cuh"

namespace orbit::cuda {

void CudaBackend::flip(const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out) {
  kernels::flip(GpuExec{}, x, dims, out);
}
void CudaBackend::roll(const Tensor& x, const std::vector<int64_t>& shifts, const std::vector<int64_t>& dims,
                       const Tensor& out) {
  kernels::roll(GpuExec{}, x, shifts, dims, out);
}
void CudaBackend::grid_sample(const Tensor& x, const Tensor& grid, GridMode mode, GridPadding padding,
                              bool align_corners, const Tensor& out) {
  kernels::grid_sample(GpuExec{}, x, grid, mode, padding, align_corners, out);
}
void CudaBackend::grid_sample_backward(const Tensor& gy, const Tensor& x, const Tensor& grid, GridMode mode,
                                       GridPadding padding, bool align_corners, const Tensor& gx,
                                       const Tensor& ggrid) {
  kernels::grid_sample_backward(GpuExec{}, gy, x, grid, mode, padding, align_corners, gx, ggrid);
}

}  // namespace orbit::cuda

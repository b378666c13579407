// The CUDA device (engine/cuda/): tensors on the GPU and back, fill and strided copy with dtype
// conversion, the caching allocator, and clear errors. The GPU tests run when a CUDA device is
// present and are skipped, visibly, otherwise; without a GPU (or without the CUDA backend in the
// build) using a CUDA tensor must be an error that says why.
#include "test_util.h"
#ifdef ORBIT_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace orbit {
namespace {

using testing::expect_error;

bool have_gpu() {
#ifdef ORBIT_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

TEST(Cuda, UsingTheGpuWithoutOneIsAClearError) {
  if (have_gpu()) GTEST_SKIP() << "a CUDA device is present (this test checks the error without one)";
#ifdef ORBIT_WITH_CUDA
  expect_error([] { Tensor::ones({2}).to(Device::cuda(0)); }, {"CUDA"});
#else
  expect_error([] { Tensor::ones({2}).to(Device::cuda(0)); }, {"cuda:0", "no CUDA backend"});
#endif
}

TEST(Cuda, TensorsOnTheGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device (or a build without the CUDA backend): the GPU tests need one";
#ifdef ORBIT_WITH_CUDA
  const Device gpu = Device::cuda(0);
  const Tensor x = Tensor::arange(12, DType::F32).reshape({3, 4});
  const Tensor g = x.to(gpu);
  EXPECT_EQ(g.device(), gpu);
  EXPECT_EQ(g.to(Device::cpu()).to_vector<float>(), x.to_vector<float>());
  // A strided copy on the GPU (a transposed view made contiguous) and a dtype conversion.
  EXPECT_EQ(g.transpose(0, 1).contiguous().to(Device::cpu()).to_vector<float>(), x.transpose(0, 1).contiguous().to_vector<float>());
  EXPECT_EQ(g.to(DType::F64).to(Device::cpu()).to_vector<double>(), x.to(DType::F64).to_vector<double>());
  EXPECT_EQ(Tensor::full({2, 3}, 2.5, DType::F32, gpu).to(Device::cpu()).to_vector<float>(), std::vector<float>(6, 2.5f));
  EXPECT_EQ(Tensor::zeros({4}, DType::I64, gpu).to(Device::cpu()).to_vector<int64_t>(), std::vector<int64_t>(4, 0));
  // Freed blocks are reused: allocating and freeing the same size again does not call cudaMalloc.
  { Tensor warm = Tensor::zeros({1 << 16}, DType::F32, gpu); }
  const size_t mallocs = cuda::memory_stats().device_mallocs;
  for (int i = 0; i < 20; ++i) Tensor t = Tensor::zeros({1 << 16}, DType::F32, gpu);
  EXPECT_EQ(cuda::memory_stats().device_mallocs, mallocs);
  EXPECT_GE(cuda::memory_stats().peak_allocated, size_t(1 << 18));
  // Kernels not on the GPU yet say so.
  expect_error([&] { exp(g); }, {"cuda", "not implemented on the GPU yet"});
  expect_error([&] { Tensor::ones({1}).to(Device::cuda(1)); }, {"cuda:1"});
#endif
}

}  // namespace
}  // namespace orbit

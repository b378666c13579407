// The CUDA device (engine/cuda/): tensors on the GPU and back, fill and strided copy with dtype
// conversion, the caching allocator, and clear errors. The GPU tests run when a CUDA device is
// present and are skipped, visibly, otherwise; without a GPU (or without the CUDA backend in the
// build) using a CUDA tensor must be an error that says why.
#include "kernel_cases.h"
#include "models/registry.h"
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
  // Uploads go through a ring of pinned staging buffers: more uploads than buffers, of growing sizes,
  // each freed on the host right after the call, all arrive intact.
  {
    std::vector<Tensor> up, want;
    for (int i = 0; i < 9; ++i) {
      Tensor h = testing::randn({(i + 1) * 100000}, 100 + i);
      up.push_back(h.to(gpu));
      want.push_back(h.clone());
      h.fill_(0.0);  // the caller's memory is reusable at once
    }
    for (size_t i = 0; i < up.size(); ++i)
      EXPECT_EQ(up[i].to(Device::cpu()).to_vector<float>(), want[i].to_vector<float>()) << i;
  }
  // The event timer measures GPU time on the stream.
  {
    cuda::EventTimer timer;
    timer.start();
    Tensor big = Tensor::ones({1 << 22}, DType::F32, gpu);
    big = exp(big) * 2.0;
    const double ms = timer.stop_ms();
    EXPECT_GE(ms, 0.0);
    EXPECT_NEAR(big.to(Device::cpu()).to_vector<float>()[7], 2 * std::exp(1.0), 1e-5);
  }
  expect_error([&] { Tensor::ones({1}).to(Device::cuda(1)); }, {"cuda:1"});
#endif
}

// Every kernel case (tests/kernel_cases.h: every op forward and backward, defined in
// test_cuda_kernels*.cpp) on the GPU against the CPU backend. Tolerance: the case's own (chosen for
// the CUDA kernels run on the host) or 1e-5 of the scale, whichever is larger, because on the GPU nvcc
// contracts a * b + c into fused multiply-adds (one rounding fewer than the CPU), the math library's
// exp / tanh / erf differ by an ulp or two, and cuBLAS and cuDNN sum in other orders (TF32 off).
TEST(Cuda, EveryKernelCaseOnTheGpuMatchesTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device (or a build without the CUDA backend): the GPU tests need one";
  ASSERT_GE(testing::kernel_cases().size(), 20u);
  for (const testing::KernelCase& c : testing::kernel_cases()) {
    const std::vector<Tensor> ref = c.run(Device::cpu());
    testing::KernelCase on_gpu = c;
    on_gpu.tol = std::max(c.tol, 1e-5);
    EXPECT_TRUE(testing::case_matches(on_gpu, ref, Device::cuda(0)));
  }
}

// One training step of ResNet-50 (batch norm in training mode, cross entropy, backward) on the GPU
// against the same step on the CPU, from the same weights and inputs.
struct ResNetStep {
  double loss = 0;
  std::vector<std::pair<std::string, Tensor>> grads;  // on the CPU
};

ResNetStep resnet50_step(Device dev, DType dtype, int64_t batch, int64_t size) {
  ModelOptions o;
  o.in_channels = 3;
  o.num_classes = 10;
  manual_seed(7);  // the same initialization for every call
  auto model = create_model("resnet50", o);
  model->to(dtype);
  model->to(dev);
  model->train(true);
  const Tensor x = testing::randn({batch, 3, size, size}, 11, dtype).to(dev);
  std::vector<int64_t> y(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) y[static_cast<size_t>(i)] = (i * 3) % 10;
  const Tensor labels = Tensor::from_vector(y, {batch}).to(dev);
  const Tensor loss = cross_entropy((*model)(x), labels);
  loss.backward();
  ResNetStep s;
  s.loss = loss.item();
  for (const auto& [k, p] : model->named_parameters()) s.grads.emplace_back(k, p.grad().to(Device::cpu()));
  return s;
}

// ||a - b|| / ||b|| over every parameter's gradient; the worst parameter is named.
double worst_relative_grad_error(const ResNetStep& got, const ResNetStep& ref, std::string& where) {
  double worst = 0;
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    const auto a = got.grads[i].second.to_vector<double>(), b = ref.grads[i].second.to_vector<double>();
    double num = 0, den = 1e-300;
    for (size_t j = 0; j < b.size(); ++j) num += (a[j] - b[j]) * (a[j] - b[j]), den += b[j] * b[j];
    const double e = std::sqrt(num / den);
    if (e > worst) worst = e, where = ref.grads[i].first;
  }
  return worst;
}

// Float64: the same function computed by other kernels agrees to 1e-9 (rounding through 53 layers of
// float64 is far below that), which checks the GPU's arithmetic exactly. Float32 at batch 8, 96 x 96:
// the loss within 1e-4 and every gradient within 1e-3 relative (the acceptance of the CUDA backend);
// a larger batch than 2 keeps training-mode batch norm well conditioned in float32.
TEST(Cuda, ResNet50TrainingStepOnTheGpuMatchesTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device (or a build without the CUDA backend): the GPU tests need one";
  for (const auto& [dtype, batch, size, loss_tol, grad_tol] :
       std::vector<std::tuple<DType, int64_t, int64_t, double, double>>{{DType::F64, 2, 64, 1e-9, 1e-9},
                                                                        {DType::F32, 8, 96, 1e-4, 1e-3}}) {
    SCOPED_TRACE(dtype_name(dtype));
    const ResNetStep cpu = resnet50_step(Device::cpu(), dtype, batch, size);
    const ResNetStep gpu = resnet50_step(Device::cuda(0), dtype, batch, size);
    EXPECT_NEAR(gpu.loss, cpu.loss, loss_tol * std::abs(cpu.loss));
    ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
    std::string where;
    const double e = worst_relative_grad_error(gpu, cpu, where);
    EXPECT_LE(e, grad_tol) << "worst gradient: " << where;
  }
}

}  // namespace
}  // namespace orbit

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

// The TF32 switch: an explicit set wins over the environment, both ways (host code).
TEST(Cuda, Tf32Setting) {
#ifdef ORBIT_WITH_CUDA
  const bool was = cuda::allow_tf32();
  cuda::set_allow_tf32(true);
  EXPECT_TRUE(cuda::allow_tf32());
  cuda::set_allow_tf32(false);
  EXPECT_FALSE(cuda::allow_tf32());
  cuda::set_allow_tf32(was);
#else
  GTEST_SKIP() << "a build without the CUDA backend";
#endif
}

// How conv2d picks cuDNN's algorithm: the policy's names, and a clear error for any other (host code).
TEST(Cuda, ConvAlgoPolicySetting) {
#ifdef ORBIT_WITH_CUDA
  for (cuda::ConvAlgoPolicy p :
       {cuda::ConvAlgoPolicy::Deterministic, cuda::ConvAlgoPolicy::Heuristic, cuda::ConvAlgoPolicy::Search})
    EXPECT_EQ(cuda::parse_conv_algo_policy(cuda::conv_algo_policy_name(p)), p);
  EXPECT_STREQ(cuda::conv_algo_policy_name(cuda::ConvAlgoPolicy::Search), "search");
  expect_error([] { cuda::parse_conv_algo_policy("fastest"); }, {"\"fastest\"", "deterministic", "search"});
  const cuda::ConvAlgoPolicy was = cuda::conv_algo_policy();
  cuda::set_conv_algo_policy(cuda::ConvAlgoPolicy::Heuristic);
  EXPECT_EQ(cuda::conv_algo_policy(), cuda::ConvAlgoPolicy::Heuristic);
  cuda::set_conv_algo_policy(was);
#else
  GTEST_SKIP() << "a build without the CUDA backend";
#endif
}

// Which layers go through cuDNN: the setting's words, and a clear error for any other (host code: this
// runs in every build with the CUDA backend, GPU or not).
TEST(Cuda, CudnnLayersSetting) {
#ifdef ORBIT_WITH_CUDA
  EXPECT_EQ(cuda::parse_cudnn_layers(""), 0u);
  EXPECT_EQ(cuda::parse_cudnn_layers("none"), 0u);
  EXPECT_EQ(cuda::parse_cudnn_layers("all"), cuda::kCudnnAllLayers);
  EXPECT_EQ(cuda::parse_cudnn_layers("bn"), unsigned(cuda::kCudnnBatchNorm));
  EXPECT_EQ(cuda::parse_cudnn_layers("softmax,bn"), unsigned(cuda::kCudnnBatchNorm | cuda::kCudnnSoftmax));
  EXPECT_EQ(cuda::parse_cudnn_layers("pool,softmax,bn"), cuda::kCudnnAllLayers);
  expect_error([] { cuda::parse_cudnn_layers("bn,maxpool"); }, {"\"maxpool\"", "bn, pool, softmax"});
  expect_error([] { cuda::parse_cudnn_layers("bn,"); }, {"\"\"", "bn,"});
  const unsigned was = cuda::cudnn_layers();
  cuda::set_cudnn_layers(cuda::kCudnnPooling);
  EXPECT_TRUE(cuda::use_cudnn(cuda::kCudnnPooling));
  EXPECT_FALSE(cuda::use_cudnn(cuda::kCudnnSoftmax));
  expect_error([] { cuda::set_cudnn_layers(8); }, {"got 8"});
  cuda::set_cudnn_layers(was);
#else
  GTEST_SKIP() << "a build without the CUDA backend";
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
  auto every_case = [](double min_tol, const std::string& label, const std::string& only = "") {
    for (const testing::KernelCase& c : testing::kernel_cases()) {
      if (c.name.find(only) == std::string::npos) continue;
      const std::vector<Tensor> ref = c.run(Device::cpu());
      testing::KernelCase on_gpu = c;
      on_gpu.name += label;
      on_gpu.tol = std::max(c.tol, min_tol);
      EXPECT_TRUE(testing::case_matches(on_gpu, ref, Device::cuda(0)));
    }
  };
  every_case(1e-5, "");
#ifdef ORBIT_WITH_CUDA
  // Once more with batch norm, average pooling and softmax through cuDNN (cuda::set_cudnn_layers),
  // which accumulates in float32 in its own order: 1e-4 of the scale.
  const unsigned was = cuda::cudnn_layers();
  cuda::set_cudnn_layers(cuda::kCudnnAllLayers);
  every_case(1e-4, " (cuDNN batch norm, pooling, softmax)");
  cuda::set_cudnn_layers(was);
  // The convolution cases with cuDNN's algorithm chosen by the other policies
  // (cuda::set_conv_algo_policy): the best-ranked one even if not deterministic, and the fastest.
  // These may pick transform-domain algorithms (FFT, Winograd), which round differently from a direct
  // sum: 1e-4 of the scale (a wrong descriptor or algorithm gives errors of order 1).
  const cuda::ConvAlgoPolicy policy = cuda::conv_algo_policy();
  for (cuda::ConvAlgoPolicy other : {cuda::ConvAlgoPolicy::Heuristic, cuda::ConvAlgoPolicy::Search}) {
    cuda::set_conv_algo_policy(other);
    every_case(1e-4, std::string(" (conv algorithm policy ") + cuda::conv_algo_policy_name(other) + ")", "conv2d");
  }
  cuda::set_conv_algo_policy(policy);
#endif
}

// One training step of ResNet-50 (batch norm in training mode, cross entropy, backward) on the GPU
// against the same step on the CPU, from the same weights and inputs.
struct ResNetStep {
  double loss = 0;
  std::vector<std::pair<std::string, Tensor>> grads;  // on the CPU, float64
};

// zero_init_residual: the last batch norm of every block starts at weight 0 (torchvision's option of
// that name), so every block starts as the identity.
ResNetStep resnet50_step(Device dev, DType dtype, int64_t batch, int64_t size, bool zero_init_residual) {
  ModelOptions o;
  o.in_channels = 3;
  o.num_classes = 10;
  manual_seed(7);  // the same initialization for every call
  auto model = create_model("resnet50", o);
  if (zero_init_residual) {
    NoGradGuard ng;
    for (const auto& [k, p] : model->named_parameters())
      if (k.find("bn3.weight") != std::string::npos) p.fill_(0.0);
  }
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
  for (const auto& [k, p] : model->named_parameters())
    s.grads.emplace_back(k, p.grad().to(Device::cpu()).to(DType::F64));
  return s;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// ||a - b|| / ||b|| of each parameter's gradient.
std::vector<double> relative_grad_errors(const ResNetStep& got, const ResNetStep& ref) {
  std::vector<double> e;
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    const auto a = got.grads[i].second.to_vector<double>(), b = ref.grads[i].second.to_vector<double>();
    double num = 0, den = 1e-300;
    for (size_t j = 0; j < b.size(); ++j) num += (a[j] - b[j]) * (a[j] - b[j]), den += b[j] * b[j];
    e.push_back(std::sqrt(num / den));
  }
  return e;
}

// Three checks, because a randomly initialized ResNet-50 in training mode is badly conditioned in
// float32: batch norm's backward subtracts the gradient's mean and its projection on the normalized
// input, and through 53 such layers the float32 rounding of any implementation moves every gradient
// by about 2% (the CPU's own float32 gradients differ from its float64 ones by 1.5-3% at batch 8 to 32,
// 96 to 160 pixels), so no two float32 implementations can agree to 1e-3 there.
//   1. float64: the GPU's gradients within 1e-9 of the CPU's (rounding through 53 layers of float64 is
//      far below that): the same arithmetic, exactly.
//   2. float32, the same model: every gradient of the GPU as close to the float64 one as the CPU's
//      float32 gradient is, within a factor 2 (+1e-6).
//   3. float32 with zero_init_residual (well conditioned: the CPU's float32 is within 1e-5 of its
//      float64): the loss within 1e-4 and every gradient within 1e-3 relative of the CPU's.
TEST(Cuda, ResNet50TrainingStepOnTheGpuMatchesTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device (or a build without the CUDA backend): the GPU tests need one";
  const Device cpu = Device::cpu(), gpu = Device::cuda(0);
  const ResNetStep ref64 = resnet50_step(cpu, DType::F64, 8, 96, false);
  {
    SCOPED_TRACE("float64");
    const ResNetStep g = resnet50_step(gpu, DType::F64, 8, 96, false);
    EXPECT_NEAR(g.loss, ref64.loss, 1e-9 * std::abs(ref64.loss));
    const std::vector<double> e = relative_grad_errors(g, ref64);
    for (size_t i = 0; i < e.size(); ++i) EXPECT_LE(e[i], 1e-9) << ref64.grads[i].first;
  }
  {
    SCOPED_TRACE("float32, as close to float64 as the CPU");
    const ResNetStep c = resnet50_step(cpu, DType::F32, 8, 96, false);
    const ResNetStep g = resnet50_step(gpu, DType::F32, 8, 96, false);
    EXPECT_NEAR(g.loss, c.loss, 1e-4 * std::abs(c.loss));
    const std::vector<double> ec = relative_grad_errors(c, ref64), eg = relative_grad_errors(g, ref64);
    for (size_t i = 0; i < eg.size(); ++i) EXPECT_LE(eg[i], 2 * ec[i] + 1e-6) << ref64.grads[i].first;
  }
  {
    SCOPED_TRACE("float32, zero_init_residual");
    const ResNetStep c = resnet50_step(cpu, DType::F32, 8, 96, true);
    const ResNetStep g = resnet50_step(gpu, DType::F32, 8, 96, true);
    EXPECT_NEAR(g.loss, c.loss, 1e-4 * std::abs(c.loss));
    const std::vector<double> e = relative_grad_errors(g, c);
    for (size_t i = 0; i < e.size(); ++i)
      if (max_abs(c.grads[i].second) > 0) EXPECT_LE(e[i], 1e-3) << c.grads[i].first;
  }
}

}  // namespace
}  // namespace orbit

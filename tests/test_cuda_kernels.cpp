// The CUDA backend's own kernels, run on the host (tests/emulated_cuda_backend.h) for every case of
// tests/kernel_cases.h, against the CPU backend. Elementwise cases are here; the other families are in
// test_cuda_kernels_*.cpp.
#include "emulated_cuda_backend.h"
#include "groups/group.h"
#include "groups/regularizer.h"
#include "kernel_cases.h"
#include "models/registry.h"

namespace orbit {
namespace {

using namespace testing;

// Float32 elementwise math on two code paths (the same formulas; std functions of one library): the
// results agree to a few ulps, so 1e-6 of the scale.
constexpr double kElementwiseTol = 1e-6;

ORBIT_KERNEL_CASE(unary_ops, kElementwiseTol) {
  const Tensor x = input_on(dev, {3, 5, 7}, 1);
  const Tensor p = orbit::abs(x) + 0.1;  // positive, for log / sqrt / pow
  const Tensor xt = x.transpose(0, 2);  // a strided input
  return {orbit::neg(x), orbit::exp(x), orbit::log(p), orbit::sqrt(p), orbit::rsqrt(p), orbit::abs(xt), orbit::sign(x),
          orbit::square(xt), orbit::reciprocal(p), orbit::log1p(p), orbit::relu(xt), orbit::sigmoid(x), orbit::tanh(x),
          orbit::silu(x), orbit::gelu(x), orbit::gelu(x, true), orbit::softplus(x), orbit::pow(p, 1.7),
          orbit::clamp(x, -0.5, 0.5), x * 2.5 + 1.0};
}

ORBIT_KERNEL_CASE(binary_ops_broadcast_and_strided, kElementwiseTol) {
  const Tensor a = input_on(dev, {4, 1, 6}, 2);
  const Tensor b = input_on(dev, {5, 6}, 3);
  const Tensor c = input_on(dev, {6, 5}, 4).t();  // strided [5, 6]
  const Tensor pa = orbit::abs(a) + 0.5;
  return {a + b, a - c, a * b, a / (orbit::abs(c) + 1.0), orbit::pow(pa, b), orbit::maximum(a, b), orbit::minimum(a, c),
          orbit::eq(a, a), orbit::lt(a, b), orbit::ge(a, c)};
}

ORBIT_KERNEL_CASE(integer_and_float64_elementwise, 1e-12) {
  const Tensor i = Tensor::arange(12, DType::I64, dev).reshape({3, 4});
  const Tensor d = input_on(dev, {3, 4}, 5, DType::F64);
  return {i + i, i * i, i - i.t().contiguous().reshape({3, 4}), orbit::exp(d), orbit::tanh(d) * d, d.to(DType::F32),
          i.to(DType::F64), Tensor::full({2, 3}, 7.0, DType::I64, dev)};
}

ORBIT_KERNEL_CASE(activation_gradients, kElementwiseTol) {
  std::vector<Tensor> out;
  int seed = 10;
  for (auto f : std::vector<std::function<Tensor(const Tensor&)>>{
           [](const Tensor& t) { return orbit::relu(t); }, [](const Tensor& t) { return orbit::sigmoid(t); },
           [](const Tensor& t) { return orbit::tanh(t); }, [](const Tensor& t) { return orbit::silu(t); },
           [](const Tensor& t) { return orbit::gelu(t); }, [](const Tensor& t) { return orbit::gelu(t, true); }}) {
    Tensor x = leaf_on(dev, {4, 9}, seed++);
    const Tensor w = input_on(dev, {4, 9}, seed++);
    (f(x) * w).sum().backward();
    out.push_back(x.grad());
  }
  return out;
}

// End to end: a training step of the study's model (convolutions, batch norm in training mode,
// pooling, cross entropy, backward), and one of the equivariance regularizer over C8 (bilinear
// rotations, KL between the upright and rotated outputs). Float32 through about 20 layers whose sums
// (batch-norm statistics, losses) are accumulated in other orders: 1e-4 of the scale.
std::vector<Tensor> training_step(Device dev, double lambda) {
  manual_seed(3);
  ModelOptions o;
  o.in_channels = 1;
  o.num_classes = 5;
  auto model = create_model("resnet_small", o);
  model->to(dev);
  model->train(true);
  const Tensor x = input_on(dev, {4, 1, 16, 16}, 21);
  const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 4}, {4}).to(dev);
  Tensor loss;
  if (lambda > 0) {
    Generator gen(5);
    groups::RegularizerOptions ro;
    const groups::RegularizedOutput r = groups::regularized_forward([&](const Tensor& t) { return (*model)(t); },
                                                                    model.get(), groups::Group::parse("C8"), x, ro, gen);
    loss = cross_entropy(r.output, labels) + r.penalty * lambda;
  } else {
    loss = cross_entropy((*model)(x), labels);
  }
  loss.backward();
  std::vector<Tensor> out = {loss};
  for (const auto& [k, p] : model->named_parameters()) out.push_back(p.grad());
  for (const auto& [k, b] : model->named_buffers()) out.push_back(b);
  return out;
}

ORBIT_KERNEL_CASE(resnet_small_training_step, 1e-4) { return training_step(dev, 0.0); }
ORBIT_KERNEL_CASE(resnet_small_regularized_step_over_c8, 1e-4) { return training_step(dev, 3.0); }

// With ORBIT_EMULATE_CUDA_KERNELS=1 in the environment, the whole test run computes CPU tensors with
// the CUDA kernels on the host: the op suites (PyTorch fixtures, finite-difference gradients, error
// messages) then test the GPU's kernels too. ctest runs them so (tests/CMakeLists.txt).
class EmulateEverything : public ::testing::Environment {
 public:
  void SetUp() override { scope_ = std::make_unique<EmulationScope>(); }
  void TearDown() override { scope_.reset(); }

 private:
  std::unique_ptr<EmulationScope> scope_;
};
const bool kEmulateEverything = [] {
  const char* v = std::getenv("ORBIT_EMULATE_CUDA_KERNELS");
  // Only "1" turns it on: "0" (or anything else) leaves the CPU backend, as if the variable were unset.
  const bool on = v && std::string(v) == "1";
  if (on) ::testing::AddGlobalTestEnvironment(new EmulateEverything);
  return on;
}();

TEST(CudaKernelsOnHost, TheWholeRunIsEmulatedWhenAsked) {
  if (!kEmulateEverything) GTEST_SKIP() << "ORBIT_EMULATE_CUDA_KERNELS is not 1";
  EXPECT_STREQ(backend(Device::cpu()).name(), "cuda kernels on the host");
}

TEST(CudaKernelsOnHost, EveryCaseMatchesTheCpuBackend) {
  if (kEmulateEverything) GTEST_SKIP() << "the whole run is emulated: there is no CPU reference to compare with";
  ASSERT_GE(kernel_cases().size(), 4u);
  for (const KernelCase& c : kernel_cases()) {
    const std::vector<Tensor> ref = c.run(Device::cpu());
    EmulationScope emulate;
    EXPECT_TRUE(case_matches(c, ref, Device::cpu()));
  }
}

// The emulation is live: inside the scope the CPU device computes with the CUDA kernels, whose
// arithmetic differs from the CPU backend's in the last bits somewhere (so a kernel bug cannot hide
// behind a backend that was never swapped).
TEST(CudaKernelsOnHost, TheScopeSwapsTheBackendAndRestoresIt) {
  if (kEmulateEverything) GTEST_SKIP() << "the whole run is emulated";
  EXPECT_STREQ(backend(Device::cpu()).name(), "cpu");
  {
    EmulationScope emulate;
    EXPECT_STREQ(backend(Device::cpu()).name(), "cuda kernels on the host");
  }
  EXPECT_STREQ(backend(Device::cpu()).name(), "cpu");
}

}  // namespace
}  // namespace orbit

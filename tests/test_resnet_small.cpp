// models/resnet_small.h: torchvision-compatible names and shapes, parameter count against a closed
// formula (and torchvision's resnet18 total), the forward against a functional re-computation,
// forward hooks, the fine-tuning surface, initialization, finite-difference gradients of a tiny
// float64 instance, and the registry entries. A DISABLED_ test measures throughput.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "engine/parallel.h"
#include "layers/init.h"
#include "models/registry.h"
#include "models/resnet_small.h"
#include "tests/test_util.h"
#include "train/optim.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::expect_error;
using orbit::testing::gradcheck;

namespace {

std::shared_ptr<ResNetSmall> make(int64_t width, int64_t in_channels, int64_t num_classes, uint64_t seed,
                                  double dropout = 0.0) {
  static thread_local Generator gen;  // outlives the model's Dropout, which keeps the pointer
  gen = Generator(seed);
  ModelOptions o;
  o.in_channels = in_channels;
  o.num_classes = num_classes;
  o.dropout = dropout;
  o.gen = &gen;
  return std::make_shared<ResNetSmall>(o, width);
}

// Parameters of the architecture described in models/resnet_small.h, counted from its definition:
// a 3x3 conv cin -> cout without bias has 9 cin cout weights, a BatchNorm2d(c) 2c parameters.
int64_t expected_parameters(int64_t w, int64_t cin, int64_t classes) {
  auto conv3 = [](int64_t a, int64_t b) { return 9 * a * b; };
  auto bn = [](int64_t c) { return 2 * c; };
  auto block = [&](int64_t a, int64_t b, bool downsample) {
    return conv3(a, b) + bn(b) + conv3(b, b) + bn(b) + (downsample ? a * b + bn(b) : 0);
  };
  int64_t n = conv3(cin, w) + bn(w);
  n += block(w, w, false) + block(w, w, false);
  n += block(w, 2 * w, true) + block(2 * w, 2 * w, false);
  n += block(2 * w, 4 * w, true) + block(4 * w, 4 * w, false);
  n += block(4 * w, 8 * w, true) + block(8 * w, 8 * w, false);
  return n + 8 * w * classes + classes;
}

// The network written out with the functional ops and the state dict, following torchvision's
// ResNet.forward / BasicBlock.forward (eval-mode BatchNorm).
Tensor reference_forward(const StateDict& sd, const Tensor& x) {
  auto W = [&](const std::string& k) { return sd.at(k); };
  auto bn = [&](const Tensor& t, const std::string& p) {
    return batch_norm(t, W(p + ".running_mean"), W(p + ".running_var"), W(p + ".weight"), W(p + ".bias"),
                      /*training=*/false, 0.1, 1e-5);
  };
  auto block = [&](const Tensor& in, const std::string& p, int64_t stride) {
    Tensor out = relu(bn(conv2d(in, W(p + ".conv1.weight"), Tensor(), stride, 1), p + ".bn1"));
    out = bn(conv2d(out, W(p + ".conv2.weight"), Tensor(), 1, 1), p + ".bn2");
    const Tensor shortcut = sd.contains(p + ".downsample.0.weight")
                                ? bn(conv2d(in, W(p + ".downsample.0.weight"), Tensor(), stride, 0), p + ".downsample.1")
                                : in;
    return relu(add(out, shortcut));
  };
  Tensor y = relu(bn(conv2d(x, W("conv1.weight"), Tensor(), 1, 1), "bn1"));
  const int64_t strides[4] = {1, 2, 2, 2};
  for (int l = 0; l < 4; ++l) {
    const std::string p = "layer" + std::to_string(l + 1);
    y = block(y, p + ".0", strides[l]);
    y = block(y, p + ".1", 1);
  }
  y = mean(y, {2, 3});
  return linear(y, W("fc.weight"), W("fc.bias"));
}

// Random BatchNorm statistics and affine parameters, so that eval-mode BN is not the identity.
void randomize_batchnorm(Module& m, uint64_t seed) {
  Generator g(seed);
  NoGradGuard ng;
  for (auto& [name, t] : m.named_buffers()) {
    if (name.find("running_mean") != std::string::npos) init::uniform_(t, -0.3, 0.3, &g);
    if (name.find("running_var") != std::string::npos) init::uniform_(t, 0.5, 1.5, &g);
  }
  for (auto& [name, t] : m.named_parameters())
    if (name.find("bn") != std::string::npos || name.find("downsample.1") != std::string::npos)
      init::uniform_(t, name.find("weight") != std::string::npos ? 0.5 : -0.2,
                     name.find("weight") != std::string::npos ? 1.5 : 0.2, &g);
}

// Runs the enclosed code on one engine thread. The gradient checks evaluate a tiny network thousands
// of times; with more threads each small op opens a parallel region, which costs more than it saves
// and makes the test's time depend on how busy the machine is.
class SingleThread {
 public:
  SingleThread() : prev_(num_threads()) { set_num_threads(1); }
  ~SingleThread() { set_num_threads(prev_); }

 private:
  int prev_;
};

}  // namespace

TEST(ResNetSmall, StateDictFollowsTorchvisionNames) {
  // Width 64 with 3 input channels is torchvision's resnet18 apart from the stem kernel: the same
  // 122 state-dict entries (102 tensors + 20 num_batches_tracked), in the same order.
  auto m = make(64, 3, 1000, 1);
  const StateDict sd = m->state_dict();
  EXPECT_EQ(sd.size(), 122u);
  const std::vector<std::string> first = {
      "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
      "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias", "layer1.0.bn1.running_mean",
      "layer1.0.bn1.running_var", "layer1.0.bn1.num_batches_tracked"};
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(sd.keys()[i], first[i]);
  EXPECT_EQ(sd.keys().back(), "fc.bias");
  // Shapes as printed by torchvision.models.resnet18().state_dict() (stem: 3x3 here, 7x7 there).
  const std::map<std::string, Shape> shapes = {
      {"conv1.weight", {64, 3, 3, 3}},
      {"layer1.0.conv1.weight", {64, 64, 3, 3}},
      {"layer2.0.downsample.0.weight", {128, 64, 1, 1}},
      {"layer2.0.downsample.1.running_var", {128}},
      {"layer3.1.conv2.weight", {256, 256, 3, 3}},
      {"layer4.0.downsample.0.weight", {512, 256, 1, 1}},
      {"layer4.1.bn2.num_batches_tracked", {}},
      {"fc.weight", {1000, 512}},
      {"fc.bias", {1000}},
  };
  for (const auto& [k, s] : shapes) {
    ASSERT_TRUE(sd.contains(k)) << k;
    EXPECT_EQ(sd.at(k).shape(), s) << k;
  }
  // No shortcut projection where torchvision has none.
  EXPECT_FALSE(sd.contains("layer1.0.downsample.0.weight"));
  EXPECT_FALSE(sd.contains("layer2.1.downsample.0.weight"));

  // The registered width-16 model.
  auto small = create_model("resnet_small");
  EXPECT_EQ(small->param("conv1.weight").shape(), (Shape{16, 1, 3, 3}));
  EXPECT_EQ(small->param("layer2.0.downsample.0.weight").shape(), (Shape{32, 16, 1, 1}));
  EXPECT_EQ(small->buffer("layer3.0.downsample.1.running_mean").shape(), (Shape{64}));
  EXPECT_EQ(small->param("layer4.1.conv2.weight").shape(), (Shape{128, 128, 3, 3}));
  EXPECT_EQ(small->param("fc.weight").shape(), (Shape{10, 128}));
}

TEST(ResNetSmall, ParameterCount) {
  for (int64_t w : {2, 16, 32})
    for (int64_t cin : {1, 3}) EXPECT_EQ(make(w, cin, 10, 1)->num_parameters(), expected_parameters(w, cin, 10));
  // torchvision's resnet18 has 11,689,512 parameters; its 7x7 stem has 64 * 3 * 49 = 9,408 weights,
  // a 3x3 stem 1,728.
  EXPECT_EQ(make(64, 3, 1000, 1)->num_parameters(), 11689512 - 9408 + 1728);
  EXPECT_EQ(create_model("resnet_small")->num_parameters(), expected_parameters(16, 1, 10));
  EXPECT_EQ(create_model("resnet_small32")->num_parameters(), expected_parameters(32, 1, 10));
}

TEST(ResNetSmall, OutputShapesForSeveralInputSizes) {
  auto m = make(8, 1, 10, 2);
  m->eval();
  Generator g(1);
  for (int64_t s : {28, 8, 5, 1}) {
    const Tensor x = Tensor::randn({2, 1, s, s}, &g);
    EXPECT_EQ(m->forward_features(x).shape(), (Shape{2, 64})) << s;
    const Tensor y = (*m)(x);
    EXPECT_EQ(y.shape(), (Shape{2, 10})) << s;
    for (float v : y.to_vector<float>()) EXPECT_TRUE(std::isfinite(v));
  }
  auto rgb = make(4, 3, 7, 2);
  EXPECT_EQ((*rgb)(Tensor::randn({3, 3, 32, 32}, &g)).shape(), (Shape{3, 7}));
  expect_error([&] { (*m)(Tensor::randn({2, 3, 28, 28}, &g)); }, {"ResNetSmall", "[2, 3, 28, 28]", "[N, 1, H, W]"});
  expect_error([&] { (*m)(Tensor::randn({1, 28, 28}, &g)); }, {"ResNetSmall"});
  expect_error([&] { m->forward_head(Tensor::randn({2, 63}, &g)); }, {"[N, 64]", "[2, 63]"});
  ModelOptions bad;
  bad.dropout = 1.0;
  expect_error([&] { ResNetSmall(bad, 16); }, {"dropout"});
  expect_error([&] { ResNetSmall(ModelOptions{}, 0); }, {"width"});
}

TEST(ResNetSmall, ForwardMatchesFunctionalRecomputation) {
  auto m = make(4, 2, 5, 3);
  randomize_batchnorm(*m, 9);
  m->eval();
  Generator g(4);
  for (int64_t s : {28, 9}) {
    const Tensor x = Tensor::randn({3, 2, s, s}, &g);
    NoGradGuard ng;
    // Same ops on the same float32 values; 1e-5 of the logits' scale allows for a different
    // summation order inside ops, not for a wiring difference (which changes logits by O(1)).
    EXPECT_TRUE(orbit::testing::matches((*m)(x), reference_forward(m->state_dict(), x), 1e-5)) << s;
  }
}

TEST(ResNetSmall, ForwardHooksSeeIntermediateOutputs) {
  auto m = make(16, 1, 10, 5);
  m->eval();
  std::vector<Shape> seen;
  int ds_calls = 0, relu_calls = 0;
  {
    ForwardHookGuard h3(m->submodule("layer3"), [&](Module&, const Tensor&, const Tensor& out) {
      seen.push_back(out.shape());
    });
    ForwardHookGuard hd(m->submodule("layer2.0.downsample"), [&](Module&, const Tensor&, const Tensor&) { ++ds_calls; });
    ForwardHookGuard hr(m->submodule("layer1.1.relu"), [&](Module&, const Tensor&, const Tensor&) { ++relu_calls; });
    Generator g(1);
    (*m)(Tensor::randn({2, 1, 28, 28}, &g));
    m->forward_features(Tensor::randn({1, 1, 28, 28}, &g));
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (Shape{2, 64, 7, 7}));
  EXPECT_EQ(seen[1], (Shape{1, 64, 7, 7}));
  EXPECT_EQ(ds_calls, 2);
  EXPECT_EQ(relu_calls, 4);  // the block's relu runs twice per forward, as in torchvision
  Generator g(2);
  (*m)(Tensor::randn({1, 1, 28, 28}, &g));
  EXPECT_EQ(seen.size(), 2u);  // hooks removed with their guards
}

TEST(ResNetSmall, ResetClassifierAndParameterGroups) {
  auto m = make(8, 1, 10, 6);
  m->to(DType::F64);
  const Tensor old_conv = m->param("conv1.weight").clone();
  Generator g(3);
  m->reset_classifier(4, &g);
  EXPECT_EQ(m->num_classes(), 4);
  EXPECT_EQ(m->param("fc.weight").shape(), (Shape{4, 64}));
  EXPECT_EQ(m->param("fc.weight").dtype(), DType::F64);  // follows the model's dtype
  EXPECT_EQ(m->num_parameters(), expected_parameters(8, 1, 4));
  m->eval();
  EXPECT_EQ((*m)(Tensor::randn({2, 1, 28, 28}, &g, DType::F64)).shape(), (Shape{2, 4}));
  EXPECT_TRUE(all_close(m->param("conv1.weight"), old_conv, 0.0));
  expect_error([&] { m->reset_classifier(0); }, {"num_classes"});

  // Every parameter in exactly one group; the groups in input-to-output order.
  std::map<std::string, int> hits;
  std::vector<std::string> group_order;
  for (const auto& [group, prefix] : m->parameter_groups()) {
    if (group_order.empty() || group_order.back() != group) group_order.push_back(group);
    const auto params = m->named_parameters_with_prefix(prefix);
    EXPECT_FALSE(params.empty()) << prefix;
    for (const auto& [name, t] : params) ++hits[name];
  }
  EXPECT_EQ(group_order, (std::vector<std::string>{"stem", "layer1", "layer2", "layer3", "layer4", "head"}));
  for (const auto& [name, t] : m->named_parameters()) EXPECT_EQ(hits[name], 1) << name;
  EXPECT_EQ(hits.size(), m->named_parameters().size());
}

TEST(ResNetSmall, InitializationFollowsTorchvision) {
  auto m = make(32, 1, 10, 7);
  // kaiming_normal_(fan_out, relu): std = sqrt(2 / (out * kh * kw)). 295k samples: the sample std
  // is within 1% of it with overwhelming probability (its relative std is ~0.13%).
  const Tensor w = m->param("layer4.0.conv1.weight");  // [256, 128, 3, 3]
  const double want = std::sqrt(2.0 / (256 * 9));
  const auto v = w.to_vector<double>();
  double s2 = 0, s1 = 0;
  for (double x : v) {
    s1 += x;
    s2 += x * x;
  }
  const double n = static_cast<double>(v.size());
  EXPECT_NEAR(std::sqrt(s2 / n - (s1 / n) * (s1 / n)), want, 0.01 * want);
  const Tensor d = m->param("layer3.0.downsample.0.weight");  // [128, 64, 1, 1]: fan_out 128
  const auto dv = d.to_vector<double>();
  double d2 = 0;
  for (double x : dv) d2 += x * x;
  EXPECT_NEAR(std::sqrt(d2 / dv.size()), std::sqrt(2.0 / 128), 0.03 * std::sqrt(2.0 / 128));  // 8k samples
  for (const auto& [name, t] : m->named_parameters())
    if (name.find("bn") != std::string::npos || name.find("downsample.1") != std::string::npos) {
      const double fill = name.find("weight") != std::string::npos ? 1.0 : 0.0;
      EXPECT_TRUE(all_close(t, Tensor::full(t.shape(), fill), 0.0)) << name;
    }
  // The same seed builds the same model.
  auto again = make(32, 1, 10, 7);
  EXPECT_TRUE(all_close(again->param("layer2.1.conv2.weight"), m->param("layer2.1.conv2.weight"), 0.0));
}

TEST(ResNetSmall, GradientsMatchFiniteDifferencesEvalMode) {
  SingleThread one;
  auto m = make(2, 2, 3, 8);
  randomize_batchnorm(*m, 10);
  m->to(DType::F64);
  m->eval();
  Tensor x = orbit::testing::random_input({2, 2, 9, 9}, 11);
  std::vector<Tensor> inputs = {x,
                                m->param("conv1.weight"),
                                m->param("layer2.0.downsample.0.weight"),
                                m->param("layer3.1.conv1.weight"),
                                m->param("layer4.1.bn2.weight"),
                                m->param("layer4.0.bn1.bias"),
                                m->param("fc.weight"),
                                m->param("fc.bias")};
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return (*m)(x); }, inputs));
}

TEST(ResNetSmall, GradientsMatchFiniteDifferencesTrainMode) {
  // Training-mode BatchNorm normalizes with batch statistics (the running ones are updated but
  // unused), so the output is still a function of the inputs and parameters alone.
  SingleThread one;
  auto m = make(2, 1, 3, 12);
  m->to(DType::F64);
  m->train();
  Tensor x = orbit::testing::random_input({3, 1, 6, 6}, 13);
  std::vector<Tensor> inputs = {x, m->param("layer1.0.conv2.weight"), m->param("layer3.0.downsample.1.weight"),
                                m->param("bn1.bias")};
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return (*m)(x); }, inputs));
}

TEST(ResNetSmall, RegistryListsBothWidths) {
  std::map<std::string, std::string> listed;
  for (const auto& [name, desc] : list_models()) listed[name] = desc;
  ASSERT_TRUE(listed.count("resnet_small"));
  ASSERT_TRUE(listed.count("resnet_small32"));
  EXPECT_NE(listed["resnet_small"].find("ResNet-18-like"), std::string::npos);
  EXPECT_NE(listed["resnet_small"].find("16-32-64-128"), std::string::npos);
  EXPECT_NE(listed["resnet_small32"].find("32-64-128-256"), std::string::npos);
  ModelOptions o;
  o.num_classes = 7;
  o.in_channels = 3;
  auto a = std::dynamic_pointer_cast<ResNetSmall>(create_model("resnet_small", o));
  auto b = std::dynamic_pointer_cast<ResNetSmall>(create_model("resnet_small32", o));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->width(), 16);
  EXPECT_EQ(b->width(), 32);
  EXPECT_EQ(b->num_classes(), 7);
  EXPECT_EQ(b->param("conv1.weight").shape(), (Shape{32, 3, 3, 3}));
}

// Throughput on this machine (not a test): forward + backward + SGD step on batches of 128 28x28x1
// images, and eval-mode inference, with 2 threads. Run with
//   orbit_tests --gtest_also_run_disabled_tests --gtest_filter='ResNetSmall.DISABLED_Throughput'
TEST(ResNetSmall, DISABLED_Throughput) {
  const int prev_threads = num_threads();
  set_num_threads(2);
  for (const char* name : {"resnet_small", "resnet_small32"}) {
    Generator g(1);
    ModelOptions o;
    o.gen = &g;
    auto m = create_model(name, o);
    SGDOptions so(0.01);
    so.momentum = 0.9;
    SGD opt(m->parameters(), so);
    const Tensor x = Tensor::randn({128, 1, 28, 28}, &g);
    std::vector<int64_t> yv(128);
    for (int64_t i = 0; i < 128; ++i) yv[i] = i % 10;
    const Tensor y = Tensor::from_vector(yv, {128});
    using clock = std::chrono::steady_clock;
    auto train_step = [&] {
      opt.zero_grad();
      Tensor loss = cross_entropy((*m)(x), y);
      loss.backward();
      opt.step();
    };
    m->train();
    train_step();  // warm-up (allocations, first-touch)
    const int steps = 4;
    auto t0 = clock::now();
    for (int i = 0; i < steps; ++i) train_step();
    const double train_s = std::chrono::duration<double>(clock::now() - t0).count();
    m->eval();
    NoGradGuard ng;
    (*m)(x);
    const int batches = 8;
    t0 = clock::now();
    for (int i = 0; i < batches; ++i) (*m)(x);
    const double infer_s = std::chrono::duration<double>(clock::now() - t0).count();
    std::printf("%-15s %8lld params  train %7.1f img/s  inference %7.1f img/s  (batch 128, 2 threads)\n", name,
                static_cast<long long>(m->num_parameters()), steps * 128 / train_s, batches * 128 / infer_s);
  }
  set_num_threads(prev_threads);
}

// The standard layers: forward and backward against torch.nn with loaded weights (fixture from
// tests/fixtures/gen_layers.py), repr, default initialization, BatchNorm modes (train / eval /
// frozen), Dropout, containers, and argument errors.
#include <gtest/gtest.h>

#include <cmath>

#include "layers/init.h"
#include "layers/layers.h"
#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::load_fixture;
using nlohmann::json;

namespace {

// float32 comparison: 1e-4 relative plus 1e-5 of the tensor's scale for elements near zero
// (float32 sums over at most a few hundred terms).
::testing::AssertionResult close32(const Tensor& a, const Tensor& b) {
  const auto v = b.to_vector<double>();
  double scale = 0;
  for (double x : v) scale = std::max(scale, std::abs(x));
  return all_close(a, b, 1e-4, 1e-5 * scale);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool mentions(const std::string& msg, const std::string& word) { return msg.find(word) != std::string::npos; }

// The layer of a fixture case (the same spec gen_layers.py builds the torch.nn layer from).
std::shared_ptr<Module> build(const json& spec) {
  const std::string kind = spec["kind"];
  const json a = spec.value("args", json::object());
  if (kind == "Conv2d") {
    Conv2dOptions o;
    o.in_channels = a["in"];
    o.out_channels = a["out"];
    o.kernel_h = a["kernel"][0];
    o.kernel_w = a["kernel"][1];
    o.stride_h = a["stride"][0];
    o.stride_w = a["stride"][1];
    o.pad_h = a["padding"][0];
    o.pad_w = a["padding"][1];
    o.dilation_h = a["dilation"][0];
    o.dilation_w = a["dilation"][1];
    o.groups = a["groups"];
    o.bias = a["bias"];
    o.padding_mode = a["padding_mode"] == "circular" ? ConvPadding::Circular : ConvPadding::Zeros;
    return std::make_shared<Conv2d>(o);
  }
  if (kind == "Linear") return std::make_shared<Linear>(a["in"].get<int64_t>(), a["out"].get<int64_t>(), a["bias"].get<bool>());
  if (kind == "BatchNorm2d" || kind == "BatchNorm1d") {
    const int64_t n = a["num_features"];
    const double eps = a.value("eps", 1e-5);
    std::optional<double> momentum = 0.1;
    if (a.contains("momentum")) momentum = a["momentum"].is_null() ? std::nullopt : std::optional<double>(a["momentum"]);
    const bool affine = a.value("affine", true), track = a.value("track_running_stats", true);
    if (kind == "BatchNorm2d") return std::make_shared<BatchNorm2d>(n, eps, momentum, affine, track);
    return std::make_shared<BatchNorm1d>(n, eps, momentum, affine, track);
  }
  if (kind == "MaxPool2d")
    return std::make_shared<MaxPool2d>(a["kernel"].get<int64_t>(), a.value("stride", int64_t{0}),
                                       a.value("padding", int64_t{0}), a.value("dilation", int64_t{1}),
                                       a.value("ceil_mode", false));
  if (kind == "AvgPool2d")
    return std::make_shared<AvgPool2d>(a["kernel"].get<int64_t>(), a.value("stride", int64_t{0}),
                                       a.value("padding", int64_t{0}), a.value("ceil_mode", false),
                                       a.value("count_include_pad", true));
  if (kind == "AdaptiveAvgPool2d")
    return std::make_shared<AdaptiveAvgPool2d>(a["output_size"][0].get<int64_t>(), a["output_size"][1].get<int64_t>());
  if (kind == "GELU") return std::make_shared<GELU>(a.value("approximate", std::string("none")));
  if (kind == "Flatten") return std::make_shared<Flatten>(a.value("start_dim", int64_t{1}), a.value("end_dim", int64_t{-1}));
  if (kind == "ReLU") return std::make_shared<ReLU>();
  if (kind == "SiLU") return std::make_shared<SiLU>();
  if (kind == "Sigmoid") return std::make_shared<Sigmoid>();
  if (kind == "Tanh") return std::make_shared<Tanh>();
  ADD_FAILURE() << "unknown layer " << kind;
  return nullptr;
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> n;
  for (const auto& p : v) n.push_back(p.first);
  return n;
}

}  // namespace

// ------------------------------------------------------------------ against PyTorch

TEST(Layers, ReprAndNamesMatchPyTorch) {
  const auto fx = load_fixture("layers_forward");
  for (const auto& c : orbit::testing::fixture_cases(fx)) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto m = build(c["spec"]);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->repr(), c["repr"].get<std::string>());
    EXPECT_EQ(names_of(m->named_parameters()), c["params"].get<std::vector<std::string>>());
    EXPECT_EQ(names_of(m->named_buffers()), c["buffers"].get<std::vector<std::string>>());
  }
}

TEST(Layers, ForwardBackwardMatchPyTorch) {
  const auto fx = load_fixture("layers_forward");
  const auto cases = orbit::testing::fixture_cases(fx);
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    auto m = build(c["spec"]);
    ASSERT_TRUE(m);
    StateDict sd;
    for (const auto& key : m->state_dict().keys()) sd.insert(key, fx.at(name + ".sd." + key));
    m->load_state_dict(sd);
    m->train(c["train"].get<bool>());
    Tensor x = fx.at(name + ".x").clone().requires_grad_();
    Tensor y;
    try {
      y = m->forward(x);
    } catch (const Error& e) {
      ADD_FAILURE() << "forward threw: " << e.what();
      continue;
    }
    EXPECT_TRUE(close32(y, fx.at(name + ".y")));
    y.backward(fx.at(name + ".gy"));
    EXPECT_TRUE(close32(x.grad(), fx.at(name + ".gx"))) << "input gradient";
    for (const auto& [k, p] : m->named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << k;
      EXPECT_TRUE(close32(p.grad(), fx.at(name + ".grad." + k))) << k;
    }
    for (const auto& [k, b] : m->named_buffers()) {
      const Tensor& ref = fx.at(name + ".after." + k);
      if (ref.dtype() == DType::I64) {
        EXPECT_EQ(b.item(), ref.item()) << k;
      } else {
        EXPECT_TRUE(close32(b, ref)) << k;
      }
    }
  }
}

// ------------------------------------------------------------------ initialization

namespace {
struct Stats {
  double min, max, mean, var;
};
Stats stats_of(const Tensor& t) {
  const auto v = t.to_vector<double>();
  Stats s{INFINITY, -INFINITY, 0, 0};
  for (double x : v) {
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
    s.mean += x;
  }
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.var += (x - s.mean) * (x - s.mean);
  s.var /= static_cast<double>(v.size());
  return s;
}
// U(-b, b) over n samples: all inside, extremes near b, mean ~ 0 and variance ~ b^2 / 3 (the sample
// moments' standard errors are b / sqrt(3n) and ~0.9 b^2 / (3 sqrt n); 5 sigma bounds).
void expect_uniform(const Tensor& t, double bound) {
  const Stats s = stats_of(t);
  const double n = static_cast<double>(t.numel());
  EXPECT_LE(s.max, bound);
  EXPECT_GE(s.min, -bound);
  EXPECT_GT(s.max, bound * (1 - 10 / n));
  EXPECT_LT(s.min, -bound * (1 - 10 / n));
  EXPECT_NEAR(s.mean, 0.0, 5 * bound / std::sqrt(3 * n));
  EXPECT_NEAR(s.var, bound * bound / 3, 5 * 0.9 * bound * bound / (3 * std::sqrt(n)));
}
}  // namespace

TEST(LayersInit, ConvAndLinearDefaults) {
  manual_seed(5);
  Conv2d conv(16, 32, 3);  // fan_in 144: bound 1/12
  expect_uniform(conv.weight, 1.0 / 12.0);
  expect_uniform(conv.bias, 1.0 / 12.0);
  Conv2d grouped(16, 32, 3, 1, 0, 1, 4);  // fan_in 4 * 9 = 36: bound 1/6
  EXPECT_EQ(grouped.weight.shape(), Shape({32, 4, 3, 3}));
  expect_uniform(grouped.weight, 1.0 / 6.0);
  Linear lin(400, 300);  // bound 1/20
  expect_uniform(lin.weight, 0.05);
  expect_uniform(lin.bias, 0.05);
  EXPECT_FALSE(Linear(4, 3, false).bias.defined());
  EXPECT_FALSE(Conv2d(4, 3, 1, 1, 0, 1, 1, false).bias.defined());
  EXPECT_EQ(lin.weight.dtype(), DType::F32);
  EXPECT_TRUE(lin.weight.requires_grad());
}

TEST(LayersInit, BatchNormDefaults) {
  BatchNorm2d bn(5);
  EXPECT_TRUE(all_close(bn.weight, Tensor::ones({5}), 0));
  EXPECT_TRUE(all_close(bn.bias, Tensor::zeros({5}), 0));
  EXPECT_TRUE(all_close(bn.running_mean, Tensor::zeros({5}), 0));
  EXPECT_TRUE(all_close(bn.running_var, Tensor::ones({5}), 0));
  EXPECT_EQ(bn.num_batches_tracked.dtype(), DType::I64);
  EXPECT_EQ(bn.num_batches_tracked.dim(), 0);
  EXPECT_EQ(bn.num_batches_tracked.item(), 0.0);
  EXPECT_FALSE(bn.running_mean.requires_grad());
  BatchNorm2d bare(5, 1e-5, 0.1, false, false);
  EXPECT_TRUE(bare.state_dict().empty());
}

TEST(LayersInit, SeededAndGeneratorReproducible) {
  Generator g1(99), g2(99), g3(100);
  Conv2d a(3, 8, 3, 1, 0, 1, 1, true, ConvPadding::Zeros, &g1);
  Conv2d b(3, 8, 3, 1, 0, 1, 1, true, ConvPadding::Zeros, &g2);
  Conv2d c(3, 8, 3, 1, 0, 1, 1, true, ConvPadding::Zeros, &g3);
  EXPECT_TRUE(all_close(a.weight, b.weight, 0));
  EXPECT_TRUE(all_close(a.bias, b.bias, 0));
  EXPECT_FALSE(all_close(a.weight, c.weight, 0));
  manual_seed(1);
  Linear l1(6, 4);
  manual_seed(1);
  Linear l2(6, 4);
  EXPECT_TRUE(all_close(l1.weight, l2.weight, 0));
  l2.reset_parameters();  // draws again from the (advanced) default generator
  EXPECT_FALSE(all_close(l1.weight, l2.weight, 0));
}

TEST(LayersInit, InitFunctions) {
  EXPECT_DOUBLE_EQ(init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_TRUE(mentions(error_of([] { init::calculate_gain("swish"); }), "swish"));
  const auto fans = init::calculate_fan_in_and_fan_out(Tensor::zeros({8, 4, 3, 3}));
  EXPECT_EQ(fans.first, 36);
  EXPECT_EQ(fans.second, 72);
  EXPECT_THROW(init::calculate_fan_in_and_fan_out(Tensor::zeros({5})), Error);

  Generator g(3);
  Tensor w = Tensor::empty({256, 64, 3, 3});
  init::kaiming_normal_(w, 0.0, "fan_out", "relu", &g);  // std = sqrt(2 / (256 * 9))
  const double std = std::sqrt(2.0 / (256 * 9));
  EXPECT_NEAR(std::sqrt(stats_of(w).var), std, 0.01 * std);
  EXPECT_NEAR(stats_of(w).mean, 0.0, 5 * std / std::sqrt(static_cast<double>(w.numel())));

  Tensor x = Tensor::empty({300, 200}, DType::F64);
  init::xavier_uniform_(x, 1.0, &g);
  expect_uniform(x, std::sqrt(6.0 / 500.0));
  init::trunc_normal_(x, 0.0, 1.0, -0.5, 0.5, &g);
  EXPECT_LE(stats_of(x).max, 0.5);
  EXPECT_GE(stats_of(x).min, -0.5);
  init::constant_(x, 2.5);
  EXPECT_TRUE(all_close(x, Tensor::full({300, 200}, 2.5, DType::F64), 0));
  EXPECT_THROW(init::kaiming_uniform_(w, 0.0, "fan_avg"), Error);
  // Works on parameters that require grad (no autograd recording).
  Linear lin(3, 2);
  init::zeros_(lin.weight);
  EXPECT_TRUE(all_close(lin.weight, Tensor::zeros({2, 3}), 0));
  EXPECT_TRUE(lin.weight.requires_grad());
  EXPECT_TRUE(lin.weight.is_leaf());
}

// ------------------------------------------------------------------ BatchNorm modes

namespace {
Tensor bn_input(uint64_t seed) {
  Generator g(seed);
  return add(mul(Tensor::randn({4, 3, 5, 5}, &g), 2.0), 0.5);
}
}  // namespace

TEST(LayersBatchNorm, TrainUpdatesStatisticsAndCounter) {
  BatchNorm2d bn(3);
  const Tensor x = bn_input(1);
  bn.forward(x);
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.0);
  // running_mean after two updates with momentum 0.1: (1 - 0.9^2) * batch mean.
  const Tensor batch_mean = mean(x, {0, 2, 3});
  EXPECT_TRUE(close32(bn.running_mean, mul(batch_mean, 1 - 0.81)));
  bn.eval();
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.0);  // eval: no update
}

TEST(LayersBatchNorm, FrozenModeKeepsStatistics) {
  BatchNorm2d bn(3);
  {
    NoGradGuard ng;
    bn.running_mean.copy_(Tensor::from_vector(std::vector<float>{0.1f, -0.2f, 0.3f}, {3}));
    bn.running_var.copy_(Tensor::from_vector(std::vector<float>{0.5f, 1.5f, 2.0f}, {3}));
  }
  const Tensor rm = bn.running_mean.clone(), rv = bn.running_var.clone();
  const Tensor x = bn_input(2);
  bn.eval();
  const Tensor y_eval = bn.forward(x);
  bn.train();
  bn.freeze();
  EXPECT_TRUE(bn.is_frozen());
  Tensor xin = x.clone().requires_grad_();
  const Tensor y = bn.forward(xin);
  EXPECT_TRUE(all_close(y, y_eval, 0));  // normalized with the running statistics
  EXPECT_TRUE(all_close(bn.running_mean, rm, 0));
  EXPECT_TRUE(all_close(bn.running_var, rv, 0));
  EXPECT_EQ(bn.num_batches_tracked.item(), 0.0);
  // Still differentiable (the affine parameters and the input train).
  sum(y).backward();
  EXPECT_TRUE(xin.grad().defined());
  EXPECT_TRUE(bn.weight.grad().defined());
  bn.freeze(false);
  bn.forward(x);
  EXPECT_FALSE(all_close(bn.running_mean, rm, 0));
  BatchNorm2d no_stats(3, 1e-5, 0.1, true, false);
  EXPECT_TRUE(mentions(error_of([&] { no_stats.freeze(); }), "track_running_stats"));
}

// ------------------------------------------------------------------ Dropout

TEST(LayersDropout, TrainZeroesAndScalesEvalIsIdentity) {
  Generator g(5);
  Dropout d(0.25, false, &g);
  const Tensor x = Tensor::ones({10000});
  const auto v = d.forward(x).to_vector<float>();
  int64_t zeros = 0;
  for (float e : v) {
    if (e == 0.0f) {
      ++zeros;
    } else {
      EXPECT_FLOAT_EQ(e, 1.0f / 0.75f);
    }
  }
  // Binomial(10000, 0.25): standard deviation ~43; 5 sigma.
  EXPECT_NEAR(static_cast<double>(zeros), 2500.0, 220.0);
  d.eval();
  EXPECT_TRUE(all_close(d.forward(x), x, 0));
  // The same generator state gives the same mask.
  Generator g1(8), g2(8);
  Dropout d1(0.5, false, &g1), d2(0.5, false, &g2);
  EXPECT_TRUE(all_close(d1.forward(x), d2.forward(x), 0));
  EXPECT_TRUE(mentions(error_of([] { Dropout bad(1.5); }), "1.5"));
}

// ------------------------------------------------------------------ simple layers and containers

TEST(Layers, ActivationsFlattenIdentity) {
  Tensor x = Tensor::from_vector(std::vector<float>{-2.0f, -0.5f, 0.5f, 3.0f}, {2, 2});
  EXPECT_TRUE(all_close(ReLU().forward(x), relu(x), 0));
  EXPECT_TRUE(all_close(SiLU().forward(x), silu(x), 0));
  EXPECT_TRUE(all_close(GELU("tanh").forward(x), gelu(x, true), 0));
  EXPECT_TRUE(all_close(Sigmoid().forward(x), sigmoid(x), 0));
  EXPECT_TRUE(all_close(Tanh().forward(x), tanh(x), 0));
  Identity id;
  EXPECT_TRUE(id.forward(x).same(x));
  EXPECT_EQ(Flatten().forward(Tensor::zeros({2, 3, 4, 5})).shape(), Shape({2, 60}));
  EXPECT_EQ(Flatten(0, -2).forward(Tensor::zeros({2, 3, 4})).shape(), Shape({6, 4}));
  EXPECT_TRUE(mentions(error_of([] { GELU bad("fast"); }), "fast"));
}

TEST(Layers, SequentialContainer) {
  auto lin = std::make_shared<Linear>(3, 4);
  Sequential seq{lin, std::make_shared<ReLU>()};
  auto last = seq.push_back(std::make_shared<Linear>(4, 2));
  seq.push_back("head_act", std::make_shared<Tanh>());
  EXPECT_EQ(seq.size(), 4u);
  EXPECT_EQ(seq[0].get(), lin.get());
  EXPECT_EQ(seq[-2].get(), last.get());
  EXPECT_EQ(seq.at<Linear>(2)->out_features(), 2);
  EXPECT_THROW(seq.at<Conv2d>(0), Error);
  EXPECT_THROW(seq[4], Error);
  EXPECT_EQ(seq.state_dict().keys(), (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  std::vector<std::string> kinds;
  for (const auto& m : seq) kinds.push_back(m->name());
  EXPECT_EQ(kinds, (std::vector<std::string>{"Linear", "ReLU", "Linear", "Tanh"}));
  const Tensor x = Tensor::ones({5, 3});
  const Tensor expected = tanh(last->forward(relu(lin->forward(x))));
  EXPECT_TRUE(all_close(seq.forward(x), expected, 0));
  EXPECT_TRUE(Sequential().forward(x).same(x));
  ModuleList list{std::make_shared<ReLU>()};
  EXPECT_EQ(list.named_children()[0].first, "0");
  EXPECT_TRUE(mentions(error_of([&] { list.forward(x); }), "ModuleList"));
}

// ------------------------------------------------------------------ argument errors

TEST(Layers, ConstructorAndInputErrors) {
  EXPECT_TRUE(mentions(error_of([] { Conv2d c(3, 6, 3, 1, 0, 1, 2); }), "divisible by groups"));
  EXPECT_TRUE(mentions(error_of([] { Conv2d c(4, 6, 0); }), "kernel_size"));
  EXPECT_TRUE(mentions(error_of([] { Conv2d c(4, 6, 3, 0); }), "stride"));
  EXPECT_TRUE(mentions(error_of([] { Conv2d c(4, 6, 3, 1, -1); }), "padding"));
  Conv2d conv(3, 4, 3);
  const std::string msg = error_of([&] { conv.forward(Tensor::zeros({1, 5, 8, 8})); });
  EXPECT_TRUE(mentions(msg, "Conv2d(3, 4)") && mentions(msg, "3 channels") && mentions(msg, "[1, 5, 8, 8]")) << msg;
  EXPECT_TRUE(mentions(error_of([&] { conv.forward(Tensor::zeros({8, 8})); }), "[8, 8]"));
  Linear lin(5, 2);
  EXPECT_TRUE(mentions(error_of([&] { lin.forward(Tensor::zeros({3, 4})); }), "[3, 4]"));
  BatchNorm2d bn(3);
  EXPECT_TRUE(mentions(error_of([&] { bn.forward(Tensor::zeros({2, 3, 4})); }), "expected 4D input (got 3D"));
  EXPECT_TRUE(mentions(error_of([&] { bn.forward(Tensor::zeros({2, 4, 2, 2})); }), "3 channels"));
  BatchNorm1d bn1(3);
  EXPECT_TRUE(mentions(error_of([&] { bn1.forward(Tensor::zeros({2, 3, 4, 4})); }), "2D or 3D"));
  EXPECT_TRUE(mentions(error_of([] { BatchNorm2d b(0); }), "num_features"));
  EXPECT_TRUE(mentions(error_of([] { BatchNorm2d b(3, 1e-5, 1.5); }), "momentum"));
  EXPECT_TRUE(mentions(error_of([] { MaxPool2d p(0); }), "kernel_size"));
  EXPECT_TRUE(mentions(error_of([] { AvgPool2d p(2, 2, -1); }), "padding"));
  EXPECT_TRUE(mentions(error_of([] { AdaptiveAvgPool2d p(0, 1); }), "output_size"));
  MaxPool2d pool(2);
  EXPECT_TRUE(mentions(error_of([&] { pool.forward(Tensor::zeros({4, 4})); }), "MaxPool2d"));
}

// Losses (cross_entropy, nll_loss, mse_loss, smooth_l1_loss, binary_cross_entropy_with_logits) and
// dropout: forward and gradients against PyTorch fixtures (tests/fixtures/gen_spatial_loss.py) for
// every option combination, finite-difference gradients, edge cases, and argument errors.
//
// Fixture tolerance: 1e-4 relative to the reference tensor's largest magnitude (scaled_error);
// both sides evaluate the same float32 formulas up to summation order and the composition of the
// ops, which moves results by a few ulps of the scale.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::expect_error;
using orbit::testing::kFixtureTol;
using orbit::testing::matches;
using orbit::testing::all_close;
using orbit::testing::Fixture;
using orbit::testing::fixture_cases;
using orbit::testing::gradcheck;
using orbit::testing::load_fixture;
using orbit::testing::random_input;
using orbit::testing::scaled_error;

namespace {

Reduction reduction_of(const std::string& s) {
  if (s == "none") return Reduction::None;
  if (s == "sum") return Reduction::Sum;
  return Reduction::Mean;
}

Tensor leaf(const Tensor& t) { return t.clone().detach().requires_grad_(); }

// Gradients of a loss: of the scalar itself, or of sum(y * upstream) when unreduced.
std::vector<Tensor> loss_grads(const Tensor& y, const Tensor& upstream, const std::vector<Tensor>& leaves) {
  if (y.dim() == 0) return grad({y}, leaves);
  return grad({y}, leaves, {upstream});
}

Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector(v, s); }

}  // namespace

// ============================================================================ class losses

TEST(CrossEntropy, MatchesPyTorchForEveryOptionCombination) {
  // {[N, C], [N, C, d1, d2]} x {no ignored target, ignored targets, ignore_index a real class}
  // x {unweighted, weighted} x {none, mean, sum} x label smoothing {0, 0.25}.
  const Fixture fx = load_fixture("loss_cross_entropy");
  const auto cases = fixture_cases(fx);
  ASSERT_EQ(cases.size(), 72u);
  for (const auto& c : cases) {
    const std::string name = c["name"], shape = c["shape"], variant = c["variant"];
    SCOPED_TRACE(name);
    Tensor xl = leaf(fx.at(shape + "/input"));
    const Tensor w = c["weighted"].get<bool>() ? fx.at("weight") : Tensor();
    const Tensor y = cross_entropy(xl, fx.at(shape + "_" + variant + "/target"), w,
                                   reduction_of(c["reduction"]), c["label_smoothing"].get<double>(),
                                   c["ignore_index"].get<int64_t>());
    EXPECT_TRUE(matches(y, fx.at(name + "/y")));
    EXPECT_TRUE(matches(loss_grads(y, fx.at(shape + "/upstream"), {xl})[0], fx.at(name + "/ginput")));
  }
}

TEST(NllLoss, MatchesPyTorchForEveryOptionCombination) {
  const Fixture fx = load_fixture("loss_nll_loss");
  const auto cases = fixture_cases(fx);
  ASSERT_EQ(cases.size(), 36u);
  for (const auto& c : cases) {
    const std::string name = c["name"], shape = c["shape"], variant = c["variant"];
    SCOPED_TRACE(name);
    Tensor xl = leaf(fx.at(shape + "/input"));
    const Tensor w = c["weighted"].get<bool>() ? fx.at("weight") : Tensor();
    const Tensor y = nll_loss(xl, fx.at(shape + "_" + variant + "/target"), w,
                              reduction_of(c["reduction"]), c["ignore_index"].get<int64_t>());
    EXPECT_TRUE(matches(y, fx.at(name + "/y")));
    EXPECT_TRUE(matches(loss_grads(y, fx.at(shape + "/upstream"), {xl})[0], fx.at(name + "/ginput")));
  }
}

TEST(CrossEntropy, HandComputedValues) {
  // Uniform logits: -log(1/C) for every sample.
  const Tensor z = Tensor::zeros({3, 4}, DType::F64);
  EXPECT_NEAR(cross_entropy(z, i64({0, 1, 3}, {3})).item(), std::log(4.0), 1e-12);
  // Weighted mean divides by the sum of the targets' weights: (w0 l0 + w2 l2) / (w0 + w2).
  const Tensor x = Tensor::from_vector(std::vector<double>{2, 0, 0, 0, 1, 0}, {2, 3});
  const Tensor w = Tensor::from_vector(std::vector<double>{1, 1, 3}, {3});
  const double l0 = -std::log(std::exp(2.0) / (std::exp(2.0) + 2)), l1 = -std::log(1 / (2 + std::exp(1.0)));
  EXPECT_NEAR(cross_entropy(x, i64({0, 2}, {2}), w).item(), (l0 + 3 * l1) / 4, 1e-12);
}

TEST(CrossEntropy, UnbatchedInputAndAllIgnored) {
  const Tensor x = random_input({5}, 51).detach();
  const double batched = cross_entropy(x.unsqueeze(0), i64({3}, {1})).item();
  EXPECT_NEAR(cross_entropy(x, i64({3}, {})).item(), batched, 1e-12);
  EXPECT_EQ(cross_entropy(x, i64({3}, {}), Tensor(), Reduction::None).shape(), Shape{});
  // Mean over zero counted targets is 0 / 0, NaN as in PyTorch.
  const Tensor t = i64({-100, -100}, {2});
  EXPECT_TRUE(std::isnan(cross_entropy(random_input({2, 3}, 52).detach(), t).item()));
  EXPECT_TRUE(std::isnan(nll_loss(random_input({2, 3}, 52).detach(), t).item()));
  EXPECT_EQ(cross_entropy(random_input({2, 3}, 52).detach(), t, Tensor(), Reduction::Sum).item(), 0.0);
}

TEST(CrossEntropy, Gradients) {
  const Tensor t = i64({1, -100, 0, 2, 2, 1}, {2, 3});  // [N, d1] targets of [N, C, d1] logits
  const Tensor w = Tensor::from_vector(std::vector<double>{0.5, 2.0, 1.2}, {3});
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum})
    for (double ls : {0.0, 0.3}) {
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) {
        return cross_entropy(in[0], t, w, r, ls);
      }, {random_input({2, 3, 3}, 53)}));
    }
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) {
    return nll_loss(in[0], i64({2, 0, 1, 2}, {4}), w, Reduction::Mean, 0);
  }, {random_input({4, 3}, 54)}));
}

TEST(CrossEntropy, Errors) {
  const Tensor x = Tensor::zeros({2, 3});
  expect_error([&] { cross_entropy(x, i64({0, 3}, {2})); },
               {"cross_entropy", "target 3", "[0, 3)", "ignore_index = -100"});
  expect_error([&] { cross_entropy(x, i64({0, -1}, {2})); }, {"cross_entropy", "target -1"});
  expect_error([&] { cross_entropy(x, Tensor::zeros({2, 3})); }, {"cross_entropy", "int64 class indices"});
  expect_error([&] { cross_entropy(x, Tensor::zeros({2})); }, {"cross_entropy", "int64 class indices"});
  expect_error([&] { cross_entropy(x, i64({0, 1, 2}, {3})); }, {"cross_entropy", "target shape"});
  expect_error([&] { cross_entropy(x, i64({0, 1}, {2}), Tensor::ones({4})); }, {"cross_entropy", "[3]"});
  expect_error([&] { cross_entropy(x, i64({0, 1}, {2}), Tensor(), Reduction::Mean, 1.5); },
               {"cross_entropy", "label_smoothing"});
  expect_error([&] { cross_entropy(x, i64({0}, {1, 1})); }, {"cross_entropy", "target shape"});
  expect_error([&] { nll_loss(x, i64({0, 7}, {2})); }, {"nll_loss", "target 7", "[0, 3)"});
  expect_error([&] { nll_loss(x, i64({0, 1}, {2}), Tensor::ones({3}, DType::F64)); }, {"nll_loss", "dtype"});
}

// ============================================================================ elementwise losses

TEST(RegressionLosses, MatchPyTorchFixtures) {
  // mse and smooth_l1 (beta 0 = L1, 0.5, 1, 2) in every reduction, gradients in input and target;
  // BCE with logits including |x| up to 95, with per-row / per-column weights and pos_weight.
  const Fixture fx = load_fixture("loss_regression");
  const auto cases = fixture_cases(fx);
  ASSERT_EQ(cases.size(), 33u);
  for (const auto& c : cases) {
    const std::string name = c["name"], loss = c["loss"];
    SCOPED_TRACE(name);
    const Reduction r = reduction_of(c["reduction"]);
    Tensor a, b, y, up;
    if (loss == "bce") {
      a = leaf(fx.at("bce/logits"));
      b = leaf(fx.at("bce/target"));
      const std::string wn = c["weight"];
      const Tensor w = wn == "none" ? Tensor() : fx.at("bce/weight_" + wn);
      const Tensor pw = c["pos_weight"].get<bool>() ? fx.at("bce/pos_weight") : Tensor();
      y = binary_cross_entropy_with_logits(a, b, w, r, pw);
      up = fx.at("bce/upstream");
    } else {
      a = leaf(fx.at("input"));
      b = leaf(fx.at("target"));
      y = loss == "mse" ? mse_loss(a, b, r) : smooth_l1_loss(a, b, r, c["beta"].get<double>());
      up = fx.at("upstream");
    }
    EXPECT_TRUE(matches(y, fx.at(name + "/y")));
    const auto g = loss_grads(y, up, {a, b});
    EXPECT_TRUE(matches(g[0], fx.at(name + "/g0")));
    EXPECT_TRUE(matches(g[1], fx.at(name + "/g1")));
  }
}

TEST(RegressionLosses, HandComputedValues) {
  const Tensor x = Tensor::from_vector(std::vector<double>{0.0, 1.0, -3.0}, {3});
  const Tensor t = Tensor::zeros({3}, DType::F64);
  EXPECT_NEAR(mse_loss(x, t).item(), 10.0 / 3, 1e-12);
  // beta = 2: 0.5 d^2 / 2 below 2, |d| - 1 above: 0, 0.25, 2.
  EXPECT_EQ(smooth_l1_loss(x, t, Reduction::None, 2.0).to_vector<double>(), (std::vector<double>{0, 0.25, 2}));
  EXPECT_NEAR(smooth_l1_loss(x, t, Reduction::Sum, 0.0).item(), 4.0, 1e-12);  // L1
  // BCE with logit 0 is log 2 whatever the target.
  EXPECT_NEAR(binary_cross_entropy_with_logits(Tensor::zeros({2}, DType::F64), Tensor::from_vector(std::vector<double>{0, 1}, {2})).item(),
              std::log(2.0), 1e-12);
}

TEST(RegressionLosses, BceIsStableForHugeLogits) {
  Tensor x = Tensor::from_vector(std::vector<float>{1000.f, -1000.f, 1000.f, -1000.f}, {4}).requires_grad_();
  const Tensor t = Tensor::from_vector(std::vector<float>{1.f, 0.f, 0.f, 1.f}, {4});
  const Tensor pw = Tensor::from_vector(std::vector<float>{2.f}, {1});
  const Tensor y = binary_cross_entropy_with_logits(x, t, Tensor(), Reduction::None, pw);
  // Right answers cost 0; wrong ones cost |x| (times pos_weight for a missed positive).
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0.f, 0.f, 1000.f, 2000.f}));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0.f, 0.f, 1.f, -2.f}));
}

TEST(RegressionLosses, Gradients) {
  auto in = [] { return std::vector<Tensor>{random_input({3, 4}, 55, 2.0), random_input({3, 4}, 56, 2.0)}; };
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& v) { return mse_loss(v[0], v[1], r); }, in()));
    for (double beta : {0.0, 0.7})
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& v) { return smooth_l1_loss(v[0], v[1], r, beta); }, in()));
  }
  // BCE: gradients in logits, (soft) target, weight and pos_weight.
  Tensor target = random_input({3, 4}, 57);
  {
    NoGradGuard ng;
    target = sigmoid(target).detach().requires_grad_();
  }
  Tensor w = random_input({3, 1}, 58), pw = random_input({4}, 59);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) {
    return binary_cross_entropy_with_logits(v[0], v[1], v[2], Reduction::Mean, v[3]);
  }, {random_input({3, 4}, 60, 3.0), target, w, pw}));
}

TEST(RegressionLosses, Errors) {
  const Tensor a = Tensor::zeros({2, 3});
  expect_error([&] { mse_loss(a, Tensor::zeros({3, 2})); }, {"mse_loss", "same shape"});
  expect_error([&] { mse_loss(a, Tensor::zeros({2, 3}, DType::F64)); }, {"mse_loss", "dtype"});
  expect_error([&] { smooth_l1_loss(a, a, Reduction::Mean, -1.0); }, {"smooth_l1_loss", "beta"});
  expect_error([&] { smooth_l1_loss(a, Tensor::zeros({2})); }, {"smooth_l1_loss", "same shape"});
  expect_error([&] { binary_cross_entropy_with_logits(a, Tensor::zeros({2, 1})); },
               {"binary_cross_entropy_with_logits", "same shape"});
  expect_error([&] { binary_cross_entropy_with_logits(a, a, Tensor::ones({2})); },
               {"binary_cross_entropy_with_logits", "weight"});
  expect_error([&] { binary_cross_entropy_with_logits(a, a, Tensor(), Reduction::Mean, Tensor::ones({4})); },
               {"binary_cross_entropy_with_logits", "pos_weight"});
}

// ============================================================================ dropout

TEST(Dropout, ReproducibleFromASeedInElementOrder) {
  const Tensor x = Tensor::ones({4, 50});
  Generator g1(7), g2(7), g3(8);
  const auto a = dropout(x, 0.4, true, &g1).to_vector<float>();
  const auto b = dropout(x, 0.4, true, &g2).to_vector<float>();
  const auto c = dropout(x, 0.4, true, &g3).to_vector<float>();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The mask is one draw per element in row-major order: element i is dropped iff u_i < p.
  Generator ref(7);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i] == 0.f, ref.next_double() < 0.4) << i;
  // The default generator is used when none is given.
  manual_seed(99);
  const auto d = dropout(x, 0.4, true).to_vector<float>();
  manual_seed(99);
  EXPECT_EQ(dropout(x, 0.4, true).to_vector<float>(), d);
}

TEST(Dropout, KeptFractionAndScaling) {
  // n = 200000 Bernoulli(1 - p) draws: the kept count has standard deviation
  // sqrt(n p (1 - p)) ~ 205, so |kept / n - (1 - p)| < 6 sd / n = 0.0062 fails with odds < 1e-8.
  const int64_t n = 200000;
  Generator g(11);
  const Tensor x = Tensor::from_vector(std::vector<double>(n, 3.0), {n});
  for (double p : {0.3, 0.75}) {
    const auto y = dropout(x, p, true, &g).to_vector<double>();
    int64_t kept = 0;
    for (double v : y) {
      if (v != 0.0) {
        ++kept;
        ASSERT_NEAR(v, 3.0 / (1.0 - p), 1e-12);  // survivors are scaled by 1 / (1 - p)
      }
    }
    const double sd = std::sqrt(n * p * (1 - p));
    EXPECT_LT(std::abs(static_cast<double>(kept) - n * (1 - p)), 6 * sd) << "p = " << p;
  }
}

TEST(Dropout, GradientUsesTheSameMask) {
  Generator g(12);
  Tensor x = random_input({6, 7}, 61);
  const Tensor y = dropout(x, 0.5, true, &g);
  sum(y).backward();
  // d/dx (mask * x) = mask: 2 where kept, 0 where dropped.
  const auto yv = y.to_vector<double>(), xv = x.detach().to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(gv[i], yv[i] == 0.0 ? 0.0 : 2.0) << i;
  // Finite differences with the generator re-seeded for every evaluation (the same mask).
  Generator fixed(13);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) {
    fixed.seed_(13);
    return dropout(in[0], 0.3, true, &fixed);
  }, {random_input({3, 5}, 62)}));
}

TEST(Dropout, EdgeCasesAndErrors) {
  Tensor x = random_input({3, 4}, 63);
  Generator g(14);
  const auto before = g.state().s;
  EXPECT_TRUE(all_close(dropout(x, 0.5, false, &g), x, 0));  // evaluation: identity
  EXPECT_TRUE(all_close(dropout(x, 0.0, true, &g), x, 0));
  EXPECT_EQ(g.state().s, before);  // and no draws
  const Tensor z = dropout(x, 1.0, true, &g);
  EXPECT_TRUE(all_close(z, Tensor::zeros({3, 4}, DType::F64), 0));
  sum(z).backward();
  EXPECT_TRUE(all_close(x.grad(), Tensor::zeros({3, 4}, DType::F64), 0));
  expect_error([&] { dropout(x, -0.1, true); }, {"dropout", "[0, 1]"});
  expect_error([&] { dropout(x, 1.5, true); }, {"dropout", "[0, 1]"});
  expect_error([&] { dropout(x, NAN, true); }, {"dropout", "[0, 1]"});
  expect_error([&] { dropout(i64({1}, {1}), 0.5, true); }, {"dropout", "floating"});
}

// batch_norm: training (batch statistics, running-stat updates) and eval / frozen mode against
// hand-computed values, PyTorch fixtures (tests/fixtures/nn_batchnorm.json), finite-difference
// gradients and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::expect_error;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;
using orbit::testing::scaled_error;

namespace {
Tensor values(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }
}  // namespace

TEST(BatchNorm, TrainingNormalizesAndUpdatesRunningStats) {
  Tensor x = values({1, 2, 3, 4}, {4, 1});
  Tensor rm = Tensor::zeros({1}, DType::F64), rv = Tensor::ones({1}, DType::F64);
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1, 0.0);
  // mean 2.5, biased variance 1.25 normalizes; the unbiased 5/3 goes into running_var.
  const double s = 1 / std::sqrt(1.25);
  EXPECT_TRUE(all_close(y, values({-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s}, {4, 1}), 1e-14));
  EXPECT_NEAR(rm.item(), 0.25, 1e-15);
  EXPECT_NEAR(rv.item(), 0.9 + 0.1 * 5.0 / 3.0, 1e-15);
  EXPECT_FALSE(rm.requires_grad());
}

TEST(BatchNorm, EvalUsesRunningStatsAndLeavesThemAlone) {
  Tensor x = values({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor rm = values({1, -1}, {2}), rv = values({4, 0.25}, {2});
  Tensor w = values({2, 3}, {2}), b = values({0.5, -0.5}, {2});
  Tensor y = batch_norm(x, rm, rv, w, b, false, 0.1, 0.0);
  // channel 0: (x - 1) / 2 * 2 + 0.5; channel 1: (x + 1) / 0.5 * 3 - 0.5
  EXPECT_TRUE(all_close(y, values({0.5, 17.5, 2.5, 29.5, 4.5, 41.5}, {3, 2}), 1e-14));
  EXPECT_TRUE(all_close(rm, values({1, -1}, {2}), 0));
  EXPECT_TRUE(all_close(rv, values({4, 0.25}, {2}), 0));
}

TEST(BatchNorm, GradCheckTraining) {
  Tensor x = random_input({3, 2, 3, 2}, 31, 2.0);
  Tensor w = random_input({2}, 32), b = random_input({2}, 33);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& t) { return batch_norm(t[0], Tensor(), Tensor(), t[1], t[2], true); },
      {x, w, b}));
  // Without affine parameters, on a [N, C] input; running stats are updated on every call.
  Tensor x2 = random_input({5, 3}, 34);
  Tensor rm = Tensor::zeros({3}, DType::F64), rv = Tensor::ones({3}, DType::F64);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& t) { return batch_norm(t[0], rm, rv, Tensor(), Tensor(), true); },
      {x2}));
}

TEST(BatchNorm, GradCheckEval) {
  Tensor x = random_input({2, 3, 4}, 35);
  Tensor w = random_input({3}, 36), b = random_input({3}, 37);
  Tensor rm = values({0.1, -0.2, 0.3}, {3}), rv = values({0.5, 1.5, 2.0}, {3});
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& t) { return batch_norm(t[0], rm, rv, t[1], t[2], false); },
      {x, w, b}));
}

// Frozen weights (requires_grad false) get no gradient, the input still does.
TEST(BatchNorm, FrozenAffineParameters) {
  Tensor x = random_input({4, 2, 3}, 38);
  Tensor w = values({1.5, 0.5}, {2}), b = values({0.0, 1.0}, {2});
  Tensor rm = values({0.0, 0.5}, {2}), rv = values({1.0, 4.0}, {2});
  Tensor y = batch_norm(x, rm, rv, w, b, false);
  Tensor gy = Tensor::ones(y.shape(), DType::F64);
  auto g = grad({y}, {x}, {gy});
  // dy/dx = w / sqrt(rv + eps) per channel.
  Tensor expect = Tensor::empty({4, 2, 3}, DType::F64);
  expect.narrow(1, 0, 1).fill_(1.5 / std::sqrt(1.0 + 1e-5));
  expect.narrow(1, 1, 1).fill_(0.5 / std::sqrt(4.0 + 1e-5));
  EXPECT_TRUE(all_close(g[0], expect, 1e-12));
  EXPECT_FALSE(w.grad().defined());
}

// An eval-mode forward followed by a training-mode update of the same buffers must not corrupt
// the first forward's backward (the op keeps its own copy of the statistics).
TEST(BatchNorm, BackwardAfterRunningStatsChanged) {
  Tensor x = random_input({3, 2}, 39);
  Tensor rm = values({0.0, 0.0}, {2}), rv = values({1.0, 1.0}, {2});
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), false);
  batch_norm(x.detach(), rm, rv, Tensor(), Tensor(), true);
  y.sum().backward();
  EXPECT_TRUE(all_close(x.grad(), Tensor::full({3, 2}, 1 / std::sqrt(1 + 1e-5), DType::F64), 1e-12));
}

TEST(BatchNorm, MatchesPyTorch) {
  const auto fx = orbit::testing::load_fixture("nn_batchnorm");
  const auto cases = orbit::testing::fixture_cases(fx);
  ASSERT_GE(cases.size(), 5u);
  for (const auto& c : cases) {
    const std::string n = c["name"];
    SCOPED_TRACE(n);
    const bool training = c["training"], affine = c["affine"], running = c["running"];
    Tensor x = fx.at(n + ".x").clone().requires_grad_();
    Tensor w = affine ? fx.at(n + ".w").clone().requires_grad_() : Tensor();
    Tensor b = affine ? fx.at(n + ".b").clone().requires_grad_() : Tensor();
    Tensor rm = running ? fx.at(n + ".running_mean").clone() : Tensor();
    Tensor rv = running ? fx.at(n + ".running_var").clone() : Tensor();
    Tensor y = batch_norm(x, rm, rv, w, b, training, c["momentum"].get<double>(), c["eps"].get<double>());
    // float32 statistics over at most 120 values per channel (accumulated in double here), so
    // both sides agree to a few float32 ulps of the scale; 1e-4 is the project-wide bound.
    EXPECT_LE(scaled_error(y, fx.at(n + ".y")), 1e-4);
    if (running) {
      EXPECT_LE(scaled_error(rm, fx.at(n + ".running_mean_new")), 1e-5);
      EXPECT_LE(scaled_error(rv, fx.at(n + ".running_var_new")), 1e-5);
    }
    std::vector<Tensor> inputs = {x};
    if (affine) inputs.insert(inputs.end(), {w, b});
    auto g = grad({y}, inputs, {fx.at(n + ".gy")});
    EXPECT_LE(scaled_error(g[0], fx.at(n + ".gx")), 1e-4) << "gx";
    if (affine) {
      EXPECT_LE(scaled_error(g[1], fx.at(n + ".gw")), 1e-4) << "gw";
      EXPECT_LE(scaled_error(g[2], fx.at(n + ".gb")), 1e-4) << "gb";
    }
  }
}

TEST(BatchNorm, Errors) {
  Tensor x = Tensor::zeros({4, 3, 2});
  Tensor c3 = Tensor::zeros({3}), c2 = Tensor::zeros({2});
  expect_error([&] { batch_norm(Tensor::zeros({3}), c3, c3, Tensor(), Tensor(), true); }, {"batch_norm", "at least 2 dims"});
  expect_error([&] { batch_norm(x, c2, c3, Tensor(), Tensor(), true); }, {"batch_norm", "running_mean must be [3]"});
  expect_error([&] { batch_norm(x, c3, c2, Tensor(), Tensor(), false); }, {"batch_norm", "running_var must be [3]"});
  expect_error([&] { batch_norm(x, c3, c3, c2, Tensor(), true); }, {"batch_norm", "weight must be [3]"});
  expect_error([&] { batch_norm(x, c3, c3, c3, Tensor::zeros({3, 1}), true); }, {"batch_norm", "bias must be [3]"});
  expect_error([&] { batch_norm(Tensor::zeros({1, 3}), c3, c3, Tensor(), Tensor(), true); },
               {"batch_norm", "more than 1 value per channel"});
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false); }, {"batch_norm", "required"});
  expect_error([&] { batch_norm(x, c3, Tensor(), Tensor(), Tensor(), true); }, {"batch_norm", "both"});
  expect_error([&] { batch_norm(x, c3.to(DType::F64), c3, Tensor(), Tensor(), true); }, {"batch_norm", "dtype"});
  // A single value per channel is fine in eval mode.
  EXPECT_NO_THROW(batch_norm(Tensor::zeros({1, 3}), c3, Tensor::ones({3}), Tensor(), Tensor(), false));
}

// Pooling: max_pool2d, avg_pool2d and adaptive_avg_pool2d against hand-computed values, PyTorch
// fixtures (tests/fixtures/nn_pool.json), finite-difference gradients and argument errors.
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

Tensor arange4x4() { return Tensor::arange(16, DType::F64).reshape({1, 1, 4, 4}); }

Tensor values(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }

Pool2dParams pool_params(const nlohmann::json& c) {
  Pool2dParams p;
  p.kernel_h = c["kernel"][0], p.kernel_w = c["kernel"][1];
  p.stride_h = c["stride"][0], p.stride_w = c["stride"][1];
  p.pad_h = c["padding"][0], p.pad_w = c["padding"][1];
  if (c.contains("dilation")) p.dilation_h = c["dilation"][0], p.dilation_w = c["dilation"][1];
  p.ceil_mode = c["ceil_mode"];
  if (c.contains("count_include_pad")) p.count_include_pad = c["count_include_pad"];
  return p;
}


}  // namespace

// ====================================================================== hand-computed

TEST(Pool, MaxPoolValuesAndGradient) {
  Tensor x = arange4x4().requires_grad_();
  Tensor y = max_pool2d(x, 2);
  EXPECT_TRUE(all_close(y, values({5, 7, 13, 15}, {1, 1, 2, 2}), 0));
  y.sum().backward();
  std::vector<double> g(16, 0.0);
  g[5] = g[7] = g[13] = g[15] = 1;
  EXPECT_TRUE(all_close(x.grad(), values(g, {1, 1, 4, 4}), 0));
}

TEST(Pool, MaxPoolTiesGoToFirstOccurrence) {
  // All equal: each window's gradient goes to its first element in row-major order (PyTorch CPU).
  Tensor x = Tensor::ones({1, 1, 3, 3}, DType::F64).requires_grad_();
  max_pool2d(x, 2, 1).sum().backward();
  EXPECT_TRUE(all_close(x.grad(), values({1, 1, 0, 1, 1, 0, 0, 0, 0}, {1, 1, 3, 3}), 0));
}

TEST(Pool, MaxPoolPropagatesNaN) {
  std::vector<double> v(16, 1.0);
  v[5] = std::nan("");
  Tensor x = values(v, {1, 1, 4, 4}).requires_grad_();
  Tensor y = max_pool2d(x, 2);
  const auto out = y.to_vector<double>();
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_EQ(out[1], 1.0);
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>()[5], 1.0);  // the NaN's position takes the gradient
}

TEST(Pool, MaxPoolCeilModeAndPadding) {
  // 5 wide, kernel 2, stride 2: floor gives 2 outputs; ceil gives a third window [4, 6) cut at 5.
  Tensor x = Tensor::arange(25, DType::F64).reshape({1, 1, 5, 5});
  EXPECT_EQ(max_pool2d(x, 2, 2, 0, 1, false).shape(), (Shape{1, 1, 2, 2}));
  Tensor y = max_pool2d(x, 2, 2, 0, 1, true);
  EXPECT_TRUE(all_close(y, values({6, 8, 9, 16, 18, 19, 21, 23, 24}, {1, 1, 3, 3}), 0));
  // ceil mode drops a last window that would start in the right padding: 5 wide, kernel 2,
  // stride 2, padding 1 -> windows at -1, 1, 3; a fourth at 5 would lie in the padding only.
  EXPECT_EQ(max_pool2d(x, 2, 2, 1, 1, true).shape(), (Shape{1, 1, 3, 3}));
  // Padding is never the maximum, even when all inputs are negative.
  Tensor neg = affine(arange4x4(), -1.0, -1.0);
  EXPECT_TRUE(all_close(max_pool2d(neg, 3, 1, 1).narrow(2, 0, 1).narrow(3, 0, 1),
                        values({-1}, {1, 1, 1, 1}), 0));
}

TEST(Pool, AvgPoolDivisors) {
  Tensor x = arange4x4();
  EXPECT_TRUE(all_close(avg_pool2d(x, 2), values({2.5, 4.5, 10.5, 12.5}, {1, 1, 2, 2}), 1e-15));
  // 3x3 windows, stride 2, padding 1: the top-left window holds 0, 1, 4, 5.
  const double tl = (0 + 1 + 4 + 5);
  EXPECT_NEAR(avg_pool2d(x, 3, 2, 1, false, true).data<double>()[0], tl / 9, 1e-15);
  EXPECT_NEAR(avg_pool2d(x, 3, 2, 1, false, false).data<double>()[0], tl / 4, 1e-15);
  // ceil mode: 5 wide, kernel 2, stride 2 -> the last window covers only column 4 (and the
  // padding-free cut at 5), so it divides by 1 column even with count_include_pad.
  Tensor x5 = Tensor::ones({1, 1, 5, 5}, DType::F64);
  EXPECT_TRUE(all_close(avg_pool2d(x5, 2, 2, 0, true, true), Tensor::ones({1, 1, 3, 3}, DType::F64), 1e-15));
}

TEST(Pool, AdaptiveAvgWindows) {
  // 5 -> 3: windows [0, 2), [1, 4), [3, 5) along each dim.
  Tensor x = Tensor::arange(5, DType::F64).reshape({1, 1, 1, 5});
  EXPECT_TRUE(all_close(adaptive_avg_pool2d(x, 1, 3), values({0.5, 2, 3.5}, {1, 1, 1, 3}), 1e-15));
  // Global pooling.
  EXPECT_TRUE(all_close(adaptive_avg_pool2d(arange4x4(), 1, 1), values({7.5}, {1, 1, 1, 1}), 1e-15));
}

TEST(Pool, UnbatchedInput) {
  Tensor x = arange4x4().reshape({1, 4, 4});
  EXPECT_EQ(max_pool2d(x, 2).shape(), (Shape{1, 2, 2}));
  EXPECT_EQ(avg_pool2d(x, 2).shape(), (Shape{1, 2, 2}));
  EXPECT_EQ(adaptive_avg_pool2d(x, 3, 1).shape(), (Shape{1, 3, 1}));
}

// ====================================================================== gradients

TEST(Pool, GradCheck) {
  // Random inputs have no ties, so max pooling is differentiable at them.
  Pool2dParams mp;
  mp.kernel_h = 3, mp.kernel_w = 2, mp.stride_h = 2, mp.stride_w = 1, mp.pad_h = 1, mp.pad_w = 1;
  mp.dilation_h = 2, mp.ceil_mode = true;
  Tensor x = random_input({2, 2, 7, 6}, 21);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& t) { return max_pool2d(t[0], mp); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return max_pool2d(t[0], 3, 2, 1); }, {x}));
  for (bool cip : {true, false}) {
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& t) { return avg_pool2d(t[0], 3, 2, 1, true, cip); }, {x}));
  }
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], 3, 4); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], 9, 5); }, {x}));
}

// ====================================================================== PyTorch

TEST(Pool, MatchesPyTorch) {
  const auto fx = orbit::testing::load_fixture("nn_pool");
  const auto cases = orbit::testing::fixture_cases(fx);
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    const std::string n = c["name"], kind = c["kind"];
    SCOPED_TRACE(n);
    Tensor x = fx.at(n + ".x").clone().requires_grad_();
    Tensor y;
    if (kind == "max") {
      y = max_pool2d(x, pool_params(c));
    } else if (kind == "avg") {
      y = avg_pool2d(x, pool_params(c));
    } else {
      y = adaptive_avg_pool2d(x, c["kernel"][0], c["kernel"][1]);
    }
    // Maxima are copied exactly; averages of at most 16 float32 values round within 1e-6 of the
    // scale, well inside 1e-4.
    EXPECT_LE(scaled_error(y, fx.at(n + ".y")), 1e-4);
    auto g = grad({y}, {x}, {fx.at(n + ".gy")});
    EXPECT_LE(scaled_error(g[0], fx.at(n + ".gx")), 1e-4);
  }
}

// The kernel's indices are PyTorch's (flat offsets h * W + w in the input plane).
TEST(Pool, MaxPoolIndicesMatchPyTorch) {
  const auto fx = orbit::testing::load_fixture("nn_pool");
  for (const auto& c : orbit::testing::fixture_cases(fx)) {
    if (c["kind"] != "max") continue;
    const std::string n = c["name"];
    SCOPED_TRACE(n);
    const Tensor x = fx.at(n + ".x");
    const Tensor& ref = fx.at(n + ".indices");
    Tensor out = Tensor::empty(ref.shape());
    Tensor idx = Tensor::empty(ref.shape(), DType::I64);
    backend_of(x).max_pool2d(x, pool_params(c), out, idx);
    EXPECT_EQ(idx.to_vector<int64_t>(), ref.to_vector<int64_t>());
  }
}

// ====================================================================== errors

TEST(Pool, Errors) {
  Tensor x = Tensor::zeros({1, 2, 6, 6});
  expect_error([&] { max_pool2d(Tensor::zeros({6, 6}), 2); }, {"max_pool2d", "[6, 6]"});
  expect_error([&] { max_pool2d(x, 0); }, {"max_pool2d", "kernel"});
  expect_error([&] { max_pool2d(x, 2, -1); }, {"max_pool2d", "stride"});
  expect_error([&] { max_pool2d(x, 3, 1, 2); }, {"max_pool2d", "half the kernel"});
  expect_error([&] { max_pool2d(x, 2, 2, -1); }, {"max_pool2d", "non-negative"});
  expect_error([&] { max_pool2d(x, 3, 1, 0, 0); }, {"max_pool2d", "dilation"});
  expect_error([&] { max_pool2d(x, 7); }, {"max_pool2d", "too small"});
  expect_error([&] { max_pool2d(x, 3, 1, 0, 3); }, {"max_pool2d", "too small"});
  expect_error([&] { avg_pool2d(Tensor::zeros({1, 1, 2, 2, 2}), 2); }, {"avg_pool2d", "4-D"});
  expect_error([&] { avg_pool2d(x, 2, 1, 2); }, {"avg_pool2d", "half the kernel"});
  expect_error([&] { avg_pool2d(x, 8); }, {"avg_pool2d", "too small"});
  Pool2dParams p;
  p.kernel_h = p.kernel_w = 2, p.stride_h = p.stride_w = 2, p.dilation_h = 2;
  expect_error([&] { avg_pool2d(x, p); }, {"avg_pool2d", "dilation"});
  expect_error([&] { adaptive_avg_pool2d(x, 0, 2); }, {"adaptive_avg_pool2d", "positive"});
  expect_error([&] { adaptive_avg_pool2d(Tensor::zeros({2, 6}), 2, 2); }, {"adaptive_avg_pool2d", "[2, 6]"});
  expect_error([&] { max_pool2d(Tensor::zeros({1, 1, 4, 4}, DType::I64), 2); }, {"max_pool2d", "floating"});
}

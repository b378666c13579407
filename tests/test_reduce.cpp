// Reductions and softmax: forward against loops, gradients by finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;

TEST(Reduce, SumAndMeanForward) {
  Tensor x = Tensor::arange(24).reshape({2, 3, 4});
  EXPECT_EQ(sum(x).item(), 276.0);
  EXPECT_EQ(sum(x, {1}).to_vector<float>(), (std::vector<float>{12, 15, 18, 21, 48, 51, 54, 57}));
  EXPECT_EQ(sum(x, {0, 2}, true).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(sum(x, {0, 2}).to_vector<float>(), (std::vector<float>{60, 92, 124}));
  EXPECT_EQ(sum(x, {-1}).shape(), (Shape{2, 3}));
  EXPECT_EQ(mean(x, {2}).to_vector<float>()[0], 1.5f);
  EXPECT_EQ(sum(x.transpose(0, 2), {0}).to_vector<float>(), sum(x, {2}).t().contiguous().to_vector<float>());
  EXPECT_EQ(sum(Tensor::zeros({0, 3}), {0}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
}

TEST(Reduce, MaxMinArgmax) {
  Tensor x = Tensor::from_vector(std::vector<float>{3, 1, 4, 1, 5, 9, 2, 6}, {2, 4});
  auto [v, i] = max(x, 1);
  EXPECT_EQ(v.to_vector<float>(), (std::vector<float>{4, 9}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{2, 1}));
  auto [mv, mi] = min(x, 0, true);
  EXPECT_EQ(mv.shape(), (Shape{1, 4}));
  EXPECT_EQ(mv.to_vector<float>(), (std::vector<float>{3, 1, 2, 1}));
  EXPECT_EQ(mi.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 0}));
  EXPECT_EQ(argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 0, 1}));
  EXPECT_EQ(argmin(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(amax(x, {}).item(), 9.0);
  EXPECT_EQ(amin(x, {1}).to_vector<float>(), (std::vector<float>{1, 2}));
  // Ties: first index.
  EXPECT_EQ(argmax(Tensor::from_vector(std::vector<float>{2, 7, 7}, {3}), 0).item(), 1.0);
}

TEST(Reduce, Variance) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  EXPECT_DOUBLE_EQ(var(x, {}).item(), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(var(x, {}, false).item(), 1.25);
  EXPECT_EQ(var(x, {1}).to_vector<double>(), (std::vector<double>{0.5, 0.5}));
}

TEST(Reduce, Gradients) {
  auto x = random_input({3, 4, 5}, 31);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sum(in[0], {1}); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mean(in[0], {0, 2}, true); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return amax(in[0], {2}); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return amin(in[0], {0, 1}); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return max(in[0], 1).first; }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return min(in[0], -1, true).first; }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return var(in[0], {1, 2}); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return sum_to(in[0], {4, 1}); }, {x}));
}

TEST(Reduce, AmaxTiesShareGradient) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 5, 5, 2}, {4}).requires_grad_();
  amax(x, {}).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0.5, 0.5, 0}));
}

TEST(Softmax, ForwardMatchesFormula) {
  Generator g(5);
  Tensor x = mul(Tensor::randn({3, 4, 5}, &g, DType::F64), 3.0);
  for (int64_t d : {0, 1, 2}) {
    Tensor e = exp(x);
    Tensor ref = div(e, sum(e, {d}, true));
    EXPECT_TRUE(all_close(softmax(x, d), ref, 1e-12));
    EXPECT_TRUE(all_close(log_softmax(x, d), log(ref), 1e-12, 1e-12));
  }
  // Large logits do not overflow.
  Tensor big = Tensor::from_vector(std::vector<float>{1000, 1000, -1000}, {3});
  EXPECT_TRUE(all_close(softmax(big, 0), Tensor::from_vector(std::vector<float>{0.5, 0.5, 0}, {3}), 1e-6, 1e-7));
  EXPECT_NEAR(log_softmax(big, 0).to_vector<float>()[0], -std::log(2.0), 1e-6);
}

TEST(Softmax, Gradients) {
  auto x = random_input({2, 3, 4}, 32);
  for (int64_t d : {0, 1, -1}) {
    EXPECT_TRUE(gradcheck([d](const std::vector<Tensor>& in) { return softmax(in[0], d); }, {x}));
    EXPECT_TRUE(gradcheck([d](const std::vector<Tensor>& in) { return log_softmax(in[0], d); }, {x}));
  }
}

TEST(Reduce, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_THROW(sum(x, {2}), Error);
  EXPECT_THROW(sum(x, {1, -1}), Error);
  EXPECT_THROW(max(x, 5), Error);
  EXPECT_THROW(mean(Tensor::zeros({0})), Error);
  EXPECT_THROW(amax(Tensor::zeros({0}), {}), Error);
  EXPECT_THROW(softmax(x, 3), Error);
  EXPECT_THROW(var(Tensor::zeros({1}), {}), Error);
  EXPECT_THROW(sum_to(x, {4}), Error);
  EXPECT_THROW(sum_to(x, {1, 2, 3}), Error);
}

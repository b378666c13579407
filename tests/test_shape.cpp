// cat, stack, split, chunk and pad.
#include <gtest/gtest.h>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;

TEST(Shape, CatAndStack) {
  Tensor a = Tensor::arange(6).reshape({2, 3}), b = Tensor::arange(4).reshape({2, 2});
  Tensor c = cat({a, b}, 1);
  EXPECT_EQ(c.shape(), (Shape{2, 5}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 1, 2, 0, 1, 3, 4, 5, 2, 3}));
  Tensor s = stack({a, a}, 1);
  EXPECT_EQ(s.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(s.select(1, 1).to_vector<float>(), a.to_vector<float>());
  EXPECT_THROW(cat({a, b}, 0), Error);
  EXPECT_THROW(cat({}, 0), Error);
  EXPECT_THROW(stack({a, b}, 0), Error);
}

TEST(Shape, SplitAndChunk) {
  Tensor x = Tensor::arange(10);
  auto parts = split(x, 4, 0);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].to_vector<float>(), (std::vector<float>{8, 9}));
  EXPECT_EQ(chunk(x, 3, 0).size(), 3u);
  EXPECT_THROW(split(x, 0, 0), Error);
}

TEST(Shape, PadModes) {
  Tensor x = Tensor::arange(3).reshape({1, 3});
  EXPECT_EQ(pad(x, {2, 1}, PadMode::Constant, 9).to_vector<float>(), (std::vector<float>{9, 9, 0, 1, 2, 9}));
  EXPECT_EQ(pad(x, {2, 1}, PadMode::Circular).to_vector<float>(), (std::vector<float>{1, 2, 0, 1, 2, 0}));
  EXPECT_EQ(pad(x, {2, 1}, PadMode::Replicate).to_vector<float>(), (std::vector<float>{0, 0, 0, 1, 2, 2}));
  EXPECT_EQ(pad(x, {2, 1}, PadMode::Reflect).to_vector<float>(), (std::vector<float>{2, 1, 0, 1, 2, 1}));
  EXPECT_THROW(pad(x, {3, 0}, PadMode::Reflect), Error);
  EXPECT_EQ(pad(x, {0, 0, 1, 0}).shape(), (Shape{2, 3}));
  EXPECT_THROW(pad(x, {1}), Error);
  EXPECT_THROW(pad(x, {-1, 0}), Error);
  EXPECT_THROW(pad(x, {4, 0}, PadMode::Circular), Error);
}

TEST(Shape, Gradients) {
  auto a = random_input({2, 3}, 1), b = random_input({2, 2}, 2);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, 1); }, {a, b}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return stack({in[0], in[0]}, 0); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return split(in[0], 2, 1)[1]; }, {a}));
  auto x = random_input({1, 2, 3, 4}, 3);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return pad(in[0], {1, 2, 2, 0}, PadMode::Constant, 0.5); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return pad(in[0], {1, 2, 2, 1}, PadMode::Circular); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return pad(in[0], {2, 1, 1, 2}, PadMode::Replicate); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return pad(in[0], {2, 1, 1, 2}, PadMode::Reflect); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return chunk(in[0], 2, -1)[1]; }, {x}));
}

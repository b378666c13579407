// Indexing ops: gather, scatter_add, index_select, one_hot (forward against hand-computed values and
// brute-force loops, gradients by finite differences, adjointness, and argument errors).
#include <gtest/gtest.h>

#include <string>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::expect_error;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;

namespace {

Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector(v, s); }
Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }

// Random int64 indices in [0, n) of the given shape.
Tensor random_index(const Shape& shape, int64_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(shape_numel(shape));
  for (auto& e : v) e = g.randint(n);
  return Tensor::from_vector(v, shape);
}

// Row-major multi-index of flat position e in shape s.
std::vector<int64_t> unravel(int64_t e, const Shape& s) {
  std::vector<int64_t> c(s.size());
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    c[d] = e % s[d];
    e /= s[d];
  }
  return c;
}
int64_t ravel(const std::vector<int64_t>& c, const Shape& s) {
  int64_t e = 0;
  for (size_t d = 0; d < s.size(); ++d) e = e * s[d] + c[d];
  return e;
}

}  // namespace

// ---------------------------------------------------------------------------- gather

TEST(Gather, HandComputedDim0AndDim1) {
  const Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  // dim 1: out[i][j] = x[i][index[i][j]]
  EXPECT_TRUE(all_close(gather(x, 1, i64({2, 0, 1, 1}, {2, 2})), f64({3, 1, 5, 5}, {2, 2}), 0));
  // dim 0 with an index smaller than x in dim 1: out[i][j] = x[index[i][j]][j]
  EXPECT_TRUE(all_close(gather(x, 0, i64({1, 0, 0, 1, 1, 1}, {3, 2})), f64({4, 2, 1, 5, 4, 5}, {3, 2}), 0));
  // negative dim
  EXPECT_TRUE(all_close(gather(x, -1, i64({2, 0, 1, 1}, {2, 2})), f64({3, 1, 5, 5}, {2, 2}), 0));
}

TEST(Gather, MatchesBruteForceInEveryDim) {
  const Tensor x = random_input({3, 4, 5}, 1).detach();
  for (int64_t dim = 0; dim < 3; ++dim) {
    // Smaller than x except along dim (where any size is allowed).
    Shape is = {2, 3, 4};
    is[dim] = 6;
    const Tensor idx = random_index(is, x.shape()[dim], 10 + dim);
    const Tensor out = gather(x, dim, idx);
    const auto xv = x.to_vector<double>(), ov = out.to_vector<double>();
    const auto iv = idx.to_vector<int64_t>();
    for (int64_t e = 0; e < idx.numel(); ++e) {
      auto c = unravel(e, is);
      c[dim] = iv[e];
      ASSERT_EQ(ov[e], xv[ravel(c, x.shape())]) << "dim " << dim << " element " << e;
    }
  }
}

TEST(Gather, StridedInputAndInt64Values) {
  const Tensor x = random_input({4, 3}, 2).detach();
  const Tensor xt = x.t();  // non-contiguous [3, 4]
  const Tensor idx = i64({3, 0, 1, 2, 2, 2}, {3, 2});
  EXPECT_TRUE(all_close(gather(xt, 1, idx), gather(xt.contiguous(), 1, idx), 0));
  const Tensor xi = i64({10, 11, 12, 13}, {4});
  EXPECT_EQ(gather(xi, 0, i64({3, 3, 0}, {3})).to_vector<int64_t>(), (std::vector<int64_t>{13, 13, 10}));
}

TEST(Gather, Gradient) {
  // Repeated indices make the backward scatter accumulate.
  const Tensor idx = i64({0, 0, 2, 1, 1, 1, 3, 0}, {2, 4});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 1, idx); },
                        {random_input({2, 5}, 3)}));
  const Tensor idx0 = random_index({5, 2, 3}, 3, 4);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 0, idx0); },
                        {random_input({3, 2, 4}, 5)}));
}

TEST(Gather, LargeParallelMatchesBruteForce) {
  Generator g(6);
  const Tensor x = Tensor::randn({64, 700}, &g);
  const Tensor idx = random_index({64, 1500}, 700, 7);
  const auto ov = gather(x, 1, idx).to_vector<float>();
  const auto xv = x.to_vector<float>();
  const auto iv = idx.to_vector<int64_t>();
  for (int64_t r = 0; r < 64; ++r)
    for (int64_t j = 0; j < 1500; ++j) ASSERT_EQ(ov[r * 1500 + j], xv[r * 700 + iv[r * 1500 + j]]);
}

TEST(Gather, Errors) {
  const Tensor x = random_input({2, 3}, 8).detach();
  expect_error([&] { gather(x, 1, i64({0, 3}, {1, 2})); }, {"gather", "index 3", "[0, 3)"});
  expect_error([&] { gather(x, 0, i64({-1}, {1, 1})); }, {"gather", "index -1", "[0, 2)"});
  expect_error([&] { gather(x, 1, f64({0, 1}, {1, 2})); }, {"gather", "int64"});
  expect_error([&] { gather(x, 1, i64({0, 1}, {2})); }, {"gather", "same number of dims"});
  expect_error([&] { gather(x, 1, i64({0, 0, 0, 0}, {4, 1})); }, {"gather", "larger than the input"});
  expect_error([&] { gather(x, 2, i64({0}, {1, 1})); }, {"gather"});
}

// ---------------------------------------------------------------------------- scatter_add

TEST(ScatterAdd, HandComputedWithDuplicates) {
  const Tensor x = f64({1, 1, 1, 1, 1, 1}, {2, 3});
  const Tensor src = f64({10, 20, 30, 40}, {2, 2});
  // dim 1: out[i][index[i][j]] += src[i][j]; row 0 sends both values to column 2.
  const Tensor out = scatter_add(x, 1, i64({2, 2, 0, 1}, {2, 2}), src);
  EXPECT_TRUE(all_close(out, f64({1, 1, 31, 31, 41, 1}, {2, 3}), 0));
  EXPECT_TRUE(all_close(x, Tensor::ones({2, 3}, DType::F64), 0));  // x is not modified
}

TEST(ScatterAdd, MatchesBruteForceInEveryDimWithLargerSrc) {
  const Tensor x = random_input({3, 4, 5}, 11).detach();
  for (int64_t dim = 0; dim < 3; ++dim) {
    Shape is = {2, 3, 4};
    is[dim] = 6;
    Shape ss = is;
    ss[0] += 1;  // src may be larger than index: only its index-shaped block is used
    const Tensor src = random_input(ss, 20 + dim).detach();
    const Tensor idx = random_index(is, x.shape()[dim], 30 + dim);
    const auto ov = scatter_add(x, dim, idx, src).to_vector<double>();
    auto expect = x.to_vector<double>();
    const auto sv = src.to_vector<double>();
    const auto iv = idx.to_vector<int64_t>();
    for (int64_t e = 0; e < idx.numel(); ++e) {
      auto c = unravel(e, is);
      const double v = sv[ravel(c, ss)];
      c[dim] = iv[e];
      expect[ravel(c, x.shape())] += v;
    }
    for (size_t i = 0; i < expect.size(); ++i) ASSERT_NEAR(ov[i], expect[i], 1e-12) << "dim " << dim;
  }
}

TEST(ScatterAdd, GradientInXAndSrc) {
  const Tensor idx = i64({1, 1, 0, 3, 2, 2}, {3, 2});
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return scatter_add(in[0], 0, idx, in[1]); },
      {random_input({4, 2}, 12), random_input({4, 3}, 13)}));  // src larger than index
}

TEST(ScatterAdd, IsTheAdjointOfGather) {
  // <gather(x, d, i), y> == <x, scatter_add(0, d, i, y)> for every x, y.
  const Tensor x = random_input({4, 5, 3}, 14).detach();
  const Tensor idx = random_index({4, 7, 3}, 5, 15);
  const Tensor y = random_input({4, 7, 3}, 16).detach();
  const double lhs = sum(mul(gather(x, 1, idx), y)).item();
  const double rhs = sum(mul(x, scatter_add(Tensor::zeros(x.shape(), DType::F64), 1, idx, y))).item();
  EXPECT_NEAR(lhs, rhs, 1e-10 * std::max(1.0, std::abs(lhs)));
}

TEST(ScatterAdd, LargeParallelIsDeterministicAndExact) {
  // Integer-valued floats make every accumulation order exact, so the result can be compared
  // with a serial sum; a second run must match bit for bit.
  const int64_t R = 16, N = 50, L = 20000;
  const Tensor idx = random_index({R, L}, N, 17);
  std::vector<float> sv(R * L);
  for (int64_t i = 0; i < R * L; ++i) sv[i] = static_cast<float>(i % 7);
  const Tensor src = Tensor::from_vector(sv, {R, L});
  const Tensor x = Tensor::zeros({R, N});
  const auto a = scatter_add(x, 1, idx, src).to_vector<float>();
  const auto b = scatter_add(x, 1, idx, src).to_vector<float>();
  EXPECT_EQ(a, b);
  std::vector<float> expect(R * N, 0.0f);
  const auto iv = idx.to_vector<int64_t>();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < L; ++j) expect[r * N + iv[r * L + j]] += sv[r * L + j];
  EXPECT_EQ(a, expect);
}

TEST(ScatterAdd, Errors) {
  const Tensor x = random_input({2, 3}, 18).detach();
  const Tensor src = random_input({2, 3}, 19).detach();
  expect_error([&] { scatter_add(x, 1, i64({0, 5}, {1, 2}), src); }, {"scatter_add", "index 5", "[0, 3)"});
  expect_error([&] { scatter_add(x, 1, i64({0, 1, 2, 0}, {1, 4}), src); }, {"scatter_add", "larger than src"});
  expect_error([&] { scatter_add(x, 1, i64({0}, {1}), src); }, {"scatter_add", "same number of dims"});
  expect_error([&] { scatter_add(x, 1, i64({0, 1}, {1, 2}), src.to(DType::F32)); }, {"scatter_add", "dtype"});
  expect_error([&] { scatter_add(x, 1, f64({0, 1}, {1, 2}), src); }, {"scatter_add", "int64"});
}

// ---------------------------------------------------------------------------- index_select

TEST(IndexSelect, HandComputedWithRepeats) {
  const Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(all_close(index_select(x, 1, i64({2, 0, 2}, {3})), f64({3, 1, 3, 6, 4, 6}, {2, 3}), 0));
  EXPECT_TRUE(all_close(index_select(x, 0, i64({1, 1}, {2})), f64({4, 5, 6, 4, 5, 6}, {2, 3}), 0));
  EXPECT_EQ(index_select(x, 0, i64({}, {0})).shape(), (Shape{0, 3}));
  // A strided input.
  EXPECT_TRUE(all_close(index_select(x.t(), 0, i64({2, 0}, {2})), f64({3, 6, 1, 4}, {2, 2}), 0));
}

TEST(IndexSelect, GradientAccumulatesRepeatedRows) {
  Tensor x = random_input({3, 2}, 20);
  sum(index_select(x, 0, i64({2, 0, 2, 2}, {4}))).backward();
  EXPECT_TRUE(all_close(x.grad(), f64({1, 1, 0, 0, 3, 3}, {3, 2}), 0));
  const Tensor idx = i64({1, 3, 1, 0, 4}, {5});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], 1, idx); },
                        {random_input({2, 5, 3}, 21)}));
}

TEST(IndexSelect, LargeParallelBackwardMatchesSerialSum) {
  // The backward (index_add) splits (outer, inner) columns across threads, also inside a row;
  // integer-valued upstream gradients make the expected sums exact.
  for (int64_t dim : {0, 1}) {
    const Shape xs = {3, 50, 1500};
    const int64_t L = 100;
    const Tensor idx = random_index({L}, xs[dim], 23 + dim);
    Shape gs = xs;
    gs[dim] = L;
    std::vector<float> gv(shape_numel(gs));
    for (size_t i = 0; i < gv.size(); ++i) gv[i] = static_cast<float>(i % 5);
    Tensor x = Tensor::zeros(xs).requires_grad_();
    index_select(x, dim, idx).backward(Tensor::from_vector(gv, gs));
    const auto got = x.grad().to_vector<float>();
    std::vector<float> expect(shape_numel(xs), 0.0f);
    const auto iv = idx.to_vector<int64_t>();
    for (int64_t e = 0; e < shape_numel(gs); ++e) {
      auto c = unravel(e, gs);
      c[dim] = iv[c[dim]];
      expect[ravel(c, xs)] += gv[e];
    }
    EXPECT_EQ(got, expect) << "dim " << dim;
  }
}

TEST(IndexSelect, Errors) {
  const Tensor x = random_input({2, 3}, 22).detach();
  expect_error([&] { index_select(x, 1, i64({0, 3}, {2})); }, {"index_select", "index 3", "[0, 3)"});
  expect_error([&] { index_select(x, 0, i64({0, 1}, {1, 2})); }, {"index_select", "1-D"});
  expect_error([&] { index_select(x, 2, i64({0}, {1})); }, {"index_select"});
  expect_error([&] { index_select(x, 0, f64({0}, {1})); }, {"index_select", "int64"});
}

// ---------------------------------------------------------------------------- one_hot

TEST(OneHot, ValuesShapeAndDtype) {
  const Tensor oh = one_hot(i64({2, 0, 1, 2}, {2, 2}), 3);
  EXPECT_EQ(oh.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(oh.dtype(), DType::F32);
  EXPECT_EQ(oh.to_vector<float>(), (std::vector<float>{0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1}));
  EXPECT_EQ(one_hot(i64({1}, {1}), 2, DType::F64).dtype(), DType::F64);
}

TEST(OneHot, Errors) {
  expect_error([&] { one_hot(i64({0, 3}, {2}), 3); }, {"one_hot", "label 3", "[0, 3)"});
  expect_error([&] { one_hot(i64({-1}, {1}), 3); }, {"one_hot", "label -1"});
  expect_error([&] { one_hot(i64({0}, {1}), 0); }, {"one_hot", "num_classes"});
  expect_error([&] { one_hot(f64({0}, {1}), 2); }, {"one_hot", "int64"});
}

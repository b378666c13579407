// Elementwise ops: forward against scalar std:: formulas, gradients by finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;

namespace {

using Fn = std::function<Tensor(const Tensor&)>;
using Ref = std::function<double(double)>;

struct UnaryCase {
  const char* name;
  Fn op;
  Ref ref;
  double lo, hi;  // input range (kept inside the function's domain)
};

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, -3, 3},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 0.1, 3},
      {"log1p", [](const Tensor& x) { return log1p(x); }, [](double x) { return std::log1p(x); }, -0.5, 3},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.1, 3},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); }, 0.1, 3},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::abs(x); }, -3, 3},
      {"square", [](const Tensor& x) { return square(x); }, [](double x) { return x * x; }, -3, 3},
      {"reciprocal", [](const Tensor& x) { return reciprocal(x); }, [](double x) { return 1 / x; }, 0.2, 3},
      {"pow2.5", [](const Tensor& x) { return pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, 0.1, 3},
      {"affine", [](const Tensor& x) { return affine(x, -1.5, 0.25); }, [](double x) { return -1.5 * x + 0.25; }, -3, 3},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 1.0); }, [](double x) { return std::min(std::max(x, -0.5), 1.0); }, -3, 3},
      {"clamp_min", [](const Tensor& x) { return clamp_min(x, 0.3); }, [](double x) { return std::max(x, 0.3); }, -3, 3},
      {"clamp_max", [](const Tensor& x) { return clamp_max(x, 0.3); }, [](double x) { return std::min(x, 0.3); }, -3, 3},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }, -3, 3},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, sigmoid_ref, -6, 6},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -3, 3},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double x) { return x * sigmoid_ref(x); }, -6, 6},
      {"gelu", [](const Tensor& x) { return gelu(x); }, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, -4, 4},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, true); },
       [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }, -4, 4},
      {"softplus", [](const Tensor& x) { return softplus(x); }, [](double x) { return std::log1p(std::exp(x)); }, -10, 10},
  };
}

Tensor uniform_input(const Shape& s, double lo, double hi, uint64_t seed, DType dt) {
  Generator g(seed);
  return Tensor::uniform(s, lo, hi, &g, dt);
}

}  // namespace

class UnaryOps : public ::testing::TestWithParam<UnaryCase> {};

TEST_P(UnaryOps, ForwardMatchesScalarFormula) {
  const auto& c = GetParam();
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = uniform_input({3, 17}, c.lo, c.hi, 11, dt);
    Tensor y = c.op(x);
    EXPECT_EQ(y.shape(), x.shape());
    EXPECT_EQ(y.dtype(), dt);
    auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
    // float32: a few ulps of the result; float64: near machine precision.
    const double rtol = dt == DType::F32 ? 2e-6 : 1e-13;
    for (size_t i = 0; i < xv.size(); ++i)
      EXPECT_NEAR(yv[i], c.ref(xv[i]), rtol * std::max(1.0, std::abs(c.ref(xv[i])))) << c.name << " at " << xv[i];
  }
}

TEST_P(UnaryOps, ForwardOnStridedInput) {
  const auto& c = GetParam();
  Tensor x = uniform_input({5, 6}, c.lo, c.hi, 12, DType::F64).t();  // non-contiguous
  EXPECT_TRUE(all_close(c.op(x), c.op(x.contiguous()), 0));
}

TEST_P(UnaryOps, GradientMatchesFiniteDifferences) {
  const auto& c = GetParam();
  Tensor x = uniform_input({2, 7}, c.lo, c.hi, 13, DType::F64);
  x.requires_grad_();
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {x})) << c.name;
}

INSTANTIATE_TEST_SUITE_P(All, UnaryOps, ::testing::ValuesIn(unary_cases()),
                         [](const ::testing::TestParamInfo<UnaryCase>& i) {
                           std::string n = i.param.name;
                           for (auto& ch : n)
                             if (!isalnum(ch)) ch = '_';
                           return n;
                         });

TEST(BinaryOps, ForwardWithBroadcasting) {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<float>{10, 20, 30}, {3});
  Tensor c = Tensor::from_vector(std::vector<float>{2, -1}, {2, 1});
  EXPECT_EQ(add(a, b).to_vector<float>(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ(sub(a, b).to_vector<float>(), (std::vector<float>{-9, -18, -27, -6, -15, -24}));
  EXPECT_EQ(mul(a, c).to_vector<float>(), (std::vector<float>{2, 4, 6, -4, -5, -6}));
  EXPECT_EQ(div(a, c).to_vector<float>(), (std::vector<float>{0.5, 1, 1.5, -4, -5, -6}));
  EXPECT_EQ(maximum(a, Tensor::scalar(3.5)).to_vector<float>(), (std::vector<float>{3.5, 3.5, 3.5, 4, 5, 6}));
  EXPECT_EQ(minimum(a, Tensor::scalar(3.5)).to_vector<float>(), (std::vector<float>{1, 2, 3, 3.5, 3.5, 3.5}));
  EXPECT_EQ(pow(a, c).to_vector<float>(), (std::vector<float>{1, 4, 9, 0.25, 0.2f, 1.0f / 6}));
  EXPECT_EQ(gt(a, Tensor::scalar(3)).to_vector<float>(), (std::vector<float>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(le(a, Tensor::scalar(3)).to_vector<float>(), (std::vector<float>{1, 1, 1, 0, 0, 0}));
  EXPECT_EQ(eq(a, Tensor::scalar(2)).to_vector<float>(), (std::vector<float>{0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(ne(a, Tensor::scalar(2)).to_vector<float>(), (std::vector<float>{1, 0, 1, 1, 1, 1}));
  EXPECT_EQ(lt(a, Tensor::scalar(2)).to_vector<float>(), (std::vector<float>{1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ge(a, Tensor::scalar(2)).to_vector<float>(), (std::vector<float>{0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(add(c, b).shape(), (Shape{2, 3}));
  // Scalar operators.
  EXPECT_EQ((2.0 - a).to_vector<float>(), (std::vector<float>{1, 0, -1, -2, -3, -4}));
  EXPECT_EQ((a / 2.0).to_vector<float>(), (std::vector<float>{0.5, 1, 1.5, 2, 2.5, 3}));
}

TEST(BinaryOps, IntegerArithmeticAndComparison) {
  Tensor a = Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  Tensor b = Tensor::from_vector(std::vector<int64_t>{1, 5, 3}, {3});
  EXPECT_EQ(eq(a, b).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(add(a, b).to_vector<int64_t>(), (std::vector<int64_t>{2, 7, 6}));
  EXPECT_EQ(sum(eq(a, b)).item(), 2.0);
}

TEST(BinaryOps, LargeContiguousAndStridedAgree) {
  // Exercise the parallel row loop and every inner-stride specialisation.
  Generator g(3);
  Tensor a = Tensor::randn({64, 33, 17}, &g);
  Tensor b = Tensor::randn({33, 1}, &g);
  Tensor ref = add(a.contiguous(), b.expand({33, 17}).contiguous());
  EXPECT_TRUE(all_close(add(a, b), ref, 0));
  EXPECT_TRUE(all_close(add(a.transpose(0, 2), b), add(a.transpose(0, 2).contiguous(), b.expand({33, 64}).contiguous()), 0));
}

TEST(BinaryOps, Gradients) {
  auto a = random_input({3, 1, 4}, 21), b = random_input({2, 1}, 22);
  for (auto op : std::vector<std::function<Tensor(const Tensor&, const Tensor&)>>{
           [](const Tensor& x, const Tensor& y) { return add(x, y); },
           [](const Tensor& x, const Tensor& y) { return sub(x, y); },
           [](const Tensor& x, const Tensor& y) { return mul(x, y); },
           [](const Tensor& x, const Tensor& y) { return div(x, add(square(y), 0.5)); },
           [](const Tensor& x, const Tensor& y) { return maximum(x, y); },
           [](const Tensor& x, const Tensor& y) { return minimum(x, y); },
           [](const Tensor& x, const Tensor& y) { return pow(add(square(x), 0.5), y); },
       })
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return op(in[0], in[1]); }, {a, b}));
}

TEST(BinaryOps, MaximumTiesSplitGradient) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2}, {2}).requires_grad_();
  Tensor b = Tensor::from_vector(std::vector<double>{1, 3}, {2}).requires_grad_();
  sum(maximum(a, b)).backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0.5, 0}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{0.5, 1}));
}

TEST(BinaryOps, Errors) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  try {
    add(a, b);
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("add"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4]"), std::string::npos) << m;
  }
  EXPECT_THROW(mul(a, Tensor::zeros({2, 3}, DType::F64)), Error);
  EXPECT_THROW(exp(Tensor::zeros({2}, DType::I64)), Error);
  EXPECT_THROW(clamp(a, 2, 1), Error);
  EXPECT_THROW(add(a, Tensor()), Error);
}

TEST(Elementwise, SignHasZeroGradient) {
  Tensor x = random_input({5}, 9);
  EXPECT_EQ(sign(x.detach()).to_vector<double>().size(), 5u);
  sum(sign(x)).backward();
  EXPECT_TRUE(all_close(x.grad(), Tensor::zeros({5}, DType::F64), 0));
}

// Long rows (a contiguous tensor is one row) are cut into pieces across threads: results must be the
// same as element by element, for contiguous, broadcast and strided operands, and whole rows of
// different lengths than the piece size.
TEST(Elementwise, LongRowsSplitAcrossThreadsGiveElementwiseResults) {
  const int64_t n = 3 * 16384 + 7;
  const Tensor a = orbit::testing::randn({2, n}, 1), b = orbit::testing::randn({n}, 2);
  const auto av = a.to_vector<float>(), bv = b.to_vector<float>();
  const auto s = add(a, b).to_vector<float>();
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(s[r * n + i], av[r * n + i] + bv[i]) << r << " " << i;
  // A strided operand: every other element of a longer row.
  const Tensor wide = orbit::testing::randn({2 * n}, 3);
  const Tensor strided = wide.view({n, 2}).select(1, 1);
  const auto wv = wide.to_vector<float>();
  const auto e = exp(strided).to_vector<float>();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(e[i], std::exp(wv[2 * i + 1])) << i;
  // Fill and copy of a long row.
  Tensor z = Tensor::zeros({n});
  z.copy_(b);
  EXPECT_EQ(z.to_vector<float>(), bv);
  EXPECT_EQ(mul(Tensor::full({2, n}, 2.0), 0.5).sum().item(), static_cast<double>(2 * n));
}

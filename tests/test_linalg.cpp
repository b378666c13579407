// matmul and linear: forward against a reference product, broadcasting, gradients, errors.
#include <gtest/gtest.h>

#include "engine/cpu/gemm.h"
#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;

namespace {
// Plain reference: [M, K] x [K, N].
Tensor reference_mm(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> c(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) c[i * N + j] += av[i * K + k] * bv[k * N + j];
  return Tensor::from_vector(c, {M, N});
}
}  // namespace

TEST(Matmul, TwoDimensionalAndTransposedOperands) {
  Generator g(1);
  Tensor a = Tensor::randn({37, 29}, &g, DType::F64), b = Tensor::randn({29, 41}, &g, DType::F64);
  Tensor ref = reference_mm(a, b);
  EXPECT_TRUE(all_close(matmul(a, b), ref, 1e-12, 1e-12));
  // Transposed views are passed to GEMM without copying; results must not change.
  Tensor at = a.t().contiguous().t(), bt = b.t().contiguous().t();
  EXPECT_FALSE(at.is_contiguous());
  EXPECT_TRUE(all_close(matmul(at, bt), ref, 1e-12, 1e-12));
  // float32 against the float64 reference: K = 29 terms of size ~1, float32 rounding ~ 29 * 6e-8.
  EXPECT_TRUE(all_close(matmul(a.to(DType::F32), b.to(DType::F32)), ref, 1e-5, 1e-5));
}

TEST(Matmul, VectorAndBatchedForms) {
  Generator g(2);
  Tensor v = Tensor::randn({4}, &g, DType::F64), w = Tensor::randn({4}, &g, DType::F64);
  Tensor m = Tensor::randn({3, 4}, &g, DType::F64);
  EXPECT_EQ(matmul(v, w).dim(), 0);
  EXPECT_NEAR(matmul(v, w).item(), sum(mul(v, w)).item(), 1e-12);
  EXPECT_EQ(matmul(m, v).shape(), (Shape{3}));
  EXPECT_EQ(matmul(v, m.t()).shape(), (Shape{3}));
  Tensor A = Tensor::randn({2, 1, 3, 4}, &g, DType::F64), B = Tensor::randn({5, 4, 2}, &g, DType::F64);
  Tensor C = matmul(A, B);
  EXPECT_EQ(C.shape(), (Shape{2, 5, 3, 2}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 5; ++j)
      EXPECT_TRUE(all_close(C.select(0, i).select(0, j), reference_mm(A.select(0, i).select(0, 0), B.select(0, j)), 1e-12, 1e-12));
}

TEST(Matmul, Gradients) {
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                        {random_input({3, 4}, 1), random_input({4, 5}, 2)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                        {random_input({2, 1, 3, 4}, 3), random_input({3, 4, 2}, 4)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                        {random_input({4}, 5), random_input({2, 4, 3}, 6)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0].t(), in[1]); },
                        {random_input({4, 3}, 7), random_input({4}, 8)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                        {random_input({5, 3}, 9), random_input({2, 3}, 10), random_input({2}, 11)}));
}

TEST(Matmul, Errors) {
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2})), Error);
  EXPECT_THROW(matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 2})), Error);
  EXPECT_THROW(matmul(Tensor::scalar(1), Tensor::zeros({3})), Error);
  EXPECT_THROW(linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})), Error);
  EXPECT_THROW(linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 3}), Tensor::zeros({3})), Error);
  try {
    matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2}));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3] @ [4, 2]"), std::string::npos) << e.what();
  }
}

TEST(Matmul, EmptyInnerDimensionGivesZeros) {
  EXPECT_EQ(matmul(Tensor::zeros({2, 0}), Tensor::zeros({0, 3})).to_vector<float>(), std::vector<float>(6, 0));
}

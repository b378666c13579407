// Tensor views, copies, dtype/device plumbing and their errors.
#include <gtest/gtest.h>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;

TEST(Tensor, FactoriesAndMetadata) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(Tensor::full({2}, 3.5, DType::F64).to_vector<double>(), (std::vector<double>{3.5, 3.5}));
  EXPECT_EQ(Tensor::arange(4, DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_DOUBLE_EQ(Tensor::scalar(2.5).item(), 2.5);
  EXPECT_THROW(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), Error);
  EXPECT_THROW(Tensor::zeros({2}).item(), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::arange(12).reshape({3, 4});
  Tensor tr = t.transpose(0, 1);
  EXPECT_EQ(tr.shape(), (Shape{4, 3}));
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.to_vector<float>(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  Tensor row = t.select(0, 1);
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{4, 5, 6, 7}));
  Tensor col = t.narrow(1, 1, 2);
  EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{1, 2, 5, 6, 9, 10}));
  Tensor stepped = t.slice(1, 0, 4, 2);
  EXPECT_EQ(stepped.to_vector<float>(), (std::vector<float>{0, 2, 4, 6, 8, 10}));
  // Writing through a view changes the base.
  row.fill_(-1);
  EXPECT_EQ(t.select(0, 1).to_vector<float>(), (std::vector<float>{-1, -1, -1, -1}));
  Tensor e = Tensor::arange(3).reshape({3, 1}).expand({3, 2});
  EXPECT_EQ(e.strides()[1], 0);
  EXPECT_EQ(e.to_vector<float>(), (std::vector<float>{0, 0, 1, 1, 2, 2}));
  Tensor p = Tensor::arange(24).reshape({2, 3, 4}).permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.contiguous().to_vector<float>()[1], 4.0f);  // p[0][0][1] = x[0][1][0]
}

TEST(Tensor, ViewVersusReshape) {
  Tensor t = Tensor::arange(6).reshape({2, 3});
  EXPECT_THROW(t.t().view({6}), Error);  // non-contiguous: view impossible
  EXPECT_EQ(t.t().reshape({6}).to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(t.view({3, -1}).shape(), (Shape{3, 2}));
  EXPECT_THROW(t.view({4, -1}), Error);
  EXPECT_THROW(t.reshape({7}), Error);
  // A view that splits a non-contiguous dim's contiguous run is allowed.
  Tensor big = Tensor::arange(24).reshape({2, 3, 4}).transpose(0, 1);  // [3, 2, 4]
  EXPECT_EQ(big.view({3, 2, 2, 2}).shape(), (Shape{3, 2, 2, 2}));
}

TEST(Tensor, DtypeConversionAndCopy) {
  Tensor t = Tensor::from_vector(std::vector<float>{1.5f, -2.25f}, {2});
  EXPECT_EQ(t.to(DType::F64).to_vector<double>(), (std::vector<double>{1.5, -2.25}));
  EXPECT_EQ(t.to(DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2}));
  Tensor dst = Tensor::zeros({3, 2});
  dst.copy_(t);  // broadcast
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{1.5f, -2.25f, 1.5f, -2.25f, 1.5f, -2.25f}));
  EXPECT_THROW(t.data<double>(), Error);
}

TEST(Tensor, BadDimsAndShapes) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    t.size(2);
    FAIL() << "expected an exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.narrow(1, 2, 2), Error);
  EXPECT_THROW(t.permute({0, 0}), Error);
  EXPECT_THROW(t.permute({0}), Error);
  EXPECT_THROW(t.expand({3, 3}), Error);
  EXPECT_THROW(t.select(0, 5), Error);
  EXPECT_THROW(Tensor().shape(), Error);
  EXPECT_THROW(Tensor::zeros({2}, DType::F32, Device::cuda(0)), Error);
}

TEST(Tensor, RandomIsSeeded) {
  Generator a(7), b(7), c(8);
  auto x = Tensor::randn({16}, &a).to_vector<float>();
  auto y = Tensor::randn({16}, &b).to_vector<float>();
  auto z = Tensor::randn({16}, &c).to_vector<float>();
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  // Moments of a large sample (4 sigma bounds).
  Generator g(1);
  auto v = Tensor::randn({40000}, &g, DType::F64).to_vector<double>();
  double m = 0, s = 0;
  for (double e : v) m += e;
  m /= v.size();
  for (double e : v) s += (e - m) * (e - m);
  s /= v.size();
  EXPECT_NEAR(m, 0.0, 4.0 / 200.0);
  EXPECT_NEAR(s, 1.0, 4.0 * std::sqrt(2.0 / 40000));
  auto perm = g.permutation(10);
  std::sort(perm.begin(), perm.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(perm[i], i);
}

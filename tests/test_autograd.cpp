// The autograd engine: recording, accumulation, no-grad, detach, retain_graph, saved-tensor checks.
#include <gtest/gtest.h>

#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;

TEST(Autograd, SimpleChainRule) {
  Tensor x = Tensor::from_vector(std::vector<double>{1.0, 2.0, 3.0}, {3}).requires_grad_();
  Tensor y = sum(mul(mul(x, x), 3.0));  // d/dx = 6x
  y.backward();
  EXPECT_TRUE(all_close(x.grad(), Tensor::from_vector(std::vector<double>{6, 12, 18}, {3}), 1e-12));
  EXPECT_EQ(y.grad_fn()->name, "sum");
}

TEST(Autograd, AccumulatesAcrossCallsAndZeroGrad) {
  Tensor x = Tensor::from_vector(std::vector<double>{1.0, -1.0}, {2}).requires_grad_();
  sum(mul(x, 2.0)).backward();
  sum(mul(x, 3.0)).backward();
  EXPECT_TRUE(all_close(x.grad(), Tensor::full({2}, 5.0, DType::F64), 0));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, SharedInputsSumGradients) {
  Tensor x = random_input({4}, 1);
  Tensor y = sum(add(mul(x, x), x));  // 2x + 1
  y.backward();
  EXPECT_TRUE(all_close(x.grad(), add(mul(x.detach(), 2.0), 1.0), 1e-12));
}

TEST(Autograd, NoGradAndDetach) {
  Tensor x = random_input({3}, 2);
  {
    NoGradGuard ng;
    Tensor y = mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(mul(d, 2.0).requires_grad() == false);
  EXPECT_THROW(sum(d).backward(), Error);
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = random_input({3}, 3);
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  EXPECT_TRUE(all_close(x.grad(), mul(exp(x.detach()), 2.0), 1e-12));
  EXPECT_THROW(y.backward(), Error);
}

TEST(Autograd, InPlaceChangeOfSavedTensorIsReported) {
  Tensor x = random_input({3}, 4);
  Tensor c = Tensor::ones({3}, DType::F64);
  Tensor y = sum(mul(x, c));
  c.fill_(2.0);  // c was saved by mul
  EXPECT_THROW(y.backward(), Error);
  // In-place writes to tensors in the graph are refused outright while grad mode is on.
  EXPECT_THROW(x.fill_(0.0), Error);
}

TEST(Autograd, GradFunctionReturnsWithoutAccumulating) {
  Tensor x = random_input({3}, 5);
  Tensor y = sum(square(x));
  auto g = grad({y}, {x});
  EXPECT_TRUE(all_close(g[0], mul(x.detach(), 2.0), 1e-12));
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, ViewsAreDifferentiable) {
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor a = x.transpose(0, 1).reshape({6, 2});
    Tensor b = x.narrow(1, 1, 2).expand({2, 3, 2});
    Tensor c = x.slice(1, 0, 4, 2).select(0, 1).unsqueeze(0);
    return add(sum(mul(a, a)), add(sum(b), sum(c)));
  }, {random_input({3, 4}, 6)}));
}

TEST(Autograd, BroadcastingBinaryOps) {
  auto f = [](const std::vector<Tensor>& in) {
    return add(div(mul(in[0], in[1]), add(exp(in[1]), 1.0)), sub(in[0], in[1]));
  };
  EXPECT_TRUE(gradcheck(f, {random_input({2, 1, 4}, 7), random_input({3, 1}, 8)}));
}

TEST(Autograd, CopiesAndConversionsAreDifferentiable) {
  // contiguous() of a transposed view and clone() copy; their gradient is the identity.
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return add(in[0].t().contiguous(), in[0].t().clone()); },
                        {random_input({3, 2}, 11)}));
  // to(dtype): the gradient is converted back to the input's dtype.
  Tensor x = random_input({4}, 12);
  Tensor y = x.to(DType::F32);
  EXPECT_EQ(y.dtype(), DType::F32);
  sum(mul(y, 3.0)).backward();
  EXPECT_EQ(x.grad().dtype(), DType::F64);
  EXPECT_TRUE(all_close(x.grad(), Tensor::full({4}, 3.0, DType::F64), 0));
}

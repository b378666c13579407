// groups/equivariance.h: check_equivariance against errors computable by hand, group averaging of
// small random CNNs (invariant logits, scalar and vector per-pixel outputs), a finite-difference
// gradient operator as a Scalar -> Vector equivariant map, gradients through GroupAveraged, errors.
//
// Tolerances: a group-averaged model over an exactly acting group sees bit-identical inputs for h·x
// and x (act(g, act(h, x)) == act(g∘h, x)); only the order of the |G| summands differs, so the
// relative error is a few float32 ulps (< 1e-6). The bare models are not equivariant by design;
// their error is O(0.1) and the tests require > 1e-3 to show the check can fail.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "groups/equivariance.h"
#include "layers/layers.h"
#include "tests/test_util.h"

using namespace orbit;
using namespace orbit::groups;
using orbit::testing::all_close;
using orbit::testing::expect_error;
using orbit::testing::gradcheck;
using orbit::testing::random_input;
using orbit::testing::randn;

namespace {

std::shared_ptr<Conv2d> conv3x3(int64_t in, int64_t out, Generator* gen) {
  Conv2dOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.kernel_h = o.kernel_w = 3;
  o.pad_h = o.pad_w = 1;
  return std::make_shared<Conv2d>(o, gen);
}

// Conv -> ReLU -> Conv -> ReLU -> global average pool -> Linear: class logits [N, 3].
std::shared_ptr<Sequential> small_classifier(uint64_t seed) {
  Generator gen(seed);
  return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      conv3x3(1, 6, &gen), std::make_shared<ReLU>(), conv3x3(6, 6, &gen), std::make_shared<ReLU>(),
      std::make_shared<AdaptiveAvgPool2d>(1), std::make_shared<Flatten>(), std::make_shared<Linear>(6, 3, true, &gen)});
}

// Conv -> ReLU -> Conv: a per-pixel map [N, 1, H, W] -> [N, out, H, W].
std::shared_ptr<Sequential> small_dense(int64_t out, uint64_t seed) {
  Generator gen(seed);
  return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      conv3x3(1, 4, &gen), std::make_shared<ReLU>(), conv3x3(4, out, &gen)});
}

ModelFn as_fn(const std::shared_ptr<Module>& m) {
  return [m](const Tensor& x) { return (*m)(x); };
}

// Central differences on a periodic grid, x to the right (column + 1) and y up (row - 1).
Tensor ddx(const Tensor& f) { return mul(sub(roll(f, {-1}, {-1}), roll(f, {1}, {-1})), 0.5); }
Tensor ddy(const Tensor& f) { return mul(sub(roll(f, {1}, {-2}), roll(f, {-1}, {-2})), 0.5); }

}  // namespace

TEST(Equivariance, ReportValuesComputableByHand) {
  // f = identity. As a Scalar -> Scalar map it is equivariant: every error is exactly 0. Declared as
  // Scalar -> PseudoScalar, ρ_out(g) f(x) = -(g·x) for reflections, so the error is ||2 g·x|| / ||x|| = 2
  // for the four reflections of D4 and 0 for the rotations: mean 8/7, max 2.
  const Group D4 = Group::parse("D4");
  const Tensor x = randn({3, 2, 5, 5}, 1);
  const ModelFn id = [](const Tensor& t) { return t; };
  const EquivarianceReport r0 = check_equivariance(id, D4, x, FieldKind::Scalar, FieldKind::Scalar);
  EXPECT_EQ(r0.group, "D4");
  ASSERT_EQ(r0.error.size(), 8u);
  for (double e : r0.error) EXPECT_EQ(e, 0.0);
  EXPECT_EQ(r0.max_error, 0.0);
  const EquivarianceReport r1 = check_equivariance(id, D4, x, FieldKind::Scalar, FieldKind::PseudoScalar);
  for (int64_t g = 0; g < 8; ++g) EXPECT_NEAR(r1.error[static_cast<size_t>(g)], g >= 4 ? 2.0 : 0.0, 1e-6);
  EXPECT_NEAR(r1.mean_error, 8.0 / 7.0, 1e-6);
  EXPECT_NEAR(r1.max_error, 2.0, 1e-6);
  const std::string s = r1.str();
  EXPECT_NE(s.find("D4: mean 1.1e+00, max 2.0e+00 (r90 0.0e+00, r180 0.0e+00"), std::string::npos) << s;
  EXPECT_NE(s.find("r270f 2.0e+00)"), std::string::npos) << s;
  // Invariant outputs: a sum over pixels is D4-invariant up to summation order.
  const ModelFn total = [](const Tensor& t) { return sum(t, {1, 2, 3}); };
  EXPECT_LT(check_equivariance(total, D4, x, FieldKind::Scalar, FieldKind::Invariant).max_error, 1e-6);
}

TEST(Equivariance, GroupAveragedClassifierIsInvariant) {
  NoGradGuard ng;
  const Group C4 = Group::parse("C4");
  auto cnn = small_classifier(3);
  auto averaged = std::make_shared<GroupAveraged>(cnn, C4, FieldKind::Scalar, FieldKind::Invariant);
  const Tensor x = randn({4, 1, 10, 10}, 4);
  const auto bare = check_equivariance(as_fn(cnn), C4, x, FieldKind::Scalar, FieldKind::Invariant);
  const auto avg = check_equivariance(as_fn(averaged), C4, x, FieldKind::Scalar, FieldKind::Invariant);
  EXPECT_GT(bare.max_error, 1e-3) << bare.str();
  EXPECT_LT(avg.max_error, 1e-6) << avg.str();
  EXPECT_EQ((*averaged)(x).shape(), (Shape{4, 3}));
}

TEST(Equivariance, GroupAveragedMatchesTheDefinition) {
  // f_G(x) = 1/|G| Σ_g ρ_out(g⁻¹)·f(g·x) with one forward per element, against the batched forward.
  NoGradGuard ng;
  const Group D4 = Group::parse("D4");
  auto net = small_dense(2, 5);
  GroupAveraged averaged(net, D4, FieldKind::Scalar, FieldKind::Vector);
  const Tensor x = randn({2, 1, 6, 6}, 6);
  Tensor expected = Tensor::zeros({2, 2, 6, 6});
  for (int64_t g = 0; g < D4.order(); ++g)
    expected = add(expected, act(D4, D4.inverse(g), (*net)(act(D4, g, x, FieldKind::Scalar)), FieldKind::Vector));
  expected = mul(expected, 1.0 / 8);
  EXPECT_TRUE(all_close(averaged(x), expected, 1e-5, 1e-6));
  // Over the trivial group the wrapper is the model itself.
  GroupAveraged trivial(net, Group::parse("trivial"));
  EXPECT_TRUE(all_close(trivial(x), (*net)(x), 0, 0));
}

TEST(Equivariance, GroupAveragedPerPixelScalarAndVectorOutputs) {
  NoGradGuard ng;
  const Group D4 = Group::parse("D4");
  const Tensor x = randn({3, 1, 8, 8}, 7);
  for (FieldKind out : {FieldKind::Scalar, FieldKind::PseudoScalar, FieldKind::Vector}) {
    auto net = small_dense(2, 8);
    auto averaged = std::make_shared<GroupAveraged>(net, D4, FieldKind::Scalar, out);
    const auto bare = check_equivariance(as_fn(net), D4, x, FieldKind::Scalar, out);
    const auto avg = check_equivariance(as_fn(averaged), D4, x, FieldKind::Scalar, out);
    EXPECT_GT(bare.max_error, 1e-3) << field_kind_name(out) << " " << bare.str();
    EXPECT_LT(avg.max_error, 1e-6) << field_kind_name(out) << " " << avg.str();
  }
  // With periodic translations too (a T2xD4-averaged model on 8x8).
  const Group T = Group::parse("T2xD4");
  auto net = small_dense(2, 9);
  auto averaged = std::make_shared<GroupAveraged>(net, T, FieldKind::Scalar, FieldKind::Vector);
  EXPECT_LT(check_equivariance(as_fn(averaged), T, x, FieldKind::Scalar, FieldKind::Vector).max_error, 1e-6);
}

TEST(Equivariance, GradientOfAScalarIsAVector) {
  // ∇f = (∂f/∂x, ∂f/∂y) with y up is D4 (and periodic-translation) equivariant from Scalar to Vector,
  // exactly up to float64 rounding. Two wrong conventions fail: y pointing down, swapped components.
  const Tensor x = randn({2, 1, 8, 8}, 10, DType::F64);
  const ModelFn grad = [](const Tensor& f) { return cat({ddx(f), ddy(f)}, 1); };
  const ModelFn grad_y_down = [](const Tensor& f) { return cat({ddx(f), neg(ddy(f))}, 1); };
  const ModelFn grad_swapped = [](const Tensor& f) { return cat({ddy(f), ddx(f)}, 1); };
  for (const char* spec : {"D4", "T4xD4"}) {
    const Group G = Group::parse(spec);
    EXPECT_LT(check_equivariance(grad, G, x, FieldKind::Scalar, FieldKind::Vector).max_error, 1e-12);
    EXPECT_GT(check_equivariance(grad_y_down, G, x, FieldKind::Scalar, FieldKind::Vector).max_error, 0.5);
    EXPECT_GT(check_equivariance(grad_swapped, G, x, FieldKind::Scalar, FieldKind::Vector).max_error, 0.5);
  }
}

TEST(Equivariance, GradientsFlowThroughGroupAveraged) {
  Generator gen(11);
  auto net = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      conv3x3(1, 2, &gen), std::make_shared<Tanh>()});
  net->to(DType::F64);
  GroupAveraged averaged(net, Group::parse("D4"), FieldKind::Scalar, FieldKind::Vector);
  const Tensor x = random_input({1, 1, 4, 4}, 12);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return averaged(in[0]); }, {x}));
  const Tensor w = net->param("0.weight");
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return averaged(x.detach()); }, {w}));
}

TEST(Equivariance, GroupAveragedModuleSurface) {
  auto net = small_classifier(13);
  GroupAveraged averaged(net, Group::parse("C4"));
  EXPECT_EQ(averaged.extra_repr(), "group=C4, in_kind=scalar, out_kind=invariant");
  EXPECT_EQ(averaged.group().name(), "C4");
  EXPECT_EQ(averaged.module(), net);
  const auto keys = averaged.state_dict().keys();
  const auto inner = net->state_dict().keys();
  ASSERT_EQ(keys.size(), inner.size());
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(keys[i], "module." + inner[i]);
  EXPECT_NE(averaged.repr().find("group=C4"), std::string::npos) << averaged.repr();
}

TEST(Equivariance, Errors) {
  auto net = small_dense(2, 14);
  expect_error([&] { GroupAveraged(nullptr, Group::parse("C4")); }, {"null module"});
  expect_error([&] { GroupAveraged(net, Group::parse("C4"), FieldKind::Boxes); }, {"boxes"});
  GroupAveraged averaged(net, Group::parse("C4"));
  expect_error([&] { averaged(Tensor::zeros({4, 4})); }, {"C4", "[4, 4]", "[N, ..., H, W]"});
  const ModelFn drops_rows = [](const Tensor& t) { return t.narrow(0, 0, 1); };
  expect_error([&] { check_equivariance(drops_rows, Group::parse("C4"), randn({2, 1, 4, 4}, 1), FieldKind::Scalar,
                                        FieldKind::Scalar); },
               {"one output row per input item", "[1, 1, 4, 4]"});
  expect_error([&] { check_equivariance([](const Tensor& t) { return t; }, Group::parse("C4"), randn({2, 1, 4, 6}, 1),
                                        FieldKind::Scalar, FieldKind::Scalar); },
               {"C4", "r90", "square"});
}

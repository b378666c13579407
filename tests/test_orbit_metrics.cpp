// OrbitEvaluator (groups/metrics.h) against metrics computed directly, one transform at a time.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ops.h"
#include "groups/equivariance.h"
#include "groups/metrics.h"
#include "layers/layers.h"
#include "test_util.h"

using namespace orbit;
using namespace orbit::testing;
using namespace orbit::groups;

namespace {
std::shared_ptr<Sequential> classifier(uint64_t seed) {
  Generator gen(seed);
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Conv2d>(1, 4, 3, 1, 1, 1, 1, true, ConvPadding::Zeros, &gen));
  net->push_back(std::make_shared<ReLU>());
  net->push_back(std::make_shared<Flatten>());
  net->push_back(std::make_shared<Linear>(4 * 8 * 8, 3, true, &gen));
  return net;
}
}  // namespace

TEST(OrbitMetrics, MatchDirectComputation) {
  auto net = classifier(1);
  const Tensor x = randn({10, 1, 8, 8}, 2);
  const Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0}, {10});
  auto f = [&](const Tensor& t) { return (*net)(t); };
  OrbitEvaluator ev(f, {Group::parse("C4"), Group::parse("C8"), Group::parse("D4")}, 15.0);
  // Two batches, to check accumulation.
  ev.add(x.narrow(0, 0, 6), y.narrow(0, 0, 6));
  ev.add(x.narrow(0, 6, 4), y.narrow(0, 6, 4));
  const EvaluationMetrics m = ev.result();
  EXPECT_EQ(m.count, 10);
  // Distinct transforms: 24 angles (C4 and C8 among them) + 4 reflected elements of D4.
  EXPECT_EQ(ev.transforms_per_input(), 28);
  const auto truth = y.to_vector<int64_t>();
  const Tensor f0 = f(x);
  const auto p0 = argmax(f0, 1).to_vector<int64_t>();
  double acc0 = 0;
  for (int i = 0; i < 10; ++i) acc0 += p0[i] == truth[i];
  EXPECT_DOUBLE_EQ(m.accuracy, acc0 / 10);
  EXPECT_NEAR(m.loss, cross_entropy(f0, y).item(), 1e-5);
  ASSERT_EQ(m.orbits.size(), 3u);
  for (const OrbitMetrics& o : m.orbits) {
    const Group G = Group::parse(o.group);
    double acc_sum = 0, err_sum = 0;
    std::vector<bool> consistent(10, true);
    for (int64_t g = 0; g < G.order(); ++g) {
      const Tensor fg = f(act(G, g, x, FieldKind::Scalar));
      const auto pg = argmax(fg, 1).to_vector<int64_t>();
      double acc = 0;
      for (int i = 0; i < 10; ++i) {
        acc += pg[i] == truth[i];
        consistent[i] = consistent[i] && pg[i] == p0[i];
      }
      EXPECT_DOUBLE_EQ(o.element_accuracy[g], acc / 10) << o.group << " " << G.element_name(g);
      acc_sum += acc / 10;
      if (g > 0) {
        const auto num = sqrt(sum(square(sub(fg, f0)), {1})).to_vector<float>();
        const auto den = sqrt(sum(square(f0), {1})).to_vector<float>();
        for (int i = 0; i < 10; ++i) err_sum += num[i] / den[i];
      }
    }
    double cons = 0;
    for (bool c : consistent) cons += c;
    EXPECT_NEAR(o.orbit_accuracy, acc_sum / G.order(), 1e-12) << o.group;
    EXPECT_NEAR(o.consistency, cons / 10, 1e-12) << o.group;
    EXPECT_NEAR(o.equivariance_error, err_sum / (10 * (G.order() - 1)), 1e-4) << o.group;
    EXPECT_GT(o.equivariance_error, 1e-3) << "a plain CNN is not invariant";
  }
  ASSERT_EQ(m.angles.size(), 24u);
  for (size_t k = 0; k < m.angles.size(); ++k) {
    const double deg = m.angles[k];
    const Tensor xr = std::fmod(deg, 90.0) == 0 ? rot90(x, static_cast<int64_t>(deg / 90)) : rotate(x, deg);
    const auto pr = argmax(f(xr), 1).to_vector<int64_t>();
    double acc = 0;
    for (int i = 0; i < 10; ++i) acc += pr[i] == truth[i];
    EXPECT_DOUBLE_EQ(m.angle_accuracy[k], acc / 10) << deg;
  }
}

TEST(OrbitMetrics, GroupAveragedModelIsConsistentOnItsGroup) {
  auto net = classifier(3);
  auto avg = std::make_shared<GroupAveraged>(net, Group::parse("C4"));
  const Tensor x = randn({12, 1, 8, 8}, 4);
  const Tensor y = Tensor::zeros({12}, DType::I64);
  OrbitEvaluator ev([&](const Tensor& t) { return (*avg)(t); }, {Group::parse("C4"), Group::parse("C8")}, 0.0);
  ev.add(x, y);
  const EvaluationMetrics m = ev.result();
  EXPECT_EQ(m.orbits[0].consistency, 1.0);
  EXPECT_LT(m.orbits[0].equivariance_error, 1e-5);  // float rounding of the averaged logits
  EXPECT_GT(m.orbits[1].equivariance_error, 1e-3);  // 45° is not in C4
  EXPECT_TRUE(m.angles.empty());
}

TEST(OrbitMetrics, Errors) {
  auto net = classifier(5);
  OrbitEvaluator ev([&](const Tensor& t) { return (*net)(t); }, {Group::parse("C4")}, 15.0);
  expect_error([&] { ev.add(Tensor::zeros({2, 8, 8}), Tensor::zeros({2}, DType::I64)); }, {"[N, C, H, W]", "[2, 8, 8]"});
  expect_error([&] { ev.add(Tensor::zeros({2, 1, 8, 8}), Tensor::zeros({3}, DType::I64)); }, {"labels"});
  expect_error([&] { OrbitEvaluator bad([&](const Tensor& t) { return (*net)(t); }, {}, 7.0); }, {"divide 360", "7"});
}

// The equivariance regularizer (groups/regularizer.h): discrepancies against direct formulas, the
// element draws, the joint forward, stop-gradient, feature taps, preserve mode and gradients by
// finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "engine/ops.h"
#include "groups/equivariance.h"
#include "groups/regularizer.h"
#include "layers/layers.h"
#include "test_util.h"

using namespace orbit;
using namespace orbit::testing;
using namespace orbit::groups;

namespace {

// A small CNN whose logits are not rotation invariant: conv -> relu -> flatten -> linear.
std::shared_ptr<Sequential> small_net(DType dt = DType::F32, uint64_t seed = 1) {
  Generator gen(seed);
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Conv2d>(1, 3, 3, 1, 1, 1, 1, true, ConvPadding::Zeros, &gen));
  net->push_back(std::make_shared<ReLU>());
  net->push_back(std::make_shared<Flatten>());
  net->push_back(std::make_shared<Linear>(3 * 6 * 6, 4, true, &gen));
  net->to(dt);
  return net;
}

// The one-sided penalty's gradient w.r.t. w is that of `frozen` (the penalty with its reference held
// fixed at the current weights, itself checked by finite differences), and differs from the two-sided
// gradient. penalty(stop_gradient) returns R as [1].
void expect_one_sided_is_the_frozen_gradient(const Tensor& w, const std::function<Tensor(const std::vector<Tensor>&)>& frozen,
                                             const std::function<Tensor(bool)>& penalty) {
  EXPECT_TRUE(gradcheck(frozen, {w}));
  w.zero_grad();
  frozen({}).sum().backward();
  const Tensor g_frozen = w.grad().clone();
  w.zero_grad();
  penalty(true).sum().backward();
  EXPECT_TRUE(all_close(w.grad(), g_frozen, 1e-10, 1e-12));
  w.zero_grad();
  penalty(false).sum().backward();
  EXPECT_GT(amax(abs(sub(w.grad(), g_frozen)), {}).item(), 1e-6) << "the two forms differ";
}

}  // namespace

TEST(Regularizer, DiscrepancyMatchesFormulas) {
  const Tensor a = randn({3, 5}, 1).to(DType::F64), b = randn({3, 5}, 2).to(DType::F64);
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  const auto l2 = discrepancy(a, b, Discrepancy::SquaredL2).to_vector<double>();
  const auto kl = discrepancy(a, b, Discrepancy::KL).to_vector<double>();
  const auto sym = discrepancy(a, b, Discrepancy::SymmetricKL).to_vector<double>();
  for (int i = 0; i < 3; ++i) {
    double se = 0, za = 0, zb = 0;
    for (int c = 0; c < 5; ++c) se += std::pow(av[i * 5 + c] - bv[i * 5 + c], 2), za += std::exp(av[i * 5 + c]), zb += std::exp(bv[i * 5 + c]);
    double kl_ba = 0, kl_ab = 0;  // KL(p_b || p_a) (b is the reference), and the reverse
    for (int c = 0; c < 5; ++c) {
      const double pa = std::exp(av[i * 5 + c]) / za, pb = std::exp(bv[i * 5 + c]) / zb;
      kl_ba += pb * std::log(pb / pa);
      kl_ab += pa * std::log(pa / pb);
    }
    EXPECT_NEAR(l2[i], se / 5, 1e-12);
    EXPECT_NEAR(kl[i], kl_ba, 1e-12);
    EXPECT_NEAR(sym[i], 0.5 * (kl_ab + kl_ba), 1e-12);
    EXPECT_GT(kl[i], 0);
  }
  // Identical outputs: zero for every discrepancy.
  for (auto d : {Discrepancy::SquaredL2, Discrepancy::KL, Discrepancy::SymmetricKL})
    EXPECT_NEAR(sum(discrepancy(a, a, d)).item(), 0.0, 1e-14);
}

TEST(Regularizer, DiscrepancyOnDenseOutputsAveragesPixels) {
  // [N, C, H, W]: KL per pixel over the channel dim, averaged over pixels.
  const Tensor a = randn({2, 3, 2, 2}, 3).to(DType::F64), b = randn({2, 3, 2, 2}, 4).to(DType::F64);
  const auto d = discrepancy(a, b, Discrepancy::KL).to_vector<double>();
  for (int64_t i = 0; i < 2; ++i) {
    double acc = 0;
    for (int64_t y = 0; y < 2; ++y)
      for (int64_t x = 0; x < 2; ++x) {
        const Tensor ap = a.select(0, i).select(1, y).select(1, x).unsqueeze(0);
        const Tensor bp = b.select(0, i).select(1, y).select(1, x).unsqueeze(0);
        acc += discrepancy(ap, bp, Discrepancy::KL).item();
      }
    EXPECT_NEAR(d[i], acc / 4, 1e-12);
  }
}

TEST(Regularizer, DiscrepancyGradients) {
  for (auto d : {Discrepancy::SquaredL2, Discrepancy::KL, Discrepancy::SymmetricKL}) {
    Tensor a = randn({3, 4}, 5).to(DType::F64), b = randn({3, 4}, 6).to(DType::F64);
    a.requires_grad_(true);
    b.requires_grad_(true);
    EXPECT_TRUE(gradcheck([d](const std::vector<Tensor>& in) { return discrepancy(in[0], in[1], d); }, {a, b}))
        << discrepancy_name(d);
  }
}

TEST(Regularizer, ParseAndErrors) {
  EXPECT_EQ(parse_discrepancy("kl"), Discrepancy::KL);
  EXPECT_EQ(parse_discrepancy("sym_kl"), Discrepancy::SymmetricKL);
  EXPECT_EQ(parse_discrepancy("l2"), Discrepancy::SquaredL2);
  expect_error([] { parse_discrepancy("js"); }, {"js", "kl", "sym_kl", "l2"});
  expect_error([] { discrepancy(Tensor::zeros({2, 3}), Tensor::zeros({2, 4}), Discrepancy::KL); }, {"[2, 3]", "[2, 4]"});
  expect_error([] { discrepancy(Tensor::zeros({2}), Tensor::zeros({2}), Discrepancy::KL); }, {"KL", "[N, C"});
}

TEST(Regularizer, DrawElements) {
  const Group G = Group::parse("D4");
  Generator gen(7);
  std::vector<int64_t> items, elements;
  draw_elements(G, 5, 3, gen, items, elements);
  ASSERT_EQ(items.size(), 15u);
  for (int64_t i = 0; i < 5; ++i) {
    std::set<int64_t> seen;
    for (size_t k = 0; k < items.size(); ++k)
      if (items[k] == i) {
        EXPECT_GE(elements[k], 1);
        EXPECT_LT(elements[k], 8);
        seen.insert(elements[k]);
      }
    EXPECT_EQ(seen.size(), 3u) << "distinct elements per item";
  }
  // The whole orbit: every non-identity element once per item, in order.
  draw_elements(G, 2, 0, gen, items, elements);
  ASSERT_EQ(items.size(), 14u);
  for (size_t k = 0; k < 7; ++k) EXPECT_EQ(elements[k], static_cast<int64_t>(k) + 1);
  // Uniform draws: over many items every element shows up about equally often.
  std::vector<int> counts(8, 0);
  draw_elements(G, 7000, 1, gen, items, elements);
  for (int64_t e : elements) counts[e]++;
  EXPECT_EQ(counts[0], 0);
  for (int e = 1; e < 8; ++e) EXPECT_NEAR(counts[e], 1000, 150);  // ~5 standard deviations
  expect_error([&] { draw_elements(G, 2, -1, gen, items, elements); }, {"samples", "-1"});
  // A share of the items: round(0.25 * 10) = 3 distinct items, in increasing order, 2 elements each.
  draw_elements(G, 10, 2, gen, items, elements, 0.25);
  ASSERT_EQ(items.size(), 6u);
  EXPECT_EQ(items[0], items[1]);
  EXPECT_LT(items[1], items[2]);
  EXPECT_LT(items[3], items[4]);
  // Over many draws every item is chosen about equally often (unbiased estimate of R).
  std::vector<int> chosen(10, 0);
  for (int t = 0; t < 4000; ++t) {
    draw_elements(G, 10, 1, gen, items, elements, 0.5);
    ASSERT_EQ(items.size(), 5u);
    for (int64_t i : items) chosen[i]++;
  }
  for (int c : chosen) EXPECT_NEAR(c, 2000, 200);  // ~6 standard deviations
  expect_error([&] { draw_elements(G, 2, 1, gen, items, elements, 0.0); }, {"item_fraction", "(0, 1]"});
}

TEST(Regularizer, ElementWeights) {
  // C8 with the quarter turns (r90, r180, r270) weighted 3 and the 45-degree turns 1.
  const Group G = Group::parse("C8");
  const std::vector<double> w = {1, 3, 1, 3, 1, 3, 1};
  Generator gen(3);
  std::vector<int64_t> items, elements;
  // One element per item, drawn with probability w / 13: about 1,000 or 3,000 of 13,000 draws each.
  draw_elements(G, 13000, 1, gen, items, elements, 1.0, w);
  ASSERT_EQ(elements.size(), 13000u);
  std::vector<int> counts(8, 0);
  for (int64_t e : elements) counts[e]++;
  EXPECT_EQ(counts[0], 0);
  for (int e = 1; e < 8; ++e) EXPECT_NEAR(counts[e], 1000 * w[e - 1], 250) << G.element_name(e);  // ~5 std
  // Elements of weight 0 are never drawn, and the whole orbit lists only the others.
  const std::vector<double> quarter = {0, 1, 0, 1, 0, 1, 0};
  draw_elements(G, 500, 1, gen, items, elements, 1.0, quarter);
  for (int64_t e : elements) EXPECT_EQ(e % 2, 0) << G.element_name(e);
  draw_elements(G, 2, 0, gen, items, elements, 1.0, quarter);
  EXPECT_EQ(elements, (std::vector<int64_t>{2, 4, 6, 2, 4, 6}));
  EXPECT_EQ(items, (std::vector<int64_t>{0, 0, 0, 1, 1, 1}));
  // Bad weights are refused, naming what was received and what is expected.
  expect_error([&] { draw_elements(G, 2, 1, gen, items, elements, 1.0, {1, 2}); },
               {"element_weights", "C8", "7: r45, r90, r135, r180, r225, r270, r315", "got 2"});
  expect_error([&] { draw_elements(G, 2, 1, gen, items, elements, 1.0, {1, 1, 1, -2, 1, 1, 1}); }, {"element_weights", "-2"});
  expect_error([&] { draw_elements(G, 2, 1, gen, items, elements, 1.0, std::vector<double>(7, 0.0)); }, {"at least one"});
  expect_error([&] { draw_elements(G, 2, 3, gen, items, elements, 1.0, w); }, {"element_weights", "samples 3"});

  // Over the whole orbit, R is the weighted mean of the copies' discrepancies, computed here one copy
  // at a time (float64); with all weights equal it is the unweighted R, and measure_defect agrees.
  auto net = small_net(DType::F64, 4);
  const Tensor x = randn({3, 1, 6, 6}, 21).to(DType::F64);
  auto f = [&](const Tensor& t) { return (*net)(t); };
  RegularizerOptions o;
  o.samples = 0;
  o.discrepancy = Discrepancy::KL;
  o.element_weights = w;
  Generator g0(0);
  const auto r = regularized_forward(f, net.get(), G, x, o, g0);
  ASSERT_EQ(r.elements.size(), 21u);
  double num = 0, den = 0;
  for (size_t k = 0; k < r.items.size(); ++k) {
    const Tensor xi = x.narrow(0, r.items[k], 1);
    const double wk = w[r.elements[k] - 1];
    num += wk * discrepancy(f(act(G, r.elements[k], xi, FieldKind::Scalar)), f(xi), o.discrepancy).item();
    den += wk;
  }
  EXPECT_NEAR(r.penalty.item(), num / den, 1e-12);
  EXPECT_NEAR(measure_defect(f, G, x, o), num / den, 1e-12);
  RegularizerOptions uniform = o;
  uniform.element_weights.clear();
  o.element_weights = std::vector<double>(7, 2.5);
  Generator g1(0), g2(0);
  EXPECT_NEAR(regularized_forward(f, net.get(), G, x, o, g1).penalty.item(),
              regularized_forward(f, net.get(), G, x, uniform, g2).penalty.item(), 1e-12);
  // The weighted penalty differs from the uniform one when the elements' defects differ (a bilinear
  // 45-degree turn of this net is not a quarter turn), so the weights are used.
  o.element_weights = w;
  Generator g3(0), g4(0);
  EXPECT_GT(std::abs(regularized_forward(f, net.get(), G, x, o, g3).penalty.item() -
                     regularized_forward(f, net.get(), G, x, uniform, g4).penalty.item()), 1e-6);
  // Its gradient by finite differences (two-sided: R is an ordinary function of the weights).
  o.stop_gradient = false;
  const Tensor wt = net->param("3.weight");
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) {
    Generator g(0);
    return regularized_forward(f, net.get(), G, x, o, g).penalty.reshape({1});
  }, {wt}));
  // The orbit-mean reference does not take weights.
  o.reference = Reference::OrbitMean;
  Generator g5(0);
  expect_error([&] { regularized_forward(f, net.get(), G, x, o, g5); }, {"element_weights", "upright", "orbit_mean"});
}

TEST(Regularizer, ZeroForInvariantModelPositiveOtherwise) {
  const Group G = Group::parse("C4");
  auto net = small_net();
  auto avg = std::make_shared<GroupAveraged>(net, G);
  const Tensor x = randn({4, 1, 6, 6}, 11);
  RegularizerOptions o;
  o.samples = 0;
  for (auto d : {Discrepancy::SquaredL2, Discrepancy::KL, Discrepancy::SymmetricKL}) {
    o.discrepancy = d;
    Generator gen(1);
    const auto inv = regularized_forward([&](const Tensor& t) { return (*avg)(t); }, avg.get(), G, x, o, gen);
    EXPECT_LT(inv.penalty.item(), 1e-9) << discrepancy_name(d);
    const auto raw = regularized_forward([&](const Tensor& t) { return (*net)(t); }, net.get(), G, x, o, gen);
    EXPECT_GT(raw.penalty.item(), 1e-4) << discrepancy_name(d);
    // The task output is f(x) of the original items.
    EXPECT_TRUE(all_close(raw.output, (*net)(x), 1e-5, 1e-6));
  }
}

TEST(Regularizer, PenaltyEqualsDirectComputation) {
  // R = mean over (item, element) of d(f(g x_i), f(x_i)), computed here one copy at a time.
  const Group G = Group::parse("D4");
  auto net = small_net(DType::F64);
  const Tensor x = randn({3, 1, 6, 6}, 12).to(DType::F64);
  RegularizerOptions o;
  o.samples = 2;
  o.discrepancy = Discrepancy::SymmetricKL;
  Generator gen(5);
  const auto r = regularized_forward([&](const Tensor& t) { return (*net)(t); }, net.get(), G, x, o, gen);
  ASSERT_EQ(r.items.size(), 6u);
  double expect = 0;
  for (size_t k = 0; k < r.items.size(); ++k) {
    const Tensor xi = x.narrow(0, r.items[k], 1);
    expect += discrepancy((*net)(act(G, r.elements[k], xi, FieldKind::Scalar)), (*net)(xi), o.discrepancy).item();
  }
  EXPECT_NEAR(r.penalty.item(), expect / 6, 1e-12);
  // Whole-orbit estimate equals measure_defect.
  o.samples = 0;
  Generator g2(0);
  EXPECT_NEAR(regularized_forward([&](const Tensor& t) { return (*net)(t); }, net.get(), G, x, o, g2).penalty.item(),
              measure_defect([&](const Tensor& t) { return (*net)(t); }, G, x, o), 1e-12);
}

TEST(Regularizer, GradientByFiniteDifferences) {
  // d R / d (model weights), float64, with the same draws on every evaluation (the generator is
  // re-seeded inside f). Two-sided: R(W) is an ordinary function of W, checked directly. One-sided:
  // the gradient is that of R with the reference branch frozen at the current W, i.e. of
  // R_ref(W) = mean d(f_W(g x), f_W0(x)); R_ref is checked by finite differences and the regularizer's
  // gradient must equal R_ref's.
  const Group G = Group::parse("C4");
  auto net = small_net(DType::F64, 3);
  const Tensor x = randn({2, 1, 6, 6}, 13).to(DType::F64);
  RegularizerOptions o;
  o.samples = 1;
  o.discrepancy = Discrepancy::KL;
  const Tensor w = net->param("3.weight");
  auto penalty = [&](bool stop) {
    o.stop_gradient = stop;
    Generator gen(9);
    return regularized_forward([&](const Tensor& t) { return (*net)(t); }, net.get(), G, x, o, gen).penalty.reshape({1});
  };
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return penalty(false); }, {w}));

  Generator gen(9);
  std::vector<int64_t> items, elements;
  draw_elements(G, 2, 1, gen, items, elements);
  Tensor ref0;
  {
    NoGradGuard ng;
    ref0 = (*net)(x).clone();
  }
  auto frozen = [&](const std::vector<Tensor>&) {
    return mean(discrepancy((*net)(act_per_sample(G, elements, x, FieldKind::Scalar)), ref0, o.discrepancy)).reshape({1});
  };
  expect_one_sided_is_the_frozen_gradient(w, frozen, penalty);
}

TEST(Regularizer, StopGradientDetachesTheReference) {
  // With an input that requires grad, R's gradient w.r.t. x flows only through the transformed
  // copies when stop_gradient is on: compare with the two-sided gradient minus the reference part.
  const Group G = Group::parse("C4");
  auto net = small_net(DType::F64, 4);
  RegularizerOptions o;
  o.samples = 1;
  o.discrepancy = Discrepancy::SquaredL2;
  auto grad_of = [&](bool stop, bool via_transformed_only) {
    Tensor x = randn({2, 1, 6, 6}, 14).to(DType::F64);
    x.requires_grad_(true);
    Generator gen(2);
    std::vector<int64_t> items, elements;
    draw_elements(G, 2, 1, gen, items, elements);
    // Direct computation of the one-sided penalty: reference computed without gradients.
    Tensor ref;
    {
      NoGradGuard ng;
      ref = (*net)(x.detach());
    }
    if (via_transformed_only) {
      Tensor R = mean(discrepancy((*net)(act_per_sample(G, elements, x, FieldKind::Scalar)), ref, o.discrepancy));
      R.backward();
    } else {
      o.stop_gradient = stop;
      Generator g2(2);
      regularized_forward([&](const Tensor& t) { return (*net)(t); }, net.get(), G, x, o, g2).penalty.backward();
    }
    return x.grad();
  };
  const Tensor one_sided = grad_of(true, false), direct = grad_of(true, true), two_sided = grad_of(false, false);
  EXPECT_TRUE(all_close(one_sided, direct, 1e-10, 1e-12));
  EXPECT_GT(amax(abs(sub(one_sided, two_sided)), {}).item(), 1e-6);
}

TEST(Regularizer, FeatureTapsAndPreserve) {
  const Group G = Group::parse("C4");
  auto net = small_net(DType::F64, 5);
  const Tensor x = randn({2, 1, 6, 6}, 15).to(DType::F64);
  auto f = [&](const Tensor& t) { return (*net)(t); };
  RegularizerOptions o;
  o.samples = 0;
  Generator gen(1);
  const double base = regularized_forward(f, net.get(), G, x, o, gen).penalty.item();
  // A tap on the conv output adds tap_weight times the squared-L2 defect of the feature maps.
  o.taps = {"1"};  // the ReLU after the conv: [2N', 3, 6, 6]
  o.tap_weight = 0.5;
  const double with_tap = regularized_forward(f, net.get(), G, x, o, gen).penalty.item();
  double tap = 0;
  {
    std::vector<int64_t> items, elements;
    Generator g0(0);
    draw_elements(G, 2, 0, g0, items, elements);
    auto feat = [&](const Tensor& t) { return relu((*(*net)[0])(t)); };
    for (size_t k = 0; k < items.size(); ++k) {
      const Tensor xi = x.narrow(0, items[k], 1);
      tap += discrepancy(feat(act(G, elements[k], xi, FieldKind::Scalar)), act(G, elements[k], feat(xi), FieldKind::Scalar),
                         Discrepancy::SquaredL2).item();
    }
    tap /= items.size();
  }
  EXPECT_NEAR(with_tap, base + 0.5 * tap, 1e-10);
  EXPECT_GT(tap, 0);
  o.taps = {"nope"};
  expect_error([&] { regularized_forward(f, net.get(), G, x, o, gen); }, {"nope"});
  // preserve: max(0, R - baseline).
  o.taps.clear();
  o.preserve = true;
  o.baseline = base / 2;
  EXPECT_NEAR(regularized_forward(f, net.get(), G, x, o, gen).penalty.item(), base / 2, 1e-12);
  o.baseline = 2 * base;
  const auto r = regularized_forward(f, net.get(), G, x, o, gen);
  EXPECT_EQ(r.penalty.item(), 0.0);
  EXPECT_NEAR(r.raw_penalty.item(), base, 1e-12);
}

namespace {

// The orbit-mean penalty computed one item at a time: the copies of item i (and x_i itself) are
// brought back to the upright frame, averaged (as probabilities for KL, as outputs for L2), and each
// copy is compared with the average carried into its own frame.
double orbit_mean_direct(const std::function<Tensor(const Tensor&)>& f, const Group& G, const Tensor& x,
                         const RegularizedOutput& r, Discrepancy d, FieldKind out_kind) {
  const bool kl = d != Discrepancy::SquaredL2;
  double total = 0;
  int64_t terms = 0;
  for (size_t k0 = 0; k0 < r.items.size();) {
    size_t k1 = k0;
    while (k1 < r.items.size() && r.items[k1] == r.items[k0]) ++k1;
    const Tensor xi = x.narrow(0, r.items[k0], 1);
    std::vector<Tensor> outs = {f(xi)};
    std::vector<int64_t> els = {0};
    for (size_t k = k0; k < k1; ++k) {
      outs.push_back(f(act(G, r.elements[k], xi, FieldKind::Scalar)));
      els.push_back(r.elements[k]);
    }
    Tensor avg;
    for (size_t j = 0; j < outs.size(); ++j) {
      Tensor back = act(G, G.inverse(els[j]), outs[j], out_kind);
      if (kl) back = softmax(back, 1);
      avg = avg.defined() ? add(avg, back) : back;
    }
    avg = mul(avg, 1.0 / outs.size());
    if (kl) avg = log(avg);
    for (size_t j = 0; j < outs.size(); ++j, ++terms)
      total += discrepancy(outs[j], act(G, els[j], avg, out_kind), d).item();
    k0 = k1;
  }
  return total / terms;
}

}  // namespace

TEST(Regularizer, OrbitMeanReferenceEqualsDirectComputation) {
  // Class logits under D4 (KL and symmetric KL; 2 sampled elements, the whole orbit, and a share of
  // the items), and dense scalar maps under C4 by squared L2, where the copies must be rotated back
  // before they are averaged.
  const Group D4 = Group::parse("D4"), C4 = Group::parse("C4");
  auto net = small_net(DType::F64, 6);
  auto f = [&](const Tensor& t) { return (*net)(t); };
  const Tensor x = randn({4, 1, 6, 6}, 16).to(DType::F64);
  RegularizerOptions o;
  o.reference = Reference::OrbitMean;
  for (auto d : {Discrepancy::KL, Discrepancy::SymmetricKL})
    for (int64_t samples : {1, 2, 0})
      for (double share : {1.0, 0.5}) {
        o.discrepancy = d;
        o.samples = samples;
        o.item_fraction = share;
        Generator gen(7);
        const auto r = regularized_forward(f, net.get(), D4, x, o, gen);
        const double expect = orbit_mean_direct(f, D4, x, r, d, FieldKind::Invariant);
        EXPECT_NEAR(r.penalty.item(), expect, 1e-12 * std::max(1.0, expect))
            << discrepancy_name(d) << " samples " << samples << " share " << share;
        EXPECT_GT(expect, 1e-4);
        // It differs from the upright reference (which compares only the copies with f(x)).
        o.reference = Reference::Upright;
        Generator g2(7);
        EXPECT_GT(std::abs(regularized_forward(f, net.get(), D4, x, o, g2).penalty.item() - expect), 1e-6);
        o.reference = Reference::OrbitMean;
      }
  Generator cg(8);
  auto conv = std::make_shared<Conv2d>(1, 2, 3, 1, 1, 1, 1, true, ConvPadding::Zeros, &cg);
  conv->to(DType::F64);
  auto g = [&](const Tensor& t) { return (*conv)(t); };
  o.discrepancy = Discrepancy::SquaredL2;
  o.out_kind = FieldKind::Scalar;
  o.item_fraction = 1.0;
  for (int64_t samples : {1, 0}) {
    o.samples = samples;
    Generator gen(3);
    const auto r = regularized_forward(g, conv.get(), C4, x, o, gen);
    const double expect = orbit_mean_direct(g, C4, x, r, o.discrepancy, FieldKind::Scalar);
    EXPECT_NEAR(r.penalty.item(), expect, 1e-12 * std::max(1.0, expect)) << "samples " << samples;
    EXPECT_GT(expect, 1e-6);
  }
}

TEST(Regularizer, OrbitMeanReferenceZeroForInvariantModelAndGradients) {
  const Group G = Group::parse("C4");
  auto net = small_net(DType::F64, 7);
  auto avg = std::make_shared<GroupAveraged>(net, G);
  const Tensor x = randn({3, 1, 6, 6}, 17).to(DType::F64);
  RegularizerOptions o;
  o.reference = Reference::OrbitMean;
  o.samples = 0;
  for (auto d : {Discrepancy::SquaredL2, Discrepancy::KL, Discrepancy::SymmetricKL}) {
    o.discrepancy = d;
    Generator gen(1);
    EXPECT_LT(regularized_forward([&](const Tensor& t) { return (*avg)(t); }, avg.get(), G, x, o, gen).penalty.item(), 1e-12)
        << discrepancy_name(d);
  }
  // Gradients: two-sided by finite differences; one-sided equals the gradient with the average
  // computed once, without gradients, and held fixed (checked by finite differences itself).
  o.discrepancy = Discrepancy::KL;
  o.samples = 2;
  const Tensor w = net->param("3.weight");
  auto f = [&](const Tensor& t) { return (*net)(t); };
  auto penalty = [&](bool stop) {
    o.stop_gradient = stop;
    Generator gen(4);
    return regularized_forward(f, net.get(), G, x, o, gen).penalty.reshape({1});
  };
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return penalty(false); }, {w}));
  Generator gen(4);
  std::vector<int64_t> items, elements;
  draw_elements(G, 3, 2, gen, items, elements);
  Tensor avg_logp;  // [3, 4]: log of the mean probabilities of x_i and its two copies
  {
    NoGradGuard ng;
    const Tensor p0 = softmax(f(x), 1);
    const Tensor pg = softmax(f(act_per_sample(G, elements, index_select(x, 0, Tensor::from_vector(items, {6})), FieldKind::Scalar)), 1);
    avg_logp = log(mul(add(p0, sum(pg.reshape({3, 2, 4}), {1})), 1.0 / 3)).clone();
  }
  const Tensor rows = Tensor::from_vector(items, {6});
  auto frozen = [&](const std::vector<Tensor>&) {
    const Tensor dg = discrepancy(f(act_per_sample(G, elements, index_select(x, 0, rows), FieldKind::Scalar)),
                                  index_select(avg_logp, 0, rows), o.discrepancy);
    return mean(cat({discrepancy(f(x), avg_logp, o.discrepancy), dg}, 0)).reshape({1});
  };
  expect_one_sided_is_the_frozen_gradient(w, frozen, penalty);
}

TEST(Regularizer, OrbitMeanReferenceErrors) {
  EXPECT_EQ(parse_reference("upright"), Reference::Upright);
  EXPECT_EQ(parse_reference("orbit_mean"), Reference::OrbitMean);
  expect_error([] { parse_reference("mean"); }, {"mean", "upright", "orbit_mean"});
  // KL on vector fields: the mean of softmaxes would be rotated as a vector; refused.
  const Group G = Group::parse("C4");
  Generator cg(9);
  auto conv = std::make_shared<Conv2d>(1, 2, 3, 1, 1, 1, 1, true, ConvPadding::Zeros, &cg);
  RegularizerOptions o;
  o.reference = Reference::OrbitMean;
  o.out_kind = FieldKind::Vector;
  Generator gen(1);
  expect_error([&] { regularized_forward([&](const Tensor& t) { return (*conv)(t); }, conv.get(), G, randn({2, 1, 6, 6}, 1), o, gen); },
               {"orbit-mean", "kl", "vector", "l2"});
  o.discrepancy = Discrepancy::SquaredL2;  // accepted with L2
  EXPECT_GT(regularized_forward([&](const Tensor& t) { return (*conv)(t); }, conv.get(), G, randn({2, 1, 6, 6}, 1), o, gen).penalty.item(), 0);
}

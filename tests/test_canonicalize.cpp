// groups/canonicalize.h: the scores are equivariant (the columns permute exactly as the group
// composes), the canonicalized model is invariant, the argmax passes no gradient while the prior
// trains the scorer, a scorer trained with the prior finds the pose of rotated images, and bad input.
//
// Tolerances: over C4 and D4 the group acts by exact pixel permutations, so g_k⁻¹·(h·x) and
// (h⁻¹∘g_k)⁻¹·x are bit-identical images; scores and logits are then compared for exact equality.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "groups/canonicalize.h"
#include "groups/equivariance.h"
#include "layers/layers.h"
#include "tests/test_util.h"
#include "train/optim.h"

using namespace orbit;
using namespace orbit::groups;
using orbit::testing::expect_error;
using orbit::testing::randn;

namespace {

// Conv -> ReLU -> flatten -> Linear: class logits [N, 3] that depend on the pose (not invariant).
std::shared_ptr<Sequential> posed_classifier(int64_t H, uint64_t seed) {
  Generator gen(seed);
  return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Conv2d>(1, 4, 3, 1, 1, 1, 1, true, ConvPadding::Zeros, &gen), std::make_shared<ReLU>(),
      std::make_shared<Flatten>(), std::make_shared<Linear>(4 * H * H, 3, true, &gen)});
}

std::shared_ptr<Canonicalized> canonicalized(const std::string& group, uint64_t seed, int64_t H = 8) {
  Generator gen(seed + 100);
  return std::make_shared<Canonicalized>(posed_classifier(H, seed), Canonicalized::make_scorer(1, &gen), Group::parse(group));
}

}  // namespace

TEST(Canonicalize, ScoresPermuteWithTheGroup) {
  for (const char* name : {"C4", "D4"}) {
    auto c = canonicalized(name, 1);
    const Group& G = c->group();
    const Tensor x = randn({5, 1, 8, 8}, 2);
    NoGradGuard ng;
    const std::vector<float> s = c->scores(x).to_vector<float>();
    ASSERT_EQ(s.size(), static_cast<size_t>(5 * G.order()));
    for (int64_t h = 0; h < G.order(); ++h) {
      const std::vector<float> sh = c->scores(act(G, h, x, FieldKind::Scalar)).to_vector<float>();
      // score_k(h·x) = s(g_k⁻¹ h x) = score_j(x) with g_j = h⁻¹∘g_k.
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t k = 0; k < G.order(); ++k) {
          const int64_t j = G.compose(G.inverse(h), k);
          ASSERT_EQ(sh[static_cast<size_t>(i * G.order() + k)], s[static_cast<size_t>(i * G.order() + j)])
              << name << " h " << h << " k " << k;
        }
      // Hence the canonical element moves with the input: ĝ(h·x) = h∘ĝ(x).
      const auto e = c->canonical_elements(c->scores(x)), eh = c->canonical_elements(c->scores(act(G, h, x, FieldKind::Scalar)));
      for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(eh[static_cast<size_t>(i)], G.compose(h, e[static_cast<size_t>(i)]));
    }
  }
}

TEST(Canonicalize, CanonicalizedModelIsInvariantAndTheBareOneIsNot) {
  for (const char* name : {"C4", "D4"}) {
    auto c = canonicalized(name, 3);
    const Tensor x = randn({6, 1, 8, 8}, 4);
    NoGradGuard ng;
    const EquivarianceReport bare = check_equivariance([&](const Tensor& t) { return (*c->module())(t); }, c->group(), x,
                                                       FieldKind::Scalar, FieldKind::Invariant);
    EXPECT_GT(bare.mean_error, 1e-3) << name;  // the check can fail
    const EquivarianceReport r = check_equivariance([&](const Tensor& t) { return (*c)(t); }, c->group(), x,
                                                    FieldKind::Scalar, FieldKind::Invariant);
    EXPECT_EQ(r.max_error, 0.0) << name << ": " << r.str();
  }
}

TEST(Canonicalize, PriorTrainsTheScorerAndTheArgmaxPassesNoGradient) {
  auto c = canonicalized("C4", 5);
  const Tensor x = randn({4, 1, 8, 8}, 6);
  const Tensor logits = (*c)(x);
  const Tensor prior = Canonicalized::prior_loss(c->last_scores());
  // The prior is the cross-entropy toward the identity: log|G| when all scores are equal, and here
  // exactly -mean log softmax(scores)[:, 0].
  {
    NoGradGuard ng;
    const std::vector<float> ls = log_softmax(c->last_scores(), 1).to_vector<float>();
    double want = 0;
    for (int64_t i = 0; i < 4; ++i) want -= ls[static_cast<size_t>(i * 4)] / 4.0;
    EXPECT_NEAR(prior.item(), want, 1e-5);
  }
  sum(logits).backward();
  for (const Tensor& p : c->scorer()->parameters()) EXPECT_FALSE(p.grad().defined());  // no gradient through argmax
  for (const Tensor& p : c->module()->parameters()) EXPECT_TRUE(p.grad().defined());
  for (const Tensor& p : c->module()->parameters()) p.zero_grad();
  prior.backward();
  for (const Tensor& p : c->module()->parameters()) EXPECT_FALSE(p.grad().defined());  // the prior is the scorer's
  double g2 = 0;
  for (const Tensor& p : c->scorer()->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    for (float v : p.grad().to_vector<float>()) g2 += static_cast<double>(v) * v;
  }
  EXPECT_GT(g2, 0.0);
}

TEST(Canonicalize, ScorerTrainedWithThePriorFindsThePose) {
  // Upright images: a bright bar along the top rows and a dot in the lower left, with noise. After
  // training the scorer on upright images only, rotating a new image by h must make ĝ = h.
  const int64_t H = 12, N = 32;
  auto make = [&](uint64_t seed) {
    Generator gen(seed);
    Tensor x = mul(Tensor::rand({N, 1, H, H}, &gen), 0.3);
    std::vector<float> v = x.to_vector<float>();
    for (int64_t i = 0; i < N; ++i) {
      const int64_t top = static_cast<int64_t>(gen.randint(3));
      for (int64_t col = 1; col < H - 1; ++col) v[static_cast<size_t>(i * H * H + top * H + col)] += 1.0f;
      v[static_cast<size_t>(i * H * H + (H - 3) * H + 2)] += 1.0f;
    }
    return Tensor::from_vector(v, {N, 1, H, H});
  };
  auto c = canonicalized("C4", 7, H);
  AdamOptions ao;
  ao.lr = 0.01;
  Adam opt(c->scorer()->parameters(), ao);
  for (int step = 0; step < 60; ++step) {
    const Tensor x = make(100 + static_cast<uint64_t>(step));
    opt.zero_grad();
    Canonicalized::prior_loss(c->scores(x)).backward();
    opt.step();
  }
  const Group& G = c->group();
  const Tensor test = make(7);
  NoGradGuard ng;
  int64_t right = 0;
  for (int64_t h = 0; h < G.order(); ++h) {
    const auto e = c->canonical_elements(c->scores(act(G, h, test, FieldKind::Scalar)));
    for (int64_t v : e) right += v == h;
  }
  EXPECT_GE(right, static_cast<int64_t>(0.95 * N * G.order())) << right << " of " << N * G.order();
}

TEST(Canonicalize, BadInput) {
  Generator gen(1);
  expect_error([&] { Canonicalized(nullptr, Canonicalized::make_scorer(1, &gen), Group::parse("C4")); }, {"null module"});
  expect_error([&] { Canonicalized(posed_classifier(8, 1), nullptr, Group::parse("C4")); }, {"null scorer"});
  expect_error([&] { Canonicalized(posed_classifier(8, 1), Canonicalized::make_scorer(1, &gen), Group::parse("C4"), FieldKind::Boxes); },
               {"boxes", "scalar"});
  auto c = canonicalized("C4", 1);
  expect_error([&] { (*c)(randn({2, 8, 8}, 1)); }, {"[N, C, H, W]", "[2, 8, 8]"});
  auto wide = std::make_shared<Canonicalized>(posed_classifier(8, 1), posed_classifier(8, 2), Group::parse("C4"));
  expect_error([&] { (*wide)(randn({2, 1, 8, 8}, 1)); }, {"scorer returned", "[8, 3]", "one score per item"});
  expect_error([&] { c->canonical_elements(randn({2, 3}, 1)); }, {"scores [N, 4]", "[2, 3]"});
  expect_error([&] { Canonicalized::make_scorer(0); }, {"in_channels", "0"});
}

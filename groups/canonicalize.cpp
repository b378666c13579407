#include "groups/canonicalize.h"

#include "engine/error.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "layers/layers.h"

namespace orbit::groups {

Canonicalized::Canonicalized(std::shared_ptr<Module> module, std::shared_ptr<Module> scorer, Group group,
                             FieldKind in_kind)
    : Module("Canonicalized"), module_(std::move(module)), scorer_(std::move(scorer)), group_(std::move(group)),
      in_kind_(in_kind) {
  ORBIT_CHECK(module_ != nullptr, "Canonicalized: received a null module, expected the model to canonicalize for");
  ORBIT_CHECK(scorer_ != nullptr, "Canonicalized: received a null scorer, expected a network rating poses");
  ORBIT_CHECK(in_kind_ == FieldKind::Scalar || in_kind_ == FieldKind::PseudoScalar || in_kind_ == FieldKind::Vector,
              "Canonicalized: received in_kind ", field_kind_name(in_kind_),
              ", expected a field on the image grid (scalar, pseudo_scalar or vector)");
  register_module("module", module_);
  register_module("scorer", scorer_);
}

Tensor Canonicalized::scores(const Tensor& x) {
  ORBIT_CHECK(x.defined() && x.dim() == 4, "Canonicalized: expected images [N, C, H, W], got ",
              x.defined() ? shape_str(x.shape()) : "an undefined tensor");
  const int64_t N = x.size(0), G = group_.order();
  // One pass of the scorer over |G|·N items: rows [k·N, (k+1)·N) hold g_k⁻¹·x.
  std::vector<Tensor> copies;
  copies.reserve(static_cast<size_t>(G));
  for (int64_t k = 0; k < G; ++k) copies.push_back(act(group_, group_.inverse(k), x, in_kind_));
  Tensor s = (*scorer_)(G == 1 ? copies[0] : cat(copies, 0));
  ORBIT_CHECK(s.defined() && s.numel() == G * N && s.size(0) == G * N, "Canonicalized: the scorer returned ",
              s.defined() ? shape_str(s.shape()) : "undefined", " for ", G * N, " items, expected one score per item ([",
              G * N, ", 1] or [", G * N, "])");
  // [G·N] → [G, N] → [N, G]
  return s.reshape({G, N}).transpose(0, 1).contiguous();
}

std::vector<int64_t> Canonicalized::canonical_elements(const Tensor& scores) const {
  ORBIT_CHECK(scores.dim() == 2 && scores.size(1) == group_.order(), "Canonicalized: expected scores [N, ",
              group_.order(), "], got ", shape_str(scores.shape()));
  NoGradGuard ng;
  return argmax(scores.detach(), 1).to_vector<int64_t>();
}

Tensor Canonicalized::forward(const Tensor& x) {
  last_scores_ = scores(x);
  const std::vector<int64_t> best = canonical_elements(last_scores_);
  std::vector<int64_t> undo(best.size());
  for (size_t i = 0; i < best.size(); ++i) undo[i] = group_.inverse(best[i]);
  Tensor xc;
  {
    NoGradGuard ng;  // the pose is chosen, not learned through
    xc = act_per_sample(group_, undo, x.detach(), in_kind_);
  }
  return (*module_)(xc);
}

Tensor Canonicalized::prior_loss(const Tensor& scores) {
  ORBIT_CHECK(scores.dim() == 2, "Canonicalized::prior_loss: expected scores [N, |G|], got ", shape_str(scores.shape()));
  const Tensor identity = Tensor::zeros({scores.size(0)}, DType::I64, scores.device());
  return cross_entropy(scores, identity);
}

std::shared_ptr<Module> Canonicalized::make_scorer(int64_t in_channels, Generator* gen) {
  ORBIT_CHECK(in_channels >= 1, "Canonicalized::make_scorer: expected in_channels >= 1, got ", in_channels);
  auto s = std::make_shared<Sequential>();
  s->push_back(std::make_shared<Conv2d>(in_channels, 8, 3, 2, 1, 1, 1, true, ConvPadding::Zeros, gen));
  s->push_back(std::make_shared<ReLU>());
  s->push_back(std::make_shared<Conv2d>(8, 16, 3, 2, 1, 1, 1, true, ConvPadding::Zeros, gen));
  s->push_back(std::make_shared<ReLU>());
  s->push_back(std::make_shared<AdaptiveAvgPool2d>(4, 4));
  s->push_back(std::make_shared<Flatten>());
  s->push_back(std::make_shared<Linear>(16 * 4 * 4, 1, true, gen));
  return s;
}

std::string Canonicalized::extra_repr() const {
  return str_cat("group=", group_.name(), ", in_kind=", field_kind_name(in_kind_));
}

}  // namespace orbit::groups

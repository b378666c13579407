// Canonicalization (Kaba et al. 2023; with the prior of Mondal et al. 2023): a small scoring network s
// rates every element of the input's orbit, and the wrapped model sees the input brought to the
// best-rated pose:
//
//   score_k(x) = s(g_k⁻¹·x)          k over the group's elements; [N, |G|] in one batched pass of s
//   ĝ(x)       = g_{argmax_k score_k(x)}
//   f_c(x)     = f(ĝ(x)⁻¹·x)
//
// The scores are equivariant by construction (score(h·x) is score(x) with its columns permuted by h),
// so ĝ(h·x) = h·ĝ(x) and f_c is invariant: exactly when the group acts exactly (C_n, D_n with n in
// {1, 2, 4}; ties in the argmax aside), approximately for interpolated rotations. Inference costs one
// pass of f plus |G| passes of the small scorer.
//
// The argmax passes no gradient. The scorer learns from the canonicalization prior: on training images
// in their canonical (upright) pose, the cross-entropy between the scores and the identity element,
// prior_loss(scores()), so that upright inputs keep the pose the pretrained model knows.
// The wrapped model's output must be invariant (class logits); dense outputs would need ρ(ĝ) applied.
#pragma once

#include <memory>
#include <string>

#include "groups/action.h"
#include "layers/module.h"

namespace orbit {
class Generator;
}

namespace orbit::groups {

class Canonicalized : public Module {
 public:
  // Children: "module" (the wrapped model) and "scorer" (input [N, C, H, W] → [N, 1] or [N]).
  Canonicalized(std::shared_ptr<Module> module, std::shared_ptr<Module> scorer, Group group,
                FieldKind in_kind = FieldKind::Scalar);

  // f(ĝ(x)⁻¹·x). Keeps the scores it computed (with their graph when gradients are on): last_scores().
  Tensor forward(const Tensor& x) override;
  // [N, |G|]: column k is s(g_k⁻¹·x).
  Tensor scores(const Tensor& x);
  // The canonical element of each row of a score matrix (argmax; the first on ties).
  std::vector<int64_t> canonical_elements(const Tensor& scores) const;
  const Tensor& last_scores() const { return last_scores_; }
  // Mean cross-entropy between the scores and the identity element (element 0).
  static Tensor prior_loss(const Tensor& scores);

  // The default scorer: conv 3×3 (C→8, stride 2), ReLU, conv 3×3 (8→16, stride 2), ReLU, adaptive
  // average pooling to 4×4 (keeps a coarse layout, so the score sees orientation), linear 256→1.
  static std::shared_ptr<Module> make_scorer(int64_t in_channels, Generator* gen = nullptr);

  const Group& group() const { return group_; }
  std::shared_ptr<Module> module() const { return module_; }
  std::shared_ptr<Module> scorer() const { return scorer_; }
  std::string extra_repr() const override;

 private:
  std::shared_ptr<Module> module_, scorer_;
  Group group_;
  FieldKind in_kind_;
  Tensor last_scores_;
};

}  // namespace orbit::groups

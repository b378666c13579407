// The equivariance regularizer of Orbit's fine-tuning objective
//
//   loss = task_loss(f(x), y) + λ · R(f, x),     R = E_i E_{g} d( f(g·x_i), ρ_out(g)·f(x_i) )
//
// For each item of the batch (or of a random share `item_fraction` of the items, a cheaper unbiased
// estimate), `samples` group elements other than the identity are drawn (or all of them: the whole
// orbit); the original batch and its transformed copies go through the model in one
// forward pass (and so one backward pass), the output of the original items is the task output and
// the reference branch of R.
//
// Discrepancies d (per transformed copy; R is their mean):
//   SquaredL2    mean over the output's elements of (f(g·x) − ρ(g)f(x))²  (logits or fields)
//   KL           KL(p_ref ‖ p_g) = Σ_c p_ref log(p_ref / p_g), softmax over dim 1 (class logits, or
//                per pixel for dense outputs, then averaged over pixels); p_ref from ρ(g)f(x)
//   SymmetricKL  ½ (KL(p_ref ‖ p_g) + KL(p_g ‖ p_ref))
//
// stop_gradient detaches the reference branch ρ(g)f(x): the penalty then pulls f(g·x) towards the
// upright prediction without moving the upright prediction itself ("one-sided"). Without it, both
// branches receive gradients ("two-sided"), which can collapse the outputs as λ grows.
//
// The reference is the upright prediction ρ(g)f(x) (Reference::Upright), or the mean over the item's
// copies brought back to the upright frame (Reference::OrbitMean, a consistency target in the manner of
// AugMix's Jensen-Shannon term): m_i = mean over {x_i} ∪ {its copies g·x_i} of ρ(g)⁻¹ f(g·x_i), averaged
// as probabilities (softmax over dim 1) for the KL forms and as outputs for squared L2. Every copy,
// the original included, is then compared with ρ(g)·m_i, so R is the mean of d over 1 + samples terms
// per item. With the whole orbit, m_i is the equi-tuned (group-averaged) prediction, and the penalty
// distils it into the single pass. The KL forms need outputs whose action leaves channels alone
// (invariant logits, scalar maps).
//
// Feature taps regularize intermediate feature maps too: named submodules of the model (dotted names,
// as in state_dict: "layer3") whose outputs [2N..., C, H, W] are compared with the spatial action on
// the maps of the original items, by squared L2, weighted by tap_weight.
//
// element_weights: a distribution over the non-identity elements other than the uniform one (one
// weight per element 1 … order − 1, in the group's order; empty: uniform), so R = Σ_g w_g E_i d_g / Σ_g w_g.
// With one sampled element per item, the element is drawn with probability w_g / Σ w (an unbiased
// estimate); over the whole orbit, the copies' discrepancies are averaged with the weights, and elements
// of weight 0 are not computed. For example, C8 with the quarter turns weighted 3 and the 45° turns 1
// pulls harder towards C4 invariance while still asking for the 45° turns.
//
// preserve: penalize only the part of the defect above a baseline (the pretrained model's own defect,
// measured once before fine-tuning with measure_defect): R' = max(0, R − baseline). The threshold
// applies to the output's defect; the taps' terms are added after it, in full.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"
#include "groups/action.h"
#include "layers/module.h"

namespace orbit::groups {

enum class Discrepancy { SquaredL2, KL, SymmetricKL };
enum class Reference { Upright, OrbitMean };
// "upright", "orbit_mean"; throws naming the string and listing these.
Reference parse_reference(const std::string& s);
const char* reference_name(Reference r);
// "l2", "kl", "sym_kl"; throws naming the string and listing these.
Discrepancy parse_discrepancy(const std::string& s);
const char* discrepancy_name(Discrepancy d);

// d(y, ref) per item, [N] (differentiable in both). y and ref have the same shape [N, ...]; KL forms
// need dim >= 2 and take the softmax over dim 1.
Tensor discrepancy(const Tensor& y, const Tensor& ref, Discrepancy d);

struct RegularizerOptions {
  Discrepancy discrepancy = Discrepancy::KL;
  int64_t samples = 1;        // elements drawn per item (without replacement); 0: the whole orbit
  double item_fraction = 1.0; // share of the batch's items that get transformed copies, in (0, 1]
  std::vector<double> element_weights;  // per element 1 … order − 1 (see above); empty: uniform
  bool stop_gradient = true;  // detach the reference branch ρ(g)·f(x)
  Reference reference = Reference::Upright;  // what each copy is compared with (see above)
  FieldKind in_kind = FieldKind::Scalar;      // how G acts on the input
  FieldKind out_kind = FieldKind::Invariant;  // how G acts on the output
  std::vector<std::string> taps;  // submodules of `taps_root` whose feature maps are regularized
  double tap_weight = 1.0;
  bool preserve = false;
  double baseline = 0.0;      // preserve: the defect allowed without penalty
};

struct RegularizedOutput {
  Tensor output;                  // f(x) of the original items, [N, ...] (for the task loss)
  Tensor copies;                  // f(g·x) of the transformed copies, [M, ...], in the order of `items`
  Tensor penalty;                 // R (0-d; includes the taps; after the preserve threshold)
  Tensor raw_penalty;             // R before the preserve threshold, without the taps (0-d, no grad)
  std::vector<int64_t> items;     // per transformed copy: the item it came from
  std::vector<int64_t> elements;  // per transformed copy: the group element applied
};

// The elements to apply per item: for each item, `samples` distinct non-identity elements drawn
// uniformly (all of them, in order, when samples == 0 or samples >= order − 1). Returns parallel lists
// (items, elements). A trivial group (order 1) returns empty lists.
// With item_fraction < 1, only round(item_fraction * num_items) items (at least 1), drawn without
// replacement and listed in increasing order, get elements.
// With weights (one per element 1 … order − 1, non-negative, not all 0): samples == 1 draws each item's
// element with probability weight / sum; the whole orbit lists only the elements of positive weight;
// other sample counts are refused.
void draw_elements(const Group& G, int64_t num_items, int64_t samples, Generator& gen,
                   std::vector<int64_t>& items, std::vector<int64_t>& elements, double item_fraction = 1.0,
                   const std::vector<double>& weights = {});

// Checks element weights against the group (their count, signs, sum; the sample count they work
// with); throws naming what was received and what is expected.
void check_element_weights(const Group& G, const std::vector<double>& weights, int64_t samples);

// One forward pass of f over [x; g·x] and the penalty. `f` is the model as a function (it may
// include input normalization); `taps_root` holds the tapped submodules (may be null without taps).
RegularizedOutput regularized_forward(const std::function<Tensor(const Tensor&)>& f, Module* taps_root,
                                      const Group& G, const Tensor& x, const RegularizerOptions& options,
                                      Generator& gen);

// The mean defect E_i E_{g≠e} d(f(g·x_i), ρ(g)f(x_i)) of f on x over the whole orbit, without
// gradients (for the preserve baseline). Taps are not included.
double measure_defect(const std::function<Tensor(const Tensor&)>& f, const Group& G, const Tensor& x,
                      const RegularizerOptions& options);

}  // namespace orbit::groups

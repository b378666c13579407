// Losses and dropout, composed of existing differentiable ops (log_softmax, gather, index_select,
// softplus, clamp, mul, sum ...) so that their gradients come from autograd.
//
// Semantics are PyTorch's (torch.nn.functional), including:
// - nll_loss / cross_entropy with class weights w, ignore_index and mean reduction: per element
//   l_i = -w[y_i] logp[i, y_i] (0 where y_i == ignore_index), mean = sum_i l_i / sum_i w[y_i] over
//   the elements not ignored (NaN when every target is ignored, as PyTorch).
// - cross_entropy with label smoothing e over C classes mixes that loss with a uniform target:
//   loss = (1 - e) nll + (e / C) smooth, with smooth_i = -sum_c w[c] logp[i, c] (0 where ignored),
//   reduced like nll (for mean, also divided by sum_i w[y_i], not by the count or sum of all w[c]).
// - dropout draws its mask on the host from the engine Generator, one uniform draw per element in
//   row-major order (none when !training, p == 0 or p == 1), so a seed reproduces it exactly.
#include <cmath>

#include "engine/op_utils.h"
#include "engine/random.h"

namespace orbit {

using namespace detail;

namespace {

Tensor reduce_loss(const Tensor& l, Reduction reduction) {
  switch (reduction) {
    case Reduction::None: return l;
    case Reduction::Sum: return sum(l);
    case Reduction::Mean:
      // 1/0 = inf makes an empty mean NaN, as PyTorch.
      return mul(sum(l), 1.0 / static_cast<double>(l.numel()));
  }
  return l;
}

// True when `from` broadcasts to exactly `to` (NumPy rules, without growing `to`).
bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  const size_t lead = to.size() - from.size();
  for (size_t d = 0; d < from.size(); ++d)
    if (from[d] != 1 && from[d] != to[lead + d]) return false;
  return true;
}

// Validated class-index targets of nll_loss / cross_entropy, in the batched layout
// input [N, C, d1, ...], target [N, d1, ...].
struct ClassTargets {
  Tensor input;     // the input, [C] promoted to [1, C]
  Tensor safe;      // int64 target with ignored entries replaced by class 0 (safe to gather)
  Tensor mask;      // 1 where the target counts, 0 where it equals ignore_index (input's dtype)
  Tensor coef;      // w[y] * mask (mask alone without weights): the per-element loss weight
  Shape out_shape;  // shape of the unreduced loss (the caller's target shape)
  int64_t C = 0;
};

ClassTargets class_targets(const char* op, const Tensor& input, const Tensor& target,
                           const Tensor& weight, int64_t ignore_index) {
  check_defined(input, op, "input");
  check_defined(target, op, "target");
  check_floating(input, op);
  ORBIT_CHECK(target.dtype() == DType::I64, op, ": expected int64 class indices as the target, got a ",
              dtype_name(target.dtype()), " tensor of shape ", shape_str(target.shape()),
              " (class probabilities are not supported; convert labels with .to(DType::I64))");
  ORBIT_CHECK(target.device() == input.device(), op, ": target is on ", target.device().str(),
              " but the input is on ", input.device().str());
  ORBIT_CHECK(input.dim() >= 1, op, ": expected an input [C], [N, C] or [N, C, d1, ...], got a 0-d tensor");
  ClassTargets t;
  t.out_shape = target.shape();
  // Unbatched [C] input with a 0-d target.
  if (input.dim() == 1) {
    ORBIT_CHECK(target.dim() == 0, op, ": an input of shape ", shape_str(input.shape()),
                " expects a 0-d target, got shape ", shape_str(target.shape()));
  } else {
    Shape expect = input.shape();
    expect.erase(expect.begin() + 1);
    ORBIT_CHECK(target.shape() == expect, op, ": target shape ", shape_str(target.shape()),
                " does not match the input ", shape_str(input.shape()), " (expected ",
                shape_str(expect), ": the input without its class dim 1)");
  }
  t.input = input.dim() == 1 ? input.unsqueeze(0) : input;
  const Tensor tgt = input.dim() == 1 ? target.reshape({1}) : target;
  t.C = t.input.shape()[1];
  if (weight.defined()) {
    check_same(input, weight, op);
    ORBIT_CHECK(weight.shape() == Shape({t.C}), op, ": class weights must have shape [", t.C,
                "] (one per class), got ", shape_str(weight.shape()));
  }
  const std::vector<int64_t> values = tgt.to_vector<int64_t>();
  std::vector<int64_t> safe(values.size());
  std::vector<double> mask(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const int64_t v = values[i];
    const bool ignored = v == ignore_index;
    ORBIT_CHECK(ignored || (v >= 0 && v < t.C), op, ": target ", v, " is out of range for ", t.C,
                " classes (valid range [0, ", t.C, "), or ignore_index = ", ignore_index, ")");
    safe[i] = ignored ? 0 : v;
    mask[i] = ignored ? 0.0 : 1.0;
  }
  t.safe = Tensor::from_vector(safe, tgt.shape()).to(input.device());
  t.mask = Tensor::from_vector(mask, tgt.shape()).to(input.dtype()).to(input.device());
  t.coef = t.mask;
  if (weight.defined())
    t.coef = mul(index_select(weight, 0, t.safe.reshape({t.safe.numel()})).reshape(tgt.shape()), t.mask);
  return t;
}

// The weighted negative log-likelihood of log-probabilities logp [N, C, ...] (reduced).
Tensor nll_from(const ClassTargets& t, const Tensor& logp, Reduction reduction) {
  const Tensor picked = gather(logp, 1, t.safe.unsqueeze(1)).squeeze(1);  // logp[i, y_i, ...]
  const Tensor l = neg(mul(picked, t.coef));
  switch (reduction) {
    case Reduction::None: return l.reshape(t.out_shape);
    case Reduction::Sum: return sum(l);
    case Reduction::Mean: return div(sum(l), sum(t.coef));
  }
  return l;
}

}  // namespace

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const Tensor& weight,
                Reduction reduction, int64_t ignore_index) {
  const ClassTargets t = class_targets("nll_loss", log_probs, target, weight, ignore_index);
  return nll_from(t, t.input, reduction);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& weight,
                     Reduction reduction, double label_smoothing, int64_t ignore_index) {
  ORBIT_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "cross_entropy: label_smoothing must lie in [0, 1], got ", label_smoothing);
  const ClassTargets t = class_targets("cross_entropy", logits, target, weight, ignore_index);
  const Tensor logp = log_softmax(t.input, 1);
  const Tensor nll = nll_from(t, logp, reduction);
  if (label_smoothing == 0.0) return nll;
  // smooth_i = -sum_c w[c] logp[i, c], zero where the target is ignored.
  Tensor weighted = logp;
  if (weight.defined()) {
    Shape wshape(logp.dim(), 1);
    wshape[1] = t.C;
    weighted = mul(logp, weight.reshape(wshape));
  }
  Tensor smooth = mul(neg(sum(weighted, {1})), t.mask);
  switch (reduction) {
    case Reduction::None: smooth = smooth.reshape(t.out_shape); break;
    case Reduction::Sum: smooth = sum(smooth); break;
    case Reduction::Mean: smooth = div(sum(smooth), sum(t.coef)); break;
  }
  return add(mul(nll, 1.0 - label_smoothing), mul(smooth, label_smoothing / static_cast<double>(t.C)));
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  check_same(input, target, "mse_loss");
  check_floating(input, "mse_loss");
  ORBIT_CHECK(input.shape() == target.shape(), "mse_loss: input ", shape_str(input.shape()),
              " and target ", shape_str(target.shape()), " must have the same shape");
  return reduce_loss(square(sub(input, target)), reduction);
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction, double beta) {
  check_same(input, target, "smooth_l1_loss");
  check_floating(input, "smooth_l1_loss");
  ORBIT_CHECK(input.shape() == target.shape(), "smooth_l1_loss: input ", shape_str(input.shape()),
              " and target ", shape_str(target.shape()), " must have the same shape");
  ORBIT_CHECK(beta >= 0.0, "smooth_l1_loss: beta must be >= 0, got ", beta);
  const Tensor a = abs(sub(input, target));
  if (beta == 0.0) return reduce_loss(a, reduction);  // the L1 loss
  // With m = min(|d|, beta): 0.5 m^2 / beta + (|d| - m) is 0.5 d^2 / beta below beta and
  // |d| - 0.5 beta above, with the gradient d / beta resp. sign(d) (continuous at |d| = beta).
  const Tensor m = clamp_max(a, beta);
  return reduce_loss(add(mul(square(m), 0.5 / beta), sub(a, m)), reduction);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const Tensor& weight, Reduction reduction,
                                        const Tensor& pos_weight) {
  const char* op = "binary_cross_entropy_with_logits";
  check_same(logits, target, op);
  check_floating(logits, op);
  ORBIT_CHECK(logits.shape() == target.shape(), op, ": target ", shape_str(target.shape()),
              " must have the same shape as the logits ", shape_str(logits.shape()));
  for (const auto& [w, name] : {std::pair<const Tensor&, const char*>{weight, "weight"},
                                {pos_weight, "pos_weight"}}) {
    if (!w.defined()) continue;
    check_same(logits, w, op);
    ORBIT_CHECK(broadcasts_to(w.shape(), logits.shape()), op, ": ", name,
                " ", shape_str(w.shape()), " does not broadcast to the logits ",
                shape_str(logits.shape()));
  }
  // -[p t log s(x) + (1 - t) log(1 - s(x))] with the positive weight p, written with
  // log s(x) = -softplus(-x) and log(1 - s(x)) = -x - softplus(-x):
  //   (1 - t) x + (1 + (p - 1) t) softplus(-x),
  // where softplus is evaluated without overflow for large |x|.
  const Tensor sp = softplus(neg(logits));
  Tensor loss;
  if (pos_weight.defined())
    loss = add(mul(affine(target, -1.0, 1.0), logits), mul(add(mul(add(pos_weight, -1.0), target), 1.0), sp));
  else
    loss = add(mul(affine(target, -1.0, 1.0), logits), sp);
  if (weight.defined()) loss = mul(loss, weight);
  return reduce_loss(loss, reduction);
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  check_defined(x, "dropout", "x");
  check_floating(x, "dropout");
  ORBIT_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability p must lie in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, Tensor::zeros({}, x.dtype(), x.device()));
  // Inverted dropout: keep with probability 1 - p and scale by 1 / (1 - p), so that the expected
  // value is unchanged and evaluation needs no rescaling.
  Generator& g = gen ? *gen : default_generator();
  const double scale = 1.0 / (1.0 - p);
  std::vector<double> mask(x.numel());
  for (double& m : mask) m = g.next_double() < p ? 0.0 : scale;
  const Tensor mk = Tensor::from_vector(mask, x.shape()).to(x.dtype()).to(x.device());
  return mul(x, mk);  // backward: g * mask
}

}  // namespace orbit

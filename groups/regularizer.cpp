#include "groups/regularizer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "engine/error.h"
#include "engine/ops.h"

namespace orbit::groups {

Discrepancy parse_discrepancy(const std::string& s) {
  if (s == "l2") return Discrepancy::SquaredL2;
  if (s == "kl") return Discrepancy::KL;
  if (s == "sym_kl") return Discrepancy::SymmetricKL;
  throw Error(str_cat("unknown discrepancy \"", s, "\"; expected one of \"l2\", \"kl\", \"sym_kl\""));
}

const char* discrepancy_name(Discrepancy d) {
  switch (d) {
    case Discrepancy::SquaredL2: return "l2";
    case Discrepancy::KL: return "kl";
    case Discrepancy::SymmetricKL: return "sym_kl";
  }
  return "?";
}

Reference parse_reference(const std::string& s) {
  if (s == "upright") return Reference::Upright;
  if (s == "orbit_mean") return Reference::OrbitMean;
  throw Error(str_cat("unknown regularizer reference \"", s, "\"; expected one of \"upright\", \"orbit_mean\""));
}

const char* reference_name(Reference r) { return r == Reference::Upright ? "upright" : "orbit_mean"; }

namespace {

// Mean over every dim but the first: [N, ...] -> [N].
Tensor mean_per_item(const Tensor& t) {
  if (t.dim() == 1) return t;
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < t.dim(); ++d) dims.push_back(d);
  return mean(t, dims);
}

// KL(p ‖ q) per item with p = softmax(a), q = softmax(b) over dim 1, summed over dim 1 and averaged
// over the remaining (spatial) dims.
Tensor kl_per_item(const Tensor& a, const Tensor& b) {
  const Tensor log_p = log_softmax(a, 1), log_q = log_softmax(b, 1);
  const Tensor terms = mul(exp(log_p), sub(log_p, log_q));
  const Tensor per_position = sum(terms, {1});  // [N, ...spatial]
  return mean_per_item(per_position);
}

}  // namespace

namespace {

// The penalty against the orbit mean (Reference::OrbitMean): see the header. draw_elements lists the
// copies item by item, the same number per item, so the copies of the k-th chosen item are rows
// [k·s, (k+1)·s) of out_g.
Tensor orbit_mean_penalty(const Group& G, const RegularizedOutput& r, const Tensor& out_g, const RegularizerOptions& o) {
  const bool kl = o.discrepancy != Discrepancy::SquaredL2;
  ORBIT_CHECK(!kl || o.out_kind == FieldKind::Invariant || o.out_kind == FieldKind::Scalar,
              "regularizer: the orbit-mean reference with the discrepancy \"", discrepancy_name(o.discrepancy),
              "\" needs outputs whose action leaves the channels alone (invariant or scalar), got \"",
              field_kind_name(o.out_kind), "\"; use \"l2\" or the upright reference");
  const int64_t M = out_g.size(0);
  std::vector<int64_t> chosen, slot(r.items.size());
  for (size_t k = 0; k < r.items.size(); ++k) {
    if (chosen.empty() || chosen.back() != r.items[k]) chosen.push_back(r.items[k]);
    slot[k] = static_cast<int64_t>(chosen.size()) - 1;
  }
  const int64_t m = static_cast<int64_t>(chosen.size()), s = M / m;
  ORBIT_CHECK(s * m == M, "regularizer: expected the same number of copies per item, got ", M, " copies of ", m, " items");
  std::vector<int64_t> inverses(r.elements.size());
  for (size_t k = 0; k < r.elements.size(); ++k) inverses[k] = G.inverse(r.elements[k]);
  const Device dev = out_g.device();
  const Tensor chosen_index = Tensor::from_vector(chosen, {m}).to(dev);
  const Tensor slot_index = Tensor::from_vector(slot, {M}).to(dev);

  const Tensor upright = index_select(r.output, 0, chosen_index);             // [m, ...]
  const Tensor back = act_per_sample(G, inverses, out_g, o.out_kind);         // copies in the upright frame
  auto space = [&](const Tensor& y) { return kl ? softmax(y, 1) : y; };       // what is averaged
  Shape grouped = back.shape();
  grouped[0] = s;
  grouped.insert(grouped.begin(), m);                                          // [m, s, ...]
  Tensor avg = mul(add(sum(space(back).reshape(grouped), {1}), space(upright)), 1.0 / static_cast<double>(s + 1));
  if (kl) avg = log(clamp_min(avg, 1e-30));                                   // logits whose softmax is the mean
  if (o.stop_gradient) avg = avg.detach();
  const Tensor ref_g = act_per_sample(G, r.elements, index_select(avg, 0, slot_index), o.out_kind);
  return mean(cat({discrepancy(upright, avg, o.discrepancy), discrepancy(out_g, ref_g, o.discrepancy)}, 0));
}

}  // namespace

Tensor discrepancy(const Tensor& y, const Tensor& ref, Discrepancy d) {
  ORBIT_CHECK(y.shape() == ref.shape(), "discrepancy: the two outputs must have the same shape, got ",
              shape_str(y.shape()), " and ", shape_str(ref.shape()));
  ORBIT_CHECK(y.dim() >= 1, "discrepancy: expected outputs [N, ...], got ", shape_str(y.shape()));
  switch (d) {
    case Discrepancy::SquaredL2: return mean_per_item(square(sub(y, ref)));
    case Discrepancy::KL:
      ORBIT_CHECK(y.dim() >= 2, "discrepancy: KL needs outputs [N, C, ...] (softmax over dim 1), got ",
                  shape_str(y.shape()));
      return kl_per_item(ref, y);
    case Discrepancy::SymmetricKL:
      ORBIT_CHECK(y.dim() >= 2, "discrepancy: sym_kl needs outputs [N, C, ...] (softmax over dim 1), got ",
                  shape_str(y.shape()));
      return mul(add(kl_per_item(ref, y), kl_per_item(y, ref)), 0.5);
  }
  throw Error("discrepancy: unknown kind");
}

void check_element_weights(const Group& G, const std::vector<double>& weights, int64_t samples) {
  if (weights.empty()) return;
  const int64_t others = G.order() - 1;
  std::string names;
  for (int64_t g = 1; g <= others; ++g) names += (g > 1 ? ", " : "") + G.element_name(g);
  ORBIT_CHECK(static_cast<int64_t>(weights.size()) == others, "regularizer: element_weights: expected one weight per "
              "non-identity element of ", G.name(), " (", others, ": ", names, "), got ", weights.size());
  double sum = 0;
  for (double w : weights) {
    ORBIT_CHECK(std::isfinite(w) && w >= 0, "regularizer: element_weights: expected finite weights >= 0, got ", w);
    sum += w;
  }
  ORBIT_CHECK(sum > 0, "regularizer: element_weights: every weight is 0; at least one element must have a positive weight");
  ORBIT_CHECK(samples == 0 || samples == 1 || samples >= others, "regularizer: element_weights work with samples 1 "
              "(one element drawn by weight) or 0 (the whole orbit, weighted), got samples ", samples);
}

void draw_elements(const Group& G, int64_t num_items, int64_t samples, Generator& gen,
                   std::vector<int64_t>& items, std::vector<int64_t>& elements, double item_fraction,
                   const std::vector<double>& weights) {
  ORBIT_CHECK(samples >= 0, "regularizer: samples must be >= 0 (0 = the whole orbit), got ", samples);
  ORBIT_CHECK(item_fraction > 0 && item_fraction <= 1, "regularizer: item_fraction must be in (0, 1], got ", item_fraction);
  check_element_weights(G, weights, samples);
  items.clear();
  elements.clear();
  const int64_t others = G.order() - 1;
  if (others == 0) return;
  const bool whole = samples == 0 || samples >= others;
  // With weights: the elements of positive weight, and their cumulative weights for the draws.
  std::vector<int64_t> positive;
  std::vector<double> cumulative;
  for (size_t k = 0; k < weights.size(); ++k)
    if (weights[k] > 0) {
      positive.push_back(static_cast<int64_t>(k) + 1);
      cumulative.push_back((cumulative.empty() ? 0.0 : cumulative.back()) + weights[k]);
    }
  std::vector<int64_t> chosen;
  if (item_fraction < 1.0) {
    const int64_t m = std::max<int64_t>(1, std::llround(item_fraction * num_items));
    std::vector<int64_t> perm = gen.permutation(num_items);
    chosen.assign(perm.begin(), perm.begin() + std::min(m, num_items));
    std::sort(chosen.begin(), chosen.end());
  } else {
    for (int64_t i = 0; i < num_items; ++i) chosen.push_back(i);
  }
  for (int64_t i : chosen) {
    if (whole) {
      if (weights.empty())
        for (int64_t g = 1; g <= others; ++g) items.push_back(i), elements.push_back(g);
      else
        for (int64_t g : positive) items.push_back(i), elements.push_back(g);
      continue;
    }
    if (!weights.empty()) {  // samples == 1: the first element whose cumulative weight exceeds u · sum
      const double u = gen.next_double() * cumulative.back();
      const size_t k = std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin();
      items.push_back(i);
      elements.push_back(positive[std::min(k, positive.size() - 1)]);
      continue;
    }
    // `samples` distinct elements from {1, ..., others}: a partial Fisher-Yates shuffle.
    std::vector<int64_t> pool(others);
    for (int64_t k = 0; k < others; ++k) pool[k] = k + 1;
    for (int64_t k = 0; k < samples; ++k) {
      const int64_t j = k + gen.randint(others - k);
      std::swap(pool[k], pool[j]);
      items.push_back(i);
      elements.push_back(pool[k]);
    }
  }
}

RegularizedOutput regularized_forward(const std::function<Tensor(const Tensor&)>& f, Module* taps_root,
                                      const Group& G, const Tensor& x, const RegularizerOptions& o,
                                      Generator& gen) {
  ORBIT_CHECK(x.dim() >= 1 && x.size(0) > 0, "regularizer: expected a non-empty batch [N, ...], got ",
              shape_str(x.shape()));
  ORBIT_CHECK(o.tap_weight >= 0, "regularizer: tap_weight must be >= 0, got ", o.tap_weight);
  ORBIT_CHECK(o.taps.empty() || taps_root != nullptr, "regularizer: feature taps need the model (taps_root)");
  const int64_t N = x.size(0);
  RegularizedOutput r;
  ORBIT_CHECK(o.element_weights.empty() || o.reference == Reference::Upright,
              "regularizer: element_weights work with the upright reference, not \"", reference_name(o.reference), "\"");
  draw_elements(G, N, o.samples, gen, r.items, r.elements, o.item_fraction, o.element_weights);
  if (r.items.empty()) {  // trivial group: nothing to compare
    r.output = f(x);
    r.penalty = Tensor::zeros({}, r.output.dtype(), r.output.device());
    r.raw_penalty = r.penalty;
    return r;
  }
  const Tensor index = Tensor::from_vector(r.items, {static_cast<int64_t>(r.items.size())}).to(x.device());
  const Tensor transformed = act_per_sample(G, r.elements, index_select(x, 0, index), o.in_kind);

  // Tap the requested feature maps during the joint forward.
  std::map<std::string, Tensor> tapped;
  std::vector<std::unique_ptr<ForwardHookGuard>> guards;
  for (const std::string& name : o.taps) {
    std::shared_ptr<Module> m = taps_root->submodule(name);
    guards.push_back(std::make_unique<ForwardHookGuard>(
        m, [&tapped, name](Module&, const Tensor&, const Tensor& out) { tapped[name] = out; }));
  }
  const Tensor joint = f(cat({x, transformed}, 0));
  guards.clear();
  const int64_t M = joint.size(0) - N;
  r.output = joint.narrow(0, 0, N);
  const Tensor out_g = joint.narrow(0, N, M);
  r.copies = out_g;

  auto reference_of = [&](const Tensor& y, FieldKind kind) {
    Tensor ref = act_per_sample(G, r.elements, index_select(y, 0, index), kind);
    return o.stop_gradient ? ref.detach() : ref;
  };
  Tensor R;
  if (o.reference == Reference::Upright) {
    const Tensor d = discrepancy(out_g, reference_of(r.output, o.out_kind), o.discrepancy);
    const bool whole = o.samples == 0 || o.samples >= G.order() - 1;
    if (o.element_weights.empty() || !whole) {
      R = mean(d);  // uniform, or drawn by weight: the plain mean is the estimate
    } else {
      // The whole orbit by weight: Σ_k w_k d_k / Σ_k w_k over the copies (every item has the same set).
      std::vector<double> w(r.elements.size());
      double total = 0;
      for (size_t k = 0; k < w.size(); ++k) total += (w[k] = o.element_weights[r.elements[k] - 1]);
      for (double& v : w) v /= total;
      R = sum(mul(d, Tensor::from_vector(w, {static_cast<int64_t>(w.size())}).to(d.dtype()).to(d.device())));
    }
  } else {
    R = orbit_mean_penalty(G, r, out_g, o);
  }
  {
    NoGradGuard ng;
    r.raw_penalty = R.detach().clone();
  }
  if (o.preserve) R = relu(add(R, -o.baseline));
  for (const std::string& name : o.taps) {
    auto it = tapped.find(name);
    ORBIT_CHECK(it != tapped.end(), "regularizer: the tap \"", name, "\" produced no output during the forward pass");
    const Tensor& t = it->second;
    ORBIT_CHECK(t.dim() == 4 && t.size(0) == N + M, "regularizer: the tap \"", name,
                "\" must output feature maps [", N + M, ", C, H, W], got ", shape_str(t.shape()));
    const Tensor ref = reference_of(t.narrow(0, 0, N), FieldKind::Scalar);
    R = add(R, mul(mean(discrepancy(t.narrow(0, N, M), ref, Discrepancy::SquaredL2)), o.tap_weight));
  }
  r.penalty = R;
  return r;
}

double measure_defect(const std::function<Tensor(const Tensor&)>& f, const Group& G, const Tensor& x,
                      const RegularizerOptions& options) {
  NoGradGuard ng;
  RegularizerOptions o = options;
  o.samples = 0;
  o.taps.clear();
  o.preserve = false;
  Generator gen(0);
  return regularized_forward(f, nullptr, G, x, o, gen).raw_penalty.item();
}

}  // namespace orbit::groups

// Optimizers (SGD, Adam, AdamW), their checkpoint state, and gradient clipping.
#include "train/optim.h"

#include <cmath>
#include <limits>
#include <unordered_set>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace orbit {

namespace {

// The options a ParamGroup can carry, by the names used in OptimizerState and error messages.
// (Templates so that a const group gives const pointers.)
template <class G>
auto number_option(G& g, const std::string& name) -> decltype(&g.lr) {
  if (name == "lr") return &g.lr;
  if (name == "weight_decay") return &g.weight_decay;
  if (name == "momentum") return &g.momentum;
  if (name == "dampening") return &g.dampening;
  if (name == "beta1") return &g.beta1;
  if (name == "beta2") return &g.beta2;
  if (name == "eps") return &g.eps;
  if (name == "initial_lr") return &g.initial_lr;
  return nullptr;
}
template <class G>
auto bool_option(G& g, const std::string& name) -> decltype(&g.nesterov) {
  if (name == "nesterov") return &g.nesterov;
  if (name == "amsgrad") return &g.amsgrad;
  if (name == "maximize") return &g.maximize;
  return nullptr;
}

std::string group_label(const ParamGroup& g, size_t index) {
  return g.name.empty() ? str_cat("param group ", index) : str_cat("param group ", index, " ('", g.name, "')");
}

Tensor zeros_like(const Tensor& t) { return Tensor::zeros(t.shape(), t.dtype(), t.device()); }

}  // namespace

// ====================================================================== Optimizer

Optimizer::Optimizer(std::string kind, ParamGroup defaults) : kind_(std::move(kind)), defaults_(std::move(defaults)) {}

void Optimizer::init_groups(std::vector<ParamGroup> groups) {
  ORBIT_CHECK(!groups.empty(), kind_, ": optimizer got an empty parameter list");
  // Validate the defaults themselves first, so a bad constructor argument is reported as such.
  validate(defaults_, "options");
  for (auto& g : groups) add_param_group(std::move(g));
}

void Optimizer::resolve(ParamGroup& g, size_t index) const {
  for (const auto& name : option_names()) {
    if (auto* dst = number_option(g, name)) {
      if (!*dst) *dst = *number_option(defaults_, name);
    } else if (auto* dstb = bool_option(g, name)) {
      if (!*dstb) *dstb = *bool_option(defaults_, name);
    }
  }
  validate(g, group_label(g, index));
}

void Optimizer::add_param_group(ParamGroup group) {
  const size_t index = groups_.size();
  ORBIT_CHECK(!group.params.empty(), kind_, ": ", group_label(group, index), " has an empty parameter list");
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& g : groups_)
    for (const auto& p : g.params) seen.insert(p.impl_ptr().get());
  for (size_t i = 0; i < group.params.size(); ++i) {
    const Tensor& p = group.params[i];
    ORBIT_CHECK(p.defined(), kind_, ": ", group_label(group, index), ": parameter ", i, " is undefined");
    ORBIT_CHECK(is_floating(p.dtype()), kind_, ": ", group_label(group, index), ": parameter ", i,
                " is ", dtype_name(p.dtype()), "; only floating tensors can be optimized");
    ORBIT_CHECK(p.is_leaf(), kind_, ": ", group_label(group, index), ": parameter ", i,
                " is not a leaf tensor (it was computed by an op); can't optimize a non-leaf Tensor");
    ORBIT_CHECK(seen.insert(p.impl_ptr().get()).second, kind_, ": ", group_label(group, index), ": parameter ",
                i, " appears twice (some parameters appear in more than one parameter group)");
  }
  resolve(group, index);
  state_.emplace_back(group.params.size());
  groups_.push_back(std::move(group));
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& g : groups_)
    for (auto& p : g.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (set_to_none) {
        p.zero_grad();
      } else {
        grad.zero_();
      }
    }
}

double Optimizer::lr(size_t group) const {
  ORBIT_CHECK(group < groups_.size(), kind_, ": lr: group ", group, " out of range (", groups_.size(), " groups)");
  return *groups_[group].lr;
}

void Optimizer::set_lr(size_t group, double lr) {
  ORBIT_CHECK(group < groups_.size(), kind_, ": set_lr: group ", group, " out of range (", groups_.size(),
              " groups)");
  ORBIT_CHECK(lr >= 0, kind_, ": set_lr: invalid lr ", lr, " (expected >= 0)");
  groups_[group].lr = lr;
}

void Optimizer::set_lr(double lr) {
  for (size_t g = 0; g < groups_.size(); ++g) set_lr(g, lr);
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState st;
  st.kind = kind_;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const std::string prefix = str_cat("param_groups.", gi, ".");
    for (const auto& name : option_names()) {
      if (auto* v = number_option(g, name)) st.scalars.insert(prefix + name, v->value());
      else if (auto* b = bool_option(g, name)) st.scalars.insert(prefix + name, b->value() ? 1.0 : 0.0);
    }
    if (g.initial_lr) st.scalars.insert(prefix + "initial_lr", *g.initial_lr);
    st.scalars.insert(prefix + "num_params", static_cast<double>(g.params.size()));
  }
  NoGradGuard ng;
  size_t index = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    for (size_t j = 0; j < groups_[gi].params.size(); ++j, ++index) {
      const ParamState& ps = state_[gi][j];
      if (ps.step == 0 && ps.buffers.empty()) continue;
      const std::string prefix = str_cat("state.", index, ".");
      st.scalars.insert(prefix + "step", static_cast<double>(ps.step));
      for (const auto& [name, t] : ps.buffers) st.tensors.insert(prefix + name, t.clone());
    }
  return st;
}

void Optimizer::load_state_dict(const OptimizerState& st) {
  ORBIT_CHECK(st.kind == kind_, kind_, ": load_state_dict: the state was saved by a '", st.kind,
              "' optimizer, this one is '", kind_, "'");
  size_t n_groups = 0;
  while (st.scalars.contains(str_cat("param_groups.", n_groups, ".num_params"))) ++n_groups;
  ORBIT_CHECK(n_groups == groups_.size(), kind_, ": load_state_dict: the state has ", n_groups,
              " parameter groups, the optimizer has ", groups_.size());

  // Build everything first, so a bad state leaves the optimizer unchanged.
  std::vector<ParamGroup> groups = groups_;
  std::vector<const Tensor*> flat;
  std::vector<std::pair<size_t, size_t>> where;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const std::string prefix = str_cat("param_groups.", gi, ".");
    const double n = st.scalars.at(prefix + "num_params");
    ORBIT_CHECK(n == static_cast<double>(groups[gi].params.size()), kind_, ": load_state_dict: ",
                group_label(groups[gi], gi), " has ", groups[gi].params.size(), " parameters, the state has ", n);
    for (const auto& name : option_names()) {
      const double* v = st.scalars.find(prefix + name);
      ORBIT_CHECK(v != nullptr, kind_, ": load_state_dict: the state lacks '", prefix + name, "'");
      if (auto* dst = number_option(groups[gi], name)) *dst = *v;
      else if (auto* b = bool_option(groups[gi], name)) *b = *v != 0.0;
    }
    if (const double* v = st.scalars.find(prefix + "initial_lr")) groups[gi].initial_lr = *v;
    validate(groups[gi], group_label(groups[gi], gi));
    for (size_t j = 0; j < groups[gi].params.size(); ++j) {
      flat.push_back(&groups[gi].params[j]);
      where.emplace_back(gi, j);
    }
  }

  // "state.<i>.<name>" -> (i, name)
  auto parse = [&](const std::string& key, size_t& index, std::string& field) {
    ORBIT_CHECK(key.rfind("state.", 0) == 0, kind_, ": load_state_dict: unexpected key '", key, "'");
    const size_t dot = key.find('.', 6);
    ORBIT_CHECK(dot != std::string::npos && dot > 6, kind_, ": load_state_dict: malformed key '", key, "'");
    const std::string num = key.substr(6, dot - 6);
    ORBIT_CHECK(num.find_first_not_of("0123456789") == std::string::npos, kind_,
                ": load_state_dict: malformed key '", key, "'");
    index = std::stoul(num);
    field = key.substr(dot + 1);
    ORBIT_CHECK(index < flat.size(), kind_, ": load_state_dict: '", key, "' refers to parameter ", index,
                ", but the optimizer has ", flat.size(), " parameters");
  };

  std::vector<std::vector<ParamState>> state(groups.size());
  for (size_t gi = 0; gi < groups.size(); ++gi) state[gi].resize(groups[gi].params.size());
  for (const auto& [key, value] : st.scalars) {
    if (key.rfind("param_groups.", 0) == 0) continue;
    size_t index;
    std::string field;
    parse(key, index, field);
    ORBIT_CHECK(field == "step", kind_, ": load_state_dict: unexpected scalar '", key, "'");
    ORBIT_CHECK(value >= 0 && value == std::floor(value), kind_, ": load_state_dict: '", key,
                "' must be a non-negative integer, got ", value);
    state[where[index].first][where[index].second].step = static_cast<int64_t>(value);
  }
  NoGradGuard ng;
  for (const auto& [key, t] : st.tensors) {
    size_t index;
    std::string field;
    parse(key, index, field);
    const Tensor& p = *flat[index];
    ORBIT_CHECK(t.defined() && t.shape() == p.shape(), kind_, ": load_state_dict: '", key, "' has shape ",
                t.defined() ? shape_str(t.shape()) : std::string("(undefined)"), ", but parameter ", index,
                " has shape ", shape_str(p.shape()));
    // Stored in the parameter's dtype and device, as torch.optim casts its state on load.
    Tensor copy = zeros_like(p);
    copy.copy_(t);
    state[where[index].first][where[index].second].buffers.set(field, copy);
  }
  groups_ = std::move(groups);
  state_ = std::move(state);
}

// ====================================================================== SGD

namespace {
ParamGroup sgd_defaults(const SGDOptions& o) {
  ParamGroup d;
  d.lr = o.lr;
  d.momentum = o.momentum;
  d.dampening = o.dampening;
  d.weight_decay = o.weight_decay;
  d.nesterov = o.nesterov;
  d.maximize = o.maximize;
  return d;
}
}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options) : SGD(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions defaults) : Optimizer("SGD", sgd_defaults(defaults)) {
  init_groups(std::move(groups));
}

std::vector<std::string> SGD::option_names() const {
  return {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"};
}

void SGD::validate(const ParamGroup& g, const std::string& where) const {
  ORBIT_CHECK(*g.lr >= 0, "SGD (", where, "): invalid lr ", *g.lr, " (expected >= 0)");
  ORBIT_CHECK(*g.momentum >= 0, "SGD (", where, "): invalid momentum ", *g.momentum, " (expected >= 0)");
  ORBIT_CHECK(*g.weight_decay >= 0, "SGD (", where, "): invalid weight_decay ", *g.weight_decay,
              " (expected >= 0)");
  ORBIT_CHECK(!*g.nesterov || (*g.momentum > 0 && *g.dampening == 0), "SGD (", where,
              "): nesterov=true requires momentum > 0 and dampening = 0, got momentum ", *g.momentum,
              " and dampening ", *g.dampening);
}

void SGD::step() {
  NoGradGuard ng;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const double lr = *g.lr, momentum = *g.momentum, dampening = *g.dampening, wd = *g.weight_decay;
    for (size_t j = 0; j < g.params.size(); ++j) {
      Tensor p = g.params[j];
      const Tensor grad = p.grad();
      if (!grad.defined()) continue;
      ParamState& st = state_[gi][j];
      Tensor d = *g.maximize ? neg(grad) : grad;
      if (wd != 0) d = add(d, mul(p.detach(), wd));
      if (momentum != 0) {
        Tensor* buf = st.buffers.find("momentum_buffer");
        if (!buf) {
          buf = &st.buffers.insert("momentum_buffer", d.clone());  // the first buffer is the gradient itself
        } else {
          buf->mul_(momentum).add_(d, 1.0 - dampening);
        }
        d = *g.nesterov ? add(d, mul(*buf, momentum)) : *buf;
      }
      p.add_(d, -lr);
      ++st.step;
    }
  }
}

// ====================================================================== Adam / AdamW

namespace {
ParamGroup adam_defaults(const AdamOptions& o) {
  ParamGroup d;
  d.lr = o.lr;
  d.beta1 = o.beta1;
  d.beta2 = o.beta2;
  d.eps = o.eps;
  d.weight_decay = o.weight_decay;
  d.amsgrad = o.amsgrad;
  d.maximize = o.maximize;
  return d;
}
}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam("Adam", std::vector<ParamGroup>{ParamGroup(std::move(params))}, options, false) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions defaults) : Adam("Adam", std::move(groups), defaults, false) {}

Adam::Adam(const char* kind, std::vector<ParamGroup> groups, const AdamOptions& defaults, bool decoupled)
    : Optimizer(kind, adam_defaults(defaults)), decoupled_(decoupled) {
  init_groups(std::move(groups));
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : Adam("AdamW", std::vector<ParamGroup>{ParamGroup(std::move(params))}, options, true) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults)
    : Adam("AdamW", std::move(groups), defaults, true) {}

std::vector<std::string> Adam::option_names() const {
  return {"lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize"};
}

void Adam::validate(const ParamGroup& g, const std::string& where) const {
  const char* k = kind().c_str();
  ORBIT_CHECK(*g.lr >= 0, k, " (", where, "): invalid lr ", *g.lr, " (expected >= 0)");
  ORBIT_CHECK(*g.eps >= 0, k, " (", where, "): invalid eps ", *g.eps, " (expected >= 0)");
  ORBIT_CHECK(*g.beta1 >= 0 && *g.beta1 < 1, k, " (", where, "): invalid beta1 (betas[0]) ", *g.beta1,
              " (expected in [0, 1))");
  ORBIT_CHECK(*g.beta2 >= 0 && *g.beta2 < 1, k, " (", where, "): invalid beta2 (betas[1]) ", *g.beta2,
              " (expected in [0, 1))");
  ORBIT_CHECK(*g.weight_decay >= 0, k, " (", where, "): invalid weight_decay ", *g.weight_decay,
              " (expected >= 0)");
}

void Adam::step() {
  NoGradGuard ng;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const double lr = *g.lr, b1 = *g.beta1, b2 = *g.beta2, eps = *g.eps, wd = *g.weight_decay;
    const bool amsgrad = *g.amsgrad;
    for (size_t j = 0; j < g.params.size(); ++j) {
      Tensor p = g.params[j];
      const Tensor grad_in = p.grad();
      if (!grad_in.defined()) continue;
      ParamState& st = state_[gi][j];
      if (!st.buffers.contains("exp_avg")) {
        st.buffers.set("exp_avg", zeros_like(p));
        st.buffers.set("exp_avg_sq", zeros_like(p));
      }
      if (amsgrad && !st.buffers.contains("max_exp_avg_sq")) st.buffers.set("max_exp_avg_sq", zeros_like(p));
      Tensor& m = st.buffers.at("exp_avg");
      Tensor& v = st.buffers.at("exp_avg_sq");

      Tensor grad = *g.maximize ? neg(grad_in) : grad_in;
      const int64_t t = ++st.step;
      if (decoupled_) {
        p.mul_(1.0 - lr * wd);  // AdamW: decay the weights directly
      } else if (wd != 0) {
        grad = add(grad, mul(p.detach(), wd));  // Adam: L2 penalty through the gradient
      }
      m.mul_(b1).add_(grad, 1.0 - b1);
      v.mul_(b2).add_(mul(grad, grad), 1.0 - b2);

      const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(t));
      const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(t));
      const double step_size = lr / bias_correction1;
      const Tensor bc2_sqrt = Tensor::scalar(std::sqrt(bias_correction2), p.dtype(), p.device());
      Tensor second = v;
      if (amsgrad) {
        Tensor& vmax = st.buffers.at("max_exp_avg_sq");
        vmax.copy_(maximum(vmax, v));
        second = vmax;
      }
      const Tensor denom = add(div(sqrt(second), bc2_sqrt), eps);
      p.add_(div(m, denom), -step_size);
    }
  }
}

// ====================================================================== gradient clipping

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  ORBIT_CHECK(norm_type > 0, "clip_grad_norm: norm_type must be positive (or INFINITY), got ", norm_type);
  NoGradGuard ng;
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;

  // As PyTorch: the norm of the per-tensor norms.
  const bool inf_norm = std::isinf(norm_type);
  double total = 0.0;
  for (const auto& g : grads) {
    if (inf_norm) {
      total = std::max(total, amax(abs(g), {}).item());
    } else if (norm_type == 2.0) {
      const double n = std::sqrt(sum(square(g)).item());
      total += n * n;
    } else if (norm_type == 1.0) {
      total += sum(abs(g)).item();
    } else {
      const double n = std::pow(sum(pow(abs(g), norm_type)).item(), 1.0 / norm_type);
      total += std::pow(n, norm_type);
    }
  }
  if (!inf_norm) total = norm_type == 2.0 ? std::sqrt(total) : norm_type == 1.0 ? total : std::pow(total, 1.0 / norm_type);

  ORBIT_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm: the total norm of order ", norm_type,
              " of the gradients is non-finite (", total, "), so it cannot be clipped; pass "
              "error_if_nonfinite=false to scale the gradients by it anyway");
  const double coef = max_norm / (total + 1e-6);
  // PyTorch multiplies by min(coef, 1); skipping the multiplication by exactly 1 changes nothing.
  // A NaN coefficient (NaN norm) propagates into the gradients, as there.
  if (!(coef >= 1.0))
    for (auto& g : grads) g.mul_(coef);
  return total;
}

void clip_grad_value(const std::vector<Tensor>& params, double clip_value) {
  ORBIT_CHECK(clip_value >= 0, "clip_grad_value: clip_value must be >= 0, got ", clip_value);
  NoGradGuard ng;
  for (const auto& p : params) {
    if (!p.defined()) continue;
    Tensor g = p.grad();
    if (g.defined()) g.copy_(clamp(g, -clip_value, clip_value));
  }
}

}  // namespace orbit

// Optimizers (SGD, Adam, AdamW) with torch.optim's parameter groups, update formulas and state,
// and gradient clipping as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
//
// Updates run under NoGradGuard with in-place tensor ops, so the parameters stay the same tensor
// objects the modules hold. Parameters whose gradient is undefined are skipped (their state does not
// advance), as in PyTorch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "layers/ordered_dict.h"

namespace orbit {

// One parameter group, as a dict in torch.optim's param_groups. Unset options take the optimizer's
// defaults at construction; afterwards every option the optimizer uses is set (param_groups()).
struct ParamGroup {
  ParamGroup() = default;
  explicit ParamGroup(std::vector<Tensor> params, std::string name = "")
      : params(std::move(params)), name(std::move(name)) {}

  std::vector<Tensor> params;
  std::string name;  // for messages and logs ("backbone", "head")
  std::optional<double> lr;
  std::optional<double> weight_decay;
  std::optional<double> momentum, dampening;  // SGD
  std::optional<bool> nesterov;               // SGD
  std::optional<double> beta1, beta2, eps;    // Adam / AdamW
  std::optional<bool> amsgrad;                // Adam / AdamW
  std::optional<bool> maximize;
  // The lr the first scheduler found (PyTorch's group["initial_lr"]); schedulers use it as base lr.
  std::optional<double> initial_lr;
};

// An optimizer's state for checkpoints: everything needed to resume bit for bit.
//  kind: "SGD" | "Adam" | "AdamW"
//  scalars: "param_groups.<g>.<option>" for every option of every group (lr, momentum, ...;
//           booleans as 0 / 1), "param_groups.<g>.num_params", "state.<i>.step"
//  tensors: "state.<i>.momentum_buffer" (SGD), "state.<i>.exp_avg", "state.<i>.exp_avg_sq",
//           "state.<i>.max_exp_avg_sq" (Adam with amsgrad)
// where <i> numbers the parameters across groups in order (PyTorch's state_dict indices). Only
// parameters that have state (were updated at least once) appear under "state.".
struct OptimizerState {
  std::string kind;
  OrderedDict<Tensor> tensors;
  OrderedDict<double> scalars;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  // Drops the gradients of all parameters (set_to_none), or fills them with zeros.
  void zero_grad(bool set_to_none = true);

  const std::string& kind() const { return kind_; }
  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  size_t num_groups() const { return groups_.size(); }
  double lr(size_t group = 0) const;
  void set_lr(size_t group, double lr);
  void set_lr(double lr);  // every group
  // Adds a group (options unset take the defaults); its parameters must not be in another group.
  void add_param_group(ParamGroup group);

  OptimizerState state_dict() const;
  // Restores per-parameter state and every group's options. The optimizer must have been built
  // with the same groups (counts of groups and parameters, parameter shapes); otherwise throws
  // naming the difference.
  void load_state_dict(const OptimizerState& state);

 protected:
  Optimizer(std::string kind, ParamGroup defaults);
  // Sets unset options from the defaults and validates them (throws naming option and value).
  void resolve(ParamGroup& g, size_t index) const;
  virtual void validate(const ParamGroup& g, const std::string& where) const = 0;
  // The options of this optimizer, written as "param_groups.<g>.<name>" scalars.
  virtual std::vector<std::string> option_names() const = 0;
  void init_groups(std::vector<ParamGroup> groups);

  // Per-parameter state, aligned with groups_[g].params[i].
  struct ParamState {
    int64_t step = 0;
    OrderedDict<Tensor> buffers;  // "momentum_buffer", "exp_avg", ...
  };
  std::vector<std::vector<ParamState>> state_;
  std::vector<ParamGroup> groups_;

 private:
  std::string kind_;
  ParamGroup defaults_;
};

// ------------------------------------------------------------------ SGD
struct SGDOptions {
  explicit SGDOptions(double lr) : lr(lr) {}
  double lr;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  // L2: added to the gradient
  bool nesterov = false;
  bool maximize = false;
};

// torch.optim.SGD:
//   d = g + wd * p;  b = d (first step) or momentum * b + (1 - dampening) * d;
//   d = nesterov ? d + momentum * b : b (when momentum != 0);  p -= lr * d
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options);
  SGD(std::vector<ParamGroup> groups, SGDOptions defaults);
  void step() override;

 protected:
  void validate(const ParamGroup& g, const std::string& where) const override;
  std::vector<std::string> option_names() const override;
};

// ------------------------------------------------------------------ Adam / AdamW
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: L2 added to the gradient; AdamW: decoupled decay
  bool amsgrad = false;
  bool maximize = false;
};
struct AdamWOptions : AdamOptions {
  AdamWOptions() { weight_decay = 1e-2; }
};

// torch.optim.Adam: t += 1; g += wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//   (amsgrad: vmax = max(vmax, v), used for v); p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  Adam(std::vector<ParamGroup> groups, AdamOptions defaults = {});
  void step() override;

 protected:
  Adam(const char* kind, std::vector<ParamGroup> groups, const AdamOptions& defaults, bool decoupled);
  void validate(const ParamGroup& g, const std::string& where) const override;
  std::vector<std::string> option_names() const override;

 private:
  bool decoupled_;
};

// torch.optim.AdamW: as Adam without the L2 term, after p *= 1 - lr * wd.
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults = {});
};

// ------------------------------------------------------------------ gradient clipping
// torch.nn.utils.clip_grad_norm_: the norm (of order norm_type, INFINITY for the max norm) of all
// defined gradients taken together; when it exceeds max_norm, every gradient is scaled in place by
// max_norm / (total + 1e-6). Returns the total norm before clipping (0 when no gradient is defined).
// With error_if_nonfinite, a NaN / infinite total norm throws instead.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);
// torch.nn.utils.clip_grad_value_: clamps every defined gradient to [-clip_value, clip_value].
void clip_grad_value(const std::vector<Tensor>& params, double clip_value);

}  // namespace orbit

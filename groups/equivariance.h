// Equivariance checks that return the error instead of only asserting, and group averaging.
//
//   error(g) = mean over items i of ||f(g·x_i) − ρ_out(g)·f(x_i)|| / max(||f(x_i)||, eps)
//
// with the norms over each item's output (all dims but dim 0). A model that is equivariant by
// construction (GroupAveraged over a group that acts exactly) measures zero up to float rounding.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "groups/action.h"
#include "layers/module.h"

namespace orbit::groups {

using ModelFn = std::function<Tensor(const Tensor&)>;

struct EquivarianceReport {
  std::string group;
  std::vector<std::string> element_names;  // per element, as Group::element_name
  std::vector<double> error;  // per element, error[0] (identity) is 0
  double mean_error = 0;      // over the non-identity elements
  double max_error = 0;
  std::string str() const;    // "C4: mean 1.2e-07, max 2.0e-07 (r90 1.1e-07, r180 ...)"
};

// Runs f on x and on g·x for every element (in eval mode and without gradients if the caller wishes;
// this function does neither), and compares with ρ_out(g)·f(x). in_kind is how the group acts on x
// (usually Scalar), out_kind how it acts on the output (Invariant for logits).
EquivarianceReport check_equivariance(const ModelFn& f, const Group& G, const Tensor& x, FieldKind in_kind,
                                      FieldKind out_kind, double eps = 1e-12);

// Group averaging ("equi-tuning"): f_G(x) = 1/|G| Σ_g ρ_out(g)⁻¹ · f(g·x). Exactly equivariant when
// G acts exactly on the input (C_n, D_n with n in {1, 2, 4}, periodic translations); |G| forward
// passes of the wrapped model per input, batched into one forward of |G|·N items.
// The wrapped module is registered as the child "module", so state_dict keys gain that prefix;
// save the wrapped module itself to keep its own names.
class GroupAveraged : public Module {
 public:
  GroupAveraged(std::shared_ptr<Module> module, Group group, FieldKind in_kind = FieldKind::Scalar,
                FieldKind out_kind = FieldKind::Invariant);
  Tensor forward(const Tensor& x) override;
  const Group& group() const { return group_; }
  std::shared_ptr<Module> module() const { return module_; }
  std::string extra_repr() const override;

 private:
  std::shared_ptr<Module> module_;
  Group group_;
  FieldKind in_kind_, out_kind_;
};

}  // namespace orbit::groups

// Module: the base class of layers and models, modeled on torch.nn.Module.
//
// A module owns named parameters (leaf tensors that require grad), named buffers (state that is not
// trained, e.g. BatchNorm running statistics) and named child modules, each in registration order.
// Walking that tree gives hierarchical dotted names ("layer1.0.conv1.weight") that are exactly the
// keys of PyTorch's state_dict for the same architecture, so pretrained weights map one to one.
//
// Tensors are handles: the Tensor a layer keeps as a member (e.g. Conv2d::weight) and the one in the
// registry share one TensorImpl. Operations that move or convert a module (to(Device), to(DType))
// therefore swap the storage inside that TensorImpl, and load_state_dict copies values in place, so
// every handle (layer members, optimizer parameter lists) stays valid.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "layers/ordered_dict.h"

namespace orbit {

// A model's state dict: parameters and persistent buffers by dotted name, in PyTorch's order.
using StateDict = OrderedDict<Tensor>;

// Result of a non-strict load_state_dict (a strict load throws instead when either list is non-empty).
struct LoadResult {
  std::vector<std::string> missing_keys;     // in the module, absent from the dict
  std::vector<std::string> unexpected_keys;  // in the dict, absent from the module
  bool ok() const { return missing_keys.empty() && unexpected_keys.empty(); }
  std::string str() const;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  // `name` is the type name shown by repr() and error messages ("Conv2d", "ResNet").
  explicit Module(std::string name = "Module");
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ------------------------------------------------------------------ computation
  // The default throws: containers without a single-tensor forward (ModuleList) keep it.
  virtual Tensor forward(const Tensor& x);
  // forward(x), then this module's forward hooks in the order they were added. Containers and
  // models call their children through operator(), so hooks see every submodule's output.
  Tensor operator()(const Tensor& x);

  // A forward hook sees the module, its input and its output (used to tap intermediate feature
  // maps). add_forward_hook returns an id for remove_forward_hook; ForwardHookGuard removes on scope exit.
  using ForwardHook = std::function<void(Module& module, const Tensor& input, const Tensor& output)>;
  int64_t add_forward_hook(ForwardHook hook);
  void remove_forward_hook(int64_t id);  // unknown ids are ignored

  const std::string& name() const { return name_; }

  // ------------------------------------------------------------------ registration
  // Registers `t` as a parameter: a detached leaf whose requires_grad is set as given (floating
  // dtypes only). Returns the registered handle. Names are unique across parameters, buffers and
  // children of one module and may not contain '.'.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // Registers a buffer (detached, never requires grad). Non-persistent buffers are left out of
  // state_dict() (as PyTorch's persistent=False).
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of<Module, M>::value, "register_module: M must derive from Module");
    add_child(name, module);
    return module;
  }
  // Replaces an existing child in place (its position, hence state_dict order, is kept); used to
  // swap a classifier head or a normalization layer. Members holding the old child must be updated
  // by the caller.
  template <class M>
  std::shared_ptr<M> replace_module(const std::string& name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of<Module, M>::value, "replace_module: M must derive from Module");
    set_child(name, module);
    return module;
  }

  // ------------------------------------------------------------------ traversal
  // All in registration order, pre-order over the tree, with dotted names. Like PyTorch, a tensor or
  // module reachable twice (shared) is listed once, under its first name.
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  // Includes this module first, named "". (Works also for a module not owned by a shared_ptr; the
  // pointer returned for it is then non-owning.)
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules();

  // ------------------------------------------------------------------ access by dotted name
  // The registered handle ("layer1.0.conv1.weight"); throws naming the missing component. The
  // reference stays valid until the owning module registers something else.
  Tensor& param(const std::string& dotted_name);
  const Tensor& param(const std::string& dotted_name) const;
  Tensor& buffer(const std::string& dotted_name);
  const Tensor& buffer(const std::string& dotted_name) const;
  bool has_param(const std::string& dotted_name) const;
  // "" is this module.
  std::shared_ptr<Module> submodule(const std::string& dotted_name);
  template <class M>
  std::shared_ptr<M> submodule_as(const std::string& dotted_name) {
    auto m = std::dynamic_pointer_cast<M>(submodule(dotted_name));
    ORBIT_CHECK(m != nullptr, name_, ": submodule '", dotted_name, "' is not of the requested type");
    return m;
  }

  // ------------------------------------------------------------------ state
  // Parameters then persistent buffers of each module, children after their parent, recursively
  // (PyTorch's order). The tensors are detached aliases of the module's storage: clone() them for
  // a snapshot that later training does not change.
  StateDict state_dict() const;
  // Copies the dict's values into the module's tensors (dtype converted, device moved). A shape
  // mismatch is always an error naming the key and both shapes. With strict, missing or unexpected
  // keys are an error listing all of them; without, they are returned. Nothing is copied when an
  // error is thrown.
  LoadResult load_state_dict(const StateDict& dict, bool strict = true);

  // ------------------------------------------------------------------ modes and conversion
  // Recursive. Overridable so a model can keep parts in a fixed mode.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Drops the gradients (set_to_none, as PyTorch 2's default) or fills them with zeros.
  void zero_grad(bool set_to_none = true);

  // Moves / converts every parameter and buffer (to(DType) converts floating tensors only, keeping
  // the int64 counters), swapping the storage under the existing handles. Parameters stay leaves
  // with their requires_grad; gradients are converted along. Create optimizers after moving.
  void to(Device device);
  void to(DType dtype);

  // Number of parameter elements (each shared tensor counted once).
  int64_t num_parameters(bool trainable_only = false) const;

  // ------------------------------------------------------------------ freezing
  // Sets requires_grad of every parameter (recursively).
  void set_requires_grad(bool on);
  // Parameters whose dotted name starts with `prefix` ("layer4.", "fc."), in order.
  std::vector<std::pair<std::string, Tensor>> named_parameters_with_prefix(const std::string& prefix) const;
  std::vector<Tensor> parameters_with_prefix(const std::string& prefix) const;
  // Sets requires_grad of the parameters under `prefix`; returns how many were changed (throws if
  // no parameter matches, which is almost always a typo).
  int64_t set_requires_grad(const std::string& prefix, bool on);

  // ------------------------------------------------------------------ printing
  // PyTorch's repr: "Name(extra)" or a tree of "(child): repr" lines indented by two spaces.
  std::string repr() const;
  // The part inside the parentheses for this module alone (PyTorch's extra_repr).
  virtual std::string extra_repr() const { return ""; }
  // One line per parameter and buffer: dotted name, shape, dtype, trainable; and the totals.
  std::string summary() const;

 protected:
  bool training_ = true;
  // Virtual so that containers keeping their own child list (Sequential) stay in sync.
  virtual void set_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  void check_new_name(const std::string& name, const char* what) const;
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect_state(const std::string& prefix, StateDict& out) const;
  template <class F> void for_each_tensor(F&& f);  // every parameter and buffer, shared ones once
  // Resolves "a.b.c" to the module holding "c"; returns null when a component is missing.
  const Module* resolve_owner(const std::string& dotted, std::string& leaf) const;

  std::string name_;
  OrderedDict<Tensor> params_;
  OrderedDict<Tensor> buffers_;
  std::vector<std::string> non_persistent_;
  std::map<int64_t, ForwardHook> hooks_;
  int64_t next_hook_id_ = 0;
  OrderedDict<std::shared_ptr<Module>> children_;
};

// Removes a forward hook when it goes out of scope.
class ForwardHookGuard {
 public:
  ForwardHookGuard(std::shared_ptr<Module> module, Module::ForwardHook hook)
      : module_(std::move(module)), id_(module_->add_forward_hook(std::move(hook))) {}
  ~ForwardHookGuard() { module_->remove_forward_hook(id_); }
  ForwardHookGuard(const ForwardHookGuard&) = delete;
  ForwardHookGuard& operator=(const ForwardHookGuard&) = delete;

 private:
  std::shared_ptr<Module> module_;
  int64_t id_;
};

inline std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

namespace detail {
// Python's repr of a float (shortest round-trip digits: 0.1, 1e-05, 1.0), used by extra_repr().
std::string py_float(double v);
inline const char* py_bool(bool v) { return v ? "True" : "False"; }
// "(a, b)" as Python prints a tuple of two ints.
std::string py_pair(int64_t a, int64_t b);
}  // namespace detail

}  // namespace orbit

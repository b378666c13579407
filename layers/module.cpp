// Module: registration, traversal with dotted names, state dicts, modes, conversion and printing.
#include "layers/module.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <sstream>
#include <unordered_set>

#include "engine/autograd.h"

namespace orbit {

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string s;
  for (size_t i = 0; i < keys.size(); ++i) s += (i ? ", \"" : "\"") + keys[i] + "\"";
  return s;
}

// Points the TensorImpl of `t` at the storage of `converted` (same shape), so every handle that
// shares the impl sees the moved / converted tensor.
void swap_storage(const Tensor& t, const Tensor& converted) {
  Tensor c = converted.is_contiguous() ? converted : converted.contiguous();
  TensorImpl& impl = t.impl();
  impl.storage = c.storage();
  impl.shape = c.shape();
  impl.strides = c.strides();
  impl.offset = c.offset();
  impl.dtype = c.dtype();
  impl.grad_accumulator.reset();  // a node of an old graph; the next forward makes a new one
}

// Python's textwrap-free _addindent: indents every line but the first.
std::string add_indent(const std::string& s, int n) {
  if (s.find('\n') == std::string::npos) return s;
  std::string out;
  const std::string pad(n, ' ');
  for (char ch : s) {
    out += ch;
    if (ch == '\n') out += pad;
  }
  return out;
}

}  // namespace

// ====================================================================== helpers for extra_repr

namespace detail {

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest number of significant digits that reads back as v (Python's repr, mode 'r').
  char buf[64];
  int digits = 1;
  for (; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // buf is "-d.ddde[+-]XX": split mantissa digits and the decimal exponent.
  std::string s(buf);
  const bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  const size_t e = s.find('e');
  const int exp10 = std::atoi(s.c_str() + e + 1);
  std::string mant = s.substr(0, e);
  mant.erase(std::remove(mant.begin(), mant.end(), '.'), mant.end());  // the significant digits
  std::string out;
  if (exp10 < -4 || exp10 >= 16) {
    // d[.ddd]e[+-]XX with at least two exponent digits, as Python.
    out = mant.substr(0, 1);
    if (mant.size() > 1) out += "." + mant.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += eb;
  } else if (exp10 < 0) {
    out = "0." + std::string(-exp10 - 1, '0') + mant;
  } else {
    const size_t int_digits = static_cast<size_t>(exp10) + 1;
    if (mant.size() <= int_digits) {
      out = mant + std::string(int_digits - mant.size(), '0') + ".0";
    } else {
      out = mant.substr(0, int_digits) + "." + mant.substr(int_digits);
    }
  }
  return neg ? "-" + out : out;
}

std::string py_pair(int64_t a, int64_t b) { return str_cat("(", a, ", ", b, ")"); }

}  // namespace detail

std::string LoadResult::str() const {
  if (ok()) return "<All keys matched successfully>";
  std::string s;
  if (!missing_keys.empty()) s += "missing keys: " + quoted_list(missing_keys);
  if (!unexpected_keys.empty())
    s += std::string(s.empty() ? "" : "; ") + "unexpected keys: " + quoted_list(unexpected_keys);
  return s;
}

// ====================================================================== Module

Module::Module(std::string name) : name_(std::move(name)) {}

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (!hooks_.empty()) {
    const auto hooks = hooks_;  // a hook may remove itself
    for (const auto& [id, hook] : hooks) hook(*this, x, y);
  }
  return y;
}

int64_t Module::add_forward_hook(ForwardHook hook) {
  ORBIT_CHECK(static_cast<bool>(hook), name_, ": add_forward_hook got an empty function");
  hooks_[next_hook_id_] = std::move(hook);
  return next_hook_id_++;
}

void Module::remove_forward_hook(int64_t id) { hooks_.erase(id); }

Tensor Module::forward(const Tensor&) {
  throw Error(str_cat(name_, ": this module has no single-tensor forward(); call its children or "
                             "the model-specific methods"));
}

void Module::check_new_name(const std::string& name, const char* what) const {
  ORBIT_CHECK(!name.empty(), name_, ": ", what, " name must not be empty");
  ORBIT_CHECK(name.find('.') == std::string::npos, name_, ": ", what, " name '", name,
              "' must not contain '.' (dots separate the levels of the module tree)");
  ORBIT_CHECK(!params_.contains(name) && !buffers_.contains(name) && !children_.contains(name), name_,
              ": cannot register ", what, " '", name, "': the name is already used by a ",
              params_.contains(name) ? "parameter" : buffers_.contains(name) ? "buffer" : "child module");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name, "parameter");
  ORBIT_CHECK(t.defined(), name_, ": parameter '", name, "' is an undefined tensor");
  ORBIT_CHECK(is_floating(t.dtype()), name_, ": parameter '", name,
              "' must be floating (float32 or float64), got ", dtype_name(t.dtype()));
  // A parameter is a leaf of every graph that uses it.
  Tensor p = (t.is_leaf() && !t.requires_grad()) ? t : t.detach();
  p.requires_grad_(requires_grad);
  params_.insert(name, p);
  return p;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name, "buffer");
  ORBIT_CHECK(t.defined(), name_, ": buffer '", name, "' is an undefined tensor");
  Tensor b = (t.is_leaf() && !t.requires_grad()) ? t : t.detach();
  buffers_.insert(name, b);
  if (!persistent) non_persistent_.push_back(name);
  return b;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name, "module");
  ORBIT_CHECK(module != nullptr, name_, ": child module '", name, "' is null");
  children_.insert(name, std::move(module));
}

void Module::set_child(const std::string& name, std::shared_ptr<Module> module) {
  ORBIT_CHECK(children_.contains(name), name_, ": replace_module: no child named '", name, "' (children: ",
              quoted_list(children_.keys()), ")");
  ORBIT_CHECK(module != nullptr, name_, ": replace_module: the new module '", name, "' is null");
  children_.set(name, std::move(module));
}

// ---------------------------------------------------------------------- traversal

namespace {
using Named = std::vector<std::pair<std::string, Tensor>>;

// PyTorch's _named_members: modules in pre-order (each module once), their own members in order,
// each tensor once.
template <class Get>
void named_members(const Module& root, bool recurse, Get get, Named& out) {
  std::unordered_set<const TensorImpl*> seen_tensors;
  std::unordered_set<const Module*> seen_modules;
  std::function<void(const Module&, const std::string&)> visit = [&](const Module& m,
                                                                     const std::string& prefix) {
    if (!seen_modules.insert(&m).second) return;
    for (const auto& [name, t] : get(m))
      if (seen_tensors.insert(t.impl_ptr().get()).second) out.emplace_back(join_name(prefix, name), t);
    if (!recurse) return;
    for (const auto& [name, child] : m.named_children()) visit(*child, join_name(prefix, name));
  };
  visit(root, "");
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  Named out;
  named_members(*this, recurse, [](const Module& m) { return m.params_.items(); }, out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> v;
  for (auto& [n, t] : named_parameters(recurse)) v.push_back(t);
  return v;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  Named out;
  named_members(*this, recurse, [](const Module& m) { return m.buffers_.items(); }, out);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> v;
  for (auto& [n, t] : named_buffers(recurse)) v.push_back(t);
  return v;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> v;
  std::unordered_set<const Module*> seen;
  for (const auto& [name, child] : children_)
    if (seen.insert(child.get()).second) v.emplace_back(name, child);
  return v;
}

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> v;
  for (auto& [n, c] : named_children()) v.push_back(c);
  return v;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  std::shared_ptr<Module> self = weak_from_this().lock();
  if (!self) self = std::shared_ptr<Module>(std::shared_ptr<Module>(), this);  // non-owning
  std::unordered_set<const Module*> seen;
  std::function<void(const std::shared_ptr<Module>&, const std::string&)> visit =
      [&](const std::shared_ptr<Module>& m, const std::string& prefix) {
        if (!seen.insert(m.get()).second) return;
        out.emplace_back(prefix, m);
        for (const auto& [name, child] : m->children_) visit(child, join_name(prefix, name));
      };
  visit(self, "");
  return out;
}

// ---------------------------------------------------------------------- access by name

const Module* Module::resolve_owner(const std::string& dotted, std::string& leaf) const {
  const Module* m = this;
  size_t start = 0;
  for (size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1) {
    const auto* child = m->children_.find(dotted.substr(start, dot - start));
    if (!child) return nullptr;
    m = child->get();
  }
  leaf = dotted.substr(start);
  return m;
}

Tensor& Module::param(const std::string& dotted_name) {
  std::string leaf;
  const Module* owner = resolve_owner(dotted_name, leaf);
  ORBIT_CHECK(owner != nullptr, name_, ": no parameter '", dotted_name,
              "' (a module on the path does not exist)");
  Tensor* t = const_cast<Module*>(owner)->params_.find(leaf);
  ORBIT_CHECK(t != nullptr, name_, ": no parameter '", dotted_name, "'", did_you_mean(leaf, owner->params_.keys()), " (", owner->name_,
              " has parameters: ", quoted_list(owner->params_.keys()), ")");
  return *t;
}

Tensor& Module::buffer(const std::string& dotted_name) {
  std::string leaf;
  const Module* owner = resolve_owner(dotted_name, leaf);
  ORBIT_CHECK(owner != nullptr, name_, ": no buffer '", dotted_name,
              "' (a module on the path does not exist)");
  Tensor* t = const_cast<Module*>(owner)->buffers_.find(leaf);
  ORBIT_CHECK(t != nullptr, name_, ": no buffer '", dotted_name, "'", did_you_mean(leaf, owner->buffers_.keys()), " (", owner->name_,
              " has buffers: ", quoted_list(owner->buffers_.keys()), ")");
  return *t;
}

const Tensor& Module::param(const std::string& dotted_name) const {
  return const_cast<Module*>(this)->param(dotted_name);
}

const Tensor& Module::buffer(const std::string& dotted_name) const {
  return const_cast<Module*>(this)->buffer(dotted_name);
}

bool Module::has_param(const std::string& dotted_name) const {
  std::string leaf;
  const Module* owner = resolve_owner(dotted_name, leaf);
  return owner && owner->params_.contains(leaf);
}

std::shared_ptr<Module> Module::submodule(const std::string& dotted_name) {
  if (dotted_name.empty()) {
    std::shared_ptr<Module> self = weak_from_this().lock();
    return self ? self : std::shared_ptr<Module>(std::shared_ptr<Module>(), this);
  }
  std::shared_ptr<Module> m;
  const Module* cur = this;
  size_t start = 0;
  while (true) {
    const size_t dot = dotted_name.find('.', start);
    const std::string part = dotted_name.substr(start, dot == std::string::npos ? dot : dot - start);
    const auto* child = cur->children_.find(part);
    ORBIT_CHECK(child != nullptr, name_, ": no submodule '", dotted_name, "'", did_you_mean(part, cur->children_.keys()), " (",
                cur->name_, " has children: ", quoted_list(cur->children_.keys()), ")");
    m = *child;
    cur = m.get();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return m;
}

// ---------------------------------------------------------------------- state dicts

void Module::collect_state(const std::string& prefix, StateDict& out) const {
  // PyTorch's _save_to_state_dict then recursion into _modules (no deduplication of shared
  // modules: a shared child appears under each of its names).
  for (const auto& [name, p] : params_) out.set(join_name(prefix, name), p.detach());
  for (const auto& [name, b] : buffers_) {
    if (std::find(non_persistent_.begin(), non_persistent_.end(), name) != non_persistent_.end()) continue;
    out.set(join_name(prefix, name), b.detach());
  }
  for (const auto& [name, child] : children_) child->collect_state(join_name(prefix, name), out);
}

StateDict Module::state_dict() const {
  StateDict sd;
  collect_state("", sd);
  return sd;
}

LoadResult Module::load_state_dict(const StateDict& dict, bool strict) {
  const StateDict own = state_dict();
  LoadResult result;
  std::vector<std::string> size_errors;
  for (const auto& [key, dst] : own) {
    const Tensor* src = dict.find(key);
    if (!src) {
      result.missing_keys.push_back(key);
      continue;
    }
    ORBIT_CHECK(src->defined(), name_, ": load_state_dict: the value of '", key, "' is an undefined tensor");
    if (src->shape() != dst.shape())
      size_errors.push_back(str_cat("size mismatch for ", key, ": copying a param with shape ",
                                    shape_str(src->shape()), " from checkpoint, the shape in current model is ",
                                    shape_str(dst.shape()), "."));
  }
  for (const auto& [key, src] : dict)
    if (!own.contains(key)) result.unexpected_keys.push_back(key);

  // PyTorch's message layout: missing keys, unexpected keys, then one line per size mismatch.
  std::vector<std::string> errors;
  if (strict && !result.missing_keys.empty())
    errors.push_back("Missing key(s) in state_dict: " + quoted_list(result.missing_keys) + ". ");
  if (strict && !result.unexpected_keys.empty())
    errors.push_back("Unexpected key(s) in state_dict: " + quoted_list(result.unexpected_keys) + ". ");
  errors.insert(errors.end(), size_errors.begin(), size_errors.end());
  if (!errors.empty()) {
    std::string msg = "Error(s) in loading state_dict for " + name_ + ":";
    for (const auto& e : errors) msg += "\n\t" + e;
    throw Error(msg);
  }

  NoGradGuard ng;
  for (const auto& [key, dst] : own)
    if (const Tensor* src = dict.find(key)) {
      Tensor d = dst;  // an alias of the module's storage
      d.copy_(*src);
    }
  return result;
}

// ---------------------------------------------------------------------- modes and conversion

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& p : parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (set_to_none) {
      p.zero_grad();
    } else {
      g.zero_();
    }
  }
}

template <class F>
void Module::for_each_tensor(F&& f) {
  std::unordered_set<const TensorImpl*> seen;
  for (auto& [n, m] : named_modules()) {
    for (auto& [name, t] : m->params_)
      if (seen.insert(t.impl_ptr().get()).second) f(t);
    for (auto& [name, t] : m->buffers_)
      if (seen.insert(t.impl_ptr().get()).second) f(t);
  }
}

void Module::to(Device device) {
  NoGradGuard ng;
  for_each_tensor([&](Tensor& t) {
    if (t.device() == device) return;
    Tensor g = t.grad();
    swap_storage(t, t.detach().to(device));
    if (g.defined()) t.impl().grad = g.detach().to(device).impl_ptr();
  });
}

void Module::to(DType dtype) {
  ORBIT_CHECK(is_floating(dtype), name_, ": to(dtype) expects a floating dtype, got ", dtype_name(dtype));
  NoGradGuard ng;
  for_each_tensor([&](Tensor& t) {
    if (!is_floating(t.dtype()) || t.dtype() == dtype) return;
    Tensor g = t.grad();
    swap_storage(t, t.detach().to(dtype));
    if (g.defined()) t.impl().grad = g.detach().to(dtype).impl_ptr();
  });
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// ---------------------------------------------------------------------- freezing

void Module::set_requires_grad(bool on) {
  for (auto& p : parameters()) p.requires_grad_(on);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters_with_prefix(
    const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> v;
  for (auto& [name, p] : named_parameters())
    if (name.compare(0, prefix.size(), prefix) == 0) v.emplace_back(name, p);
  return v;
}

std::vector<Tensor> Module::parameters_with_prefix(const std::string& prefix) const {
  std::vector<Tensor> v;
  for (auto& [n, p] : named_parameters_with_prefix(prefix)) v.push_back(p);
  return v;
}

int64_t Module::set_requires_grad(const std::string& prefix, bool on) {
  auto ps = named_parameters_with_prefix(prefix);
  if (ps.empty()) {  // name the prefixes there are at the depth of the one asked for
    const size_t depth = std::max<size_t>(1, static_cast<size_t>(std::count(prefix.begin(), prefix.end(), '.')));
    std::vector<std::string> there;
    for (const auto& [n, t] : named_parameters()) {
      size_t end = std::string::npos, from = 0;  // the depth-th dot of the name, if it has one
      for (size_t d = 0; d < depth; ++d) {
        end = n.find('.', from);
        if (end == std::string::npos) break;
        from = end + 1;
      }
      const std::string head = end == std::string::npos ? n : n.substr(0, end + 1);
      if (std::find(there.begin(), there.end(), head) == there.end()) there.push_back(head);
    }
    throw Error(str_cat(name_, ": set_requires_grad: no parameter name starts with '", prefix, "'", did_you_mean(prefix, there),
                        " (the names start with ", quoted_list(there), ")"));
  }
  for (auto& [n, p] : ps) p.requires_grad_(on);
  return static_cast<int64_t>(ps.size());
}

// ---------------------------------------------------------------------- printing

std::string Module::repr() const {
  std::vector<std::string> extra_lines, child_lines;
  const std::string extra = extra_repr();
  if (!extra.empty()) {
    std::stringstream ss(extra);
    for (std::string line; std::getline(ss, line);) extra_lines.push_back(line);
  }
  for (const auto& [key, child] : children_)
    child_lines.push_back("(" + key + "): " + add_indent(child->repr(), 2));
  std::string s = name_ + "(";
  if (extra_lines.size() == 1 && child_lines.empty()) {
    s += extra_lines[0];
  } else if (!extra_lines.empty() || !child_lines.empty()) {
    s += "\n";
    for (const auto& l : extra_lines) s += "  " + l + "\n";
    for (const auto& l : child_lines) s += "  " + l + "\n";
  }
  return s + ")";
}

std::string Module::summary() const {
  std::ostringstream os;
  const auto params = named_parameters();
  const auto bufs = named_buffers();
  size_t width = 4;
  for (auto& [n, t] : params) width = std::max(width, n.size());
  for (auto& [n, t] : bufs) width = std::max(width, n.size());
  int64_t total = 0, trainable = 0, buffer_elems = 0;
  for (auto& [n, t] : params) {
    os << "  " << std::left << std::setw(static_cast<int>(width)) << n << "  " << std::setw(18)
       << shape_str(t.shape()) << "  " << std::setw(8) << dtype_name(t.dtype())
       << (t.requires_grad() ? "  trainable" : "  frozen") << "\n";
    total += t.numel();
    if (t.requires_grad()) trainable += t.numel();
  }
  for (auto& [n, t] : bufs) {
    os << "  " << std::left << std::setw(static_cast<int>(width)) << n << "  " << std::setw(18)
       << shape_str(t.shape()) << "  " << std::setw(8) << dtype_name(t.dtype()) << "  buffer\n";
    buffer_elems += t.numel();
  }
  return str_cat(name_, ": ", total, " parameters (", trainable, " trainable), ", buffer_elems,
                 " buffer elements\n", os.str());
}

}  // namespace orbit

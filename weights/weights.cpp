#include "weights/weights.h"

namespace orbit {

StateDict to_state_dict(const NamedTensors& tensors) {
  StateDict d;
  for (const auto& [k, t] : tensors) d.insert(k, t);
  return d;
}

NamedTensors to_named_tensors(const StateDict& dict) {
  NamedTensors v;
  for (const auto& [k, t] : dict.items()) v.emplace_back(k, t);
  return v;
}

void save_weights(const std::string& path, const Module& module, const Metadata& metadata) {
  save_safetensors(path, to_named_tensors(module.state_dict()), metadata);
}

LoadResult load_weights(const std::string& path, Module& module, bool strict) {
  try {
    return module.load_state_dict(to_state_dict(load_safetensors(path)), strict);
  } catch (const Error& e) {
    throw Error(str_cat("load_weights(", path, "): ", e.what()));
  }
}

}  // namespace orbit

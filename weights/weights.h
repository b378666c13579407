// Model weights as safetensors files: a module's state_dict by PyTorch name.
#pragma once

#include <string>

#include "layers/module.h"
#include "weights/safetensors.h"

namespace orbit {

void save_weights(const std::string& path, const Module& module, const Metadata& metadata = {});
// Loads into the module (strict: every key must match; otherwise missing/unexpected keys are
// returned). Shape mismatches always throw, naming the tensor and both shapes.
LoadResult load_weights(const std::string& path, Module& module, bool strict = true);

StateDict to_state_dict(const NamedTensors& tensors);
NamedTensors to_named_tensors(const StateDict& dict);

}  // namespace orbit

#include "models/registry.h"

#include <map>
#include <mutex>

#include "models/efficientnet.h"
#include "models/resnet.h"
#include "models/resnet_small.h"
#include "models/small_cnn.h"

namespace orbit {

namespace {
struct Entry {
  std::string description;
  ModelFactory factory;
};

// Built-in models are listed here explicitly (static registration objects in a static library are
// dropped by the linker when nothing references their file).
std::map<std::string, Entry> builtin_models() {
  std::map<std::string, Entry> r = {
      {"small_cnn",
       {"4-layer CNN for 28x28 images (Fashion-MNIST / MNIST), ~0.47M parameters",
        [](const ModelOptions& o) { return std::make_shared<SmallCNN>(o); }}},
      {"resnet_small",
       {"ResNet-18-like (2-2-2-2 basic blocks, widths 16-32-64-128) for small images such as 28x28",
        [](const ModelOptions& o) { return std::make_shared<ResNetSmall>(o, 16); }}},
      {"resnet_small32",
       {"ResNet-18-like (2-2-2-2 basic blocks, widths 32-64-128-256) for small images such as 28x28",
        [](const ModelOptions& o) { return std::make_shared<ResNetSmall>(o, 32); }}},
  };
  // torchvision's ResNet family (models/resnet.h); parameter counts at 3 input channels, 1000 classes.
  const std::pair<const char*, const char*> resnets[] = {
      {"resnet18", "torchvision ResNet-18 (BasicBlock 2-2-2-2), 11.7M parameters"},
      {"resnet34", "torchvision ResNet-34 (BasicBlock 3-4-6-3), 21.8M parameters"},
      {"resnet50", "torchvision ResNet-50 (Bottleneck 3-4-6-3), 25.6M parameters"},
      {"resnet101", "torchvision ResNet-101 (Bottleneck 3-4-23-3), 44.5M parameters"},
      {"resnet152", "torchvision ResNet-152 (Bottleneck 3-8-36-3), 60.2M parameters"},
      {"resnext50_32x4d", "torchvision ResNeXt-50 32x4d (grouped Bottleneck 3-4-6-3), 25.0M parameters"},
      {"resnext101_32x8d", "torchvision ResNeXt-101 32x8d (grouped Bottleneck 3-4-23-3), 88.8M parameters"},
      {"resnext101_64x4d", "torchvision ResNeXt-101 64x4d (grouped Bottleneck 3-4-23-3), 83.5M parameters"},
      {"wide_resnet50_2", "torchvision Wide ResNet-50-2 (Bottleneck 3-4-6-3, twice the inner width), 68.9M parameters"},
      {"wide_resnet101_2", "torchvision Wide ResNet-101-2 (Bottleneck 3-4-23-3, twice the inner width), 126.9M parameters"},
  };
  for (const auto& [name, description] : resnets) {
    const ResNetSpec spec = resnet_spec(name);
    r[name] = {description, [spec](const ModelOptions& o) { return std::make_shared<ResNet>(o, spec); }};
  }
  // torchvision's EfficientNet-B0 ... B7 (models/efficientnet.h).
  const std::pair<const char*, const char*> effnets[] = {
      {"efficientnet_b0", "torchvision EfficientNet-B0 (width 1.0, depth 1.0, dropout 0.2), 5.3M parameters"},
      {"efficientnet_b1", "torchvision EfficientNet-B1 (width 1.0, depth 1.1, dropout 0.2), 7.8M parameters"},
      {"efficientnet_b2", "torchvision EfficientNet-B2 (width 1.1, depth 1.2, dropout 0.3), 9.1M parameters"},
      {"efficientnet_b3", "torchvision EfficientNet-B3 (width 1.2, depth 1.4, dropout 0.3), 12.2M parameters"},
      {"efficientnet_b4", "torchvision EfficientNet-B4 (width 1.4, depth 1.8, dropout 0.4), 19.3M parameters"},
      {"efficientnet_b5", "torchvision EfficientNet-B5 (width 1.6, depth 2.2, dropout 0.4; batch-norm eps 1e-3), 30.4M parameters"},
      {"efficientnet_b6", "torchvision EfficientNet-B6 (width 1.8, depth 2.6, dropout 0.5; batch-norm eps 1e-3), 43.0M parameters"},
      {"efficientnet_b7", "torchvision EfficientNet-B7 (width 2.0, depth 3.1, dropout 0.5; batch-norm eps 1e-3), 66.3M parameters"},
  };
  for (const auto& [name, description] : effnets) {
    const EfficientNetSpec spec = efficientnet_spec(name);
    r[name] = {description, [spec](const ModelOptions& o) { return std::make_shared<EfficientNet>(o, spec); }};
  }
  return r;
}
std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> r = builtin_models();
  return r;
}
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

std::shared_ptr<ClassifierModel> create_model(const std::string& name, const ModelOptions& options) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    std::vector<std::string> names;
    for (const auto& [k, v] : registry()) {
      known += (known.empty() ? "" : ", ") + k;
      names.push_back(k);
    }
    throw Error(str_cat("create_model: unknown model \"", name, "\"", did_you_mean(name, names), "; known models: ", known));
  }
  return it->second.factory(options);
}

std::vector<std::pair<std::string, std::string>> list_models() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::pair<std::string, std::string>> v;
  for (const auto& [k, e] : registry()) v.emplace_back(k, e.description);
  return v;
}

WeightShapes infer_weight_shapes(const std::string& model, const std::vector<std::pair<std::string, Tensor>>& tensors,
                                 const std::string& what) {
  ModelOptions probe_options;
  probe_options.in_channels = 3;
  probe_options.num_classes = 10;
  auto probe = create_model(model, probe_options);
  WeightShapes w;
  std::string head_prefix;
  for (const auto& [group, prefix] : probe->parameter_groups())
    if (group == "head") head_prefix = prefix;
  for (const auto& [k, p] : probe->named_parameters()) {
    if (w.stem_key.empty() && p.dim() == 4) w.stem_key = k;
    if (!head_prefix.empty() && k.rfind(head_prefix, 0) == 0 && p.dim() == 2) w.head_key = k;
  }
  const Tensor *stem = nullptr, *head = nullptr;
  for (const auto& [k, t] : tensors) {
    if (k == w.stem_key) stem = &t;
    if (k == w.head_key) head = &t;
  }
  ORBIT_CHECK(stem && head && stem->dim() == 4 && head->dim() == 2, what, " does not hold a \"", model,
              "\" model: expected tensors '", w.stem_key, "' (4-D) and '", w.head_key, "' (2-D)");
  w.in_channels = stem->size(1);
  w.num_classes = head->size(0);
  return w;
}

void register_model(const std::string& name, const std::string& description, ModelFactory factory) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  ORBIT_CHECK(!registry().count(name), "register_model: a model named \"", name, "\" is already registered");
  registry()[name] = {description, std::move(factory)};
}

}  // namespace orbit

#include "models/registry.h"

#include <map>
#include <mutex>

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
std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> r = {
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
    for (const auto& [k, v] : registry()) known += (known.empty() ? "" : ", ") + k;
    throw Error(str_cat("create_model: unknown model \"", name, "\"; known models: ", known));
  }
  return it->second.factory(options);
}

std::vector<std::pair<std::string, std::string>> list_models() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::pair<std::string, std::string>> v;
  for (const auto& [k, e] : registry()) v.emplace_back(k, e.description);
  return v;
}

void register_model(const std::string& name, const std::string& description, ModelFactory factory) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  ORBIT_CHECK(!registry().count(name), "register_model: a model named \"", name, "\" is already registered");
  registry()[name] = {description, std::move(factory)};
}

}  // namespace orbit

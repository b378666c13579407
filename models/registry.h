// The model registry: create_model("name", options) and list_models(). An unknown name is an error
// that lists the known ones. Every registered model is a ClassifierModel, so the trainer can
// fine-tune any of them through the same surface.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/random.h"
#include "layers/module.h"

namespace orbit {

// The fine-tuning surface every model offers: features before the head, the head, a head reset for
// a new number of classes, and named parameter groups (dotted-name prefixes) for freezing.
class ClassifierModel : public Module {
 public:
  using Module::Module;
  virtual Tensor forward_features(const Tensor& x) = 0;  // [N, ...] features before the head
  virtual Tensor forward_head(const Tensor& features) = 0;
  Tensor forward(const Tensor& x) override { return forward_head(forward_features(x)); }
  // Replaces the classifier's last layer with a freshly initialized one for `num_classes`.
  virtual void reset_classifier(int64_t num_classes, Generator* gen = nullptr) = 0;
  virtual int64_t num_classes() const = 0;
  // Named groups of parameters, input to output: {"stem", "features.0."}, ..., {"head", "classifier."}.
  virtual std::vector<std::pair<std::string, std::string>> parameter_groups() const = 0;
};

struct ModelOptions {
  int64_t num_classes = 10;
  int64_t in_channels = 1;
  // Dropout before the classifier; unset: the model's own default (0.25 for small_cnn and
  // resnet_small, the variant's for EfficientNet; torchvision's ResNets have none and accept only
  // 0).
  std::optional<double> dropout;
  Generator* gen = nullptr;  // initialization; the default generator when null
};

using ModelFactory = std::function<std::shared_ptr<ClassifierModel>(const ModelOptions&)>;

std::shared_ptr<ClassifierModel> create_model(const std::string& name, const ModelOptions& options = {});
// Names with a one-line description each.
std::vector<std::pair<std::string, std::string>> list_models();
void register_model(const std::string& name, const std::string& description, ModelFactory factory);

// What a weight file's tensors say about the model they fit: the input channels (dimension 1 of the
// stem's first convolution weight) and the number of classes (dimension 0 of the head's last weight
// matrix), found by the names a probe of the architecture gives them. Throws naming `what` (the
// file) and the expected tensors when they are absent or of the wrong rank.
struct WeightShapes {
  int64_t in_channels = 0, num_classes = 0;
  std::string stem_key, head_key;
};
WeightShapes infer_weight_shapes(const std::string& model, const std::vector<std::pair<std::string, Tensor>>& tensors,
                                 const std::string& what);

}  // namespace orbit

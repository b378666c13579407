#include "models/small_cnn.h"

namespace orbit {

namespace {
void conv_bn_relu(Sequential& s, int64_t in, int64_t out, Generator* gen) {
  s.push_back(std::make_shared<Conv2d>(in, out, 3, 1, 1, 1, 1, /*bias=*/false, ConvPadding::Zeros, gen));
  s.push_back(std::make_shared<BatchNorm2d>(out));
  s.push_back(std::make_shared<ReLU>());
}
}  // namespace

SmallCNN::SmallCNN(const ModelOptions& o)
    : ClassifierModel("SmallCNN"), in_channels_(o.in_channels), num_classes_(o.num_classes) {
  ORBIT_CHECK(o.in_channels > 0 && o.num_classes > 0, "SmallCNN: expected positive in_channels and num_classes, got ",
              o.in_channels, " and ", o.num_classes);
  const double dropout = o.dropout.value_or(0.25);
  ORBIT_CHECK(dropout >= 0 && dropout < 1, "SmallCNN: dropout must be in [0, 1), got ", dropout);
  features_ = register_module("features", std::make_shared<Sequential>());
  conv_bn_relu(*features_, o.in_channels, 32, o.gen);
  conv_bn_relu(*features_, 32, 32, o.gen);
  features_->push_back(std::make_shared<MaxPool2d>(2));
  conv_bn_relu(*features_, 32, 64, o.gen);
  conv_bn_relu(*features_, 64, 64, o.gen);
  features_->push_back(std::make_shared<MaxPool2d>(2));
  classifier_ = register_module("classifier", std::make_shared<Sequential>());
  classifier_->push_back(std::make_shared<Flatten>());
  classifier_->push_back(std::make_shared<Linear>(64 * 7 * 7, 128, true, o.gen));
  classifier_->push_back(std::make_shared<ReLU>());
  classifier_->push_back(std::make_shared<Dropout>(dropout, false, o.gen));
  classifier_->push_back(std::make_shared<Linear>(128, o.num_classes, true, o.gen));
}

Tensor SmallCNN::forward_features(const Tensor& x) {
  ORBIT_CHECK(x.dim() == 4 && x.size(1) == in_channels_ && x.size(2) == 28 && x.size(3) == 28,
              "SmallCNN: expected input [N, ", in_channels_, ", 28, 28], got ", shape_str(x.shape()));
  return (*features_)(x);
}

Tensor SmallCNN::forward_head(const Tensor& f) { return (*classifier_)(f); }

void SmallCNN::reset_classifier(int64_t num_classes, Generator* gen) {
  ORBIT_CHECK(num_classes > 0, "SmallCNN::reset_classifier: expected num_classes > 0, got ", num_classes);
  auto head = std::make_shared<Linear>(128, num_classes, true, gen);
  classifier_->replace_module("4", head);
  num_classes_ = num_classes;
}

std::vector<std::pair<std::string, std::string>> SmallCNN::parameter_groups() const {
  return {{"block1", "features.0."}, {"block1", "features.1."}, {"block1", "features.3."}, {"block1", "features.4."},
          {"block2", "features.7."}, {"block2", "features.8."}, {"block2", "features.10."}, {"block2", "features.11."},
          {"head", "classifier."}};
}

}  // namespace orbit

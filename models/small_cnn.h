// SmallCNN: a compact convolutional classifier for 28x28 images (Fashion-MNIST, MNIST):
// four 3x3 conv-BN-ReLU layers (32, 32, 64, 64 channels) with 2x2 max pooling after the second and
// fourth, then a 128-unit hidden layer with dropout and the linear classifier.
#pragma once

#include "layers/layers.h"
#include "models/registry.h"

namespace orbit {

class SmallCNN : public ClassifierModel {
 public:
  explicit SmallCNN(const ModelOptions& options);
  Tensor forward_features(const Tensor& x) override;
  Tensor forward_head(const Tensor& features) override;
  void reset_classifier(int64_t num_classes, Generator* gen = nullptr) override;
  int64_t num_classes() const override { return num_classes_; }
  std::vector<std::pair<std::string, std::string>> parameter_groups() const override;

 private:
  std::shared_ptr<Sequential> features_, classifier_;
  int64_t in_channels_, num_classes_;
};

}  // namespace orbit

// ResNetSmall: a ResNet-18-like classifier for small images (28x28 Fashion-MNIST / MNIST, 32x32
// CIFAR), with torchvision's resnet18 module names so its state_dict keys read the same:
//
//   conv1 (3x3, stride 1, padding 1, no bias, in_channels -> w), bn1, relu      (no max pool)
//   layer1..layer4: 2 BasicBlocks each, widths w, 2w, 4w, 8w, first-block strides 1, 2, 2, 2
//   avgpool (global average), dropout, fc (Linear 8w -> num_classes)
//
// BasicBlock(in, out, stride) (models/resnet.h, torchvision's): conv1 (3x3, stride, no bias), bn1, relu, conv2 (3x3, no bias), bn2,
// plus the shortcut: identity, or downsample = Sequential(conv 1x1 stride s no bias, BatchNorm2d)
// ("downsample.0", "downsample.1") when stride != 1 or in != out; output relu(bn2(...) + shortcut).
//
// Compared with torchvision's resnet18 only the stem differs (a 3x3 stride-1 conv instead of the 7x7
// stride-2 conv and max pool, which would shrink a 28x28 image to 7x7 before layer1), and the dropout
// before fc. Each stride-2 stage maps a side of n pixels to ceil(n / 2): 28x28 inputs give 28 (layer1),
// 14, 7, 4 (layer4); 8x8 inputs give 8, 4, 2, 1. Any input size works (a 1x1 map stays 1x1).
//
// Initialization as torchvision: convs kaiming_normal_(fan_out, relu), BatchNorm weight 1 and bias 0,
// fc Linear's default (kaiming_uniform_(a = sqrt 5)). Every submodule is called through operator(),
// so forward hooks on any of them ("layer3", "layer2.0.bn1") see its output.
#pragma once

#include "layers/layers.h"
#include "models/registry.h"
#include "models/resnet.h"  // BasicBlock

namespace orbit {

class ResNetSmall : public ClassifierModel {
 public:
  // width: w, the channels of layer1 (16 for "resnet_small", 32 for "resnet_small32").
  ResNetSmall(const ModelOptions& options, int64_t width);
  // [N, in_channels, H, W] -> pooled features [N, 8w].
  Tensor forward_features(const Tensor& x) override;
  // Dropout, then fc: [N, 8w] -> [N, num_classes].
  Tensor forward_head(const Tensor& features) override;
  void reset_classifier(int64_t num_classes, Generator* gen = nullptr) override;
  int64_t num_classes() const override { return num_classes_; }
  // stem ("conv1.", "bn1."), layer1 .. layer4, head ("fc.").
  std::vector<std::pair<std::string, std::string>> parameter_groups() const override;
  int64_t width() const { return width_; }
  int64_t num_features() const { return 8 * width_; }

 private:
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::shared_ptr<ReLU> relu_;
  std::shared_ptr<Sequential> layer1_, layer2_, layer3_, layer4_;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool_;
  std::shared_ptr<Dropout> dropout_;
  std::shared_ptr<Linear> fc_;
  int64_t in_channels_, num_classes_, width_;
};

}  // namespace orbit

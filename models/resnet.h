// The ResNet family as torchvision defines it (torchvision.models.resnet): resnet18/34/50/101/152,
// resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2 and wide_resnet101_2, with
// torchvision's module names, registration order and initialization, so a torchvision state_dict
// loads one to one (strictly) and the forward pass computes the same function.
//
//   conv1 (7x7, stride 2, padding 3, no bias, in_channels -> 64), bn1, relu, maxpool (3x3, stride 2,
//   padding 1); layer1..layer4 of blocks with planes 64, 128, 256, 512 and first-block strides 1, 2,
//   2, 2; avgpool (global average), fc (Linear 512 * expansion -> num_classes).
//
// BasicBlock (expansion 1; resnet18/34): conv1 (3x3, stride), bn1, relu, conv2 (3x3), bn2.
// Bottleneck (expansion 4; the others), with the stride on the 3x3 conv as torchvision ("ResNet
// v1.5"): width = floor(planes * base_width / 64) * groups; conv1 (1x1, in -> width), bn1, conv2
// (3x3, stride, groups), bn2, conv3 (1x1, width -> 4 planes), bn3, relu.
// Either block adds the shortcut before the last relu: the identity, or downsample = Sequential(conv
// 1x1 with the block's stride, no bias; BatchNorm2d) when the stride or the width changes.
//
// Initialization as torchvision: convs kaiming_normal_(fan_out, relu), BatchNorm weight 1 and bias 0,
// fc Linear's default (zero_init_residual = False). BatchNorm eps 1e-5, momentum 0.1. There is no
// dropout (ModelOptions::dropout must be unset or 0). Every submodule is called through operator(), so
// forward hooks see its output (taps such as "layer3" or "layer2.0.bn1").
#pragma once

#include "layers/layers.h"
#include "models/registry.h"

namespace orbit {

// A bias-free Conv2d with padding kernel / 2 and torchvision's ResNet initialization.
std::shared_ptr<Conv2d> resnet_conv(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                                    Generator* gen, int64_t groups = 1);

class BasicBlock : public Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  std::shared_ptr<ReLU> relu_;
  std::shared_ptr<Sequential> downsample_;  // null for the identity shortcut
};

class Bottleneck : public Module {
 public:
  static constexpr int64_t kExpansion = 4;
  // Output channels 4 * planes.
  Bottleneck(int64_t in_channels, int64_t planes, int64_t stride, int64_t groups, int64_t base_width,
             Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
  std::shared_ptr<ReLU> relu_;
  std::shared_ptr<Sequential> downsample_;
};

struct ResNetSpec {
  bool bottleneck = false;       // BasicBlock or Bottleneck
  std::vector<int64_t> layers;   // blocks per stage, e.g. {3, 4, 6, 3} for resnet50
  int64_t groups = 1;            // ResNeXt cardinality (Bottleneck only)
  int64_t width_per_group = 64;  // 128 for the wide ResNets, 4 or 8 for ResNeXt (Bottleneck only)
};

// The specs of torchvision's named variants: "resnet18", ..., "wide_resnet101_2". Throws for others.
ResNetSpec resnet_spec(const std::string& name);

class ResNet : public ClassifierModel {
 public:
  ResNet(const ModelOptions& options, const ResNetSpec& spec);
  // [N, in_channels, H, W] -> pooled features [N, 512 * expansion]. Any H, W >= 1 (each stride-2
  // step maps n to floor((n - 1) / 2) + 1).
  Tensor forward_features(const Tensor& x) override;
  Tensor forward_head(const Tensor& features) override;  // fc
  void reset_classifier(int64_t num_classes, Generator* gen = nullptr) override;
  int64_t num_classes() const override { return num_classes_; }
  // stem ("conv1.", "bn1."), layer1 .. layer4, head ("fc.").
  std::vector<std::pair<std::string, std::string>> parameter_groups() const override;
  int64_t num_features() const { return num_features_; }

 private:
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::shared_ptr<ReLU> relu_;
  std::shared_ptr<MaxPool2d> maxpool_;
  std::shared_ptr<Sequential> layer1_, layer2_, layer3_, layer4_;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool_;
  std::shared_ptr<Linear> fc_;
  int64_t in_channels_, num_classes_, num_features_;
};

}  // namespace orbit

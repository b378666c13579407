// EfficientNet-B0 ... B7 as torchvision defines them (torchvision.models.efficientnet), with
// torchvision's module names, registration order and initialization, so a torchvision state_dict
// loads one to one (strictly) and the forward pass computes the same function.
//
//   features.0   Conv2dNormActivation: conv 3x3 stride 2 (in_channels -> c(32)), BatchNorm, SiLU
//   features.1-7 stages of MBConv blocks; per stage (expand ratio, kernel, stride, in, out, blocks):
//                (1,3,1,32,16,1) (6,3,2,16,24,2) (6,5,2,24,40,2) (6,3,2,40,80,3) (6,5,1,80,112,3)
//                (6,5,2,112,192,4) (6,3,1,192,320,1), channels c(n) = make_divisible(n * width, 8)
//                and blocks ceil(n * depth); a stage's first block has its stride and channel change
//   features.8   Conv2dNormActivation: conv 1x1 (c(320) -> 4 c(320)), BatchNorm, SiLU
//   avgpool (global average), classifier = Sequential(Dropout(p), Linear(4 c(320) -> num_classes))
//
// MBConv(in, out, expand, kernel, stride): block = Sequential of Conv2dNormActivation 1x1 (in ->
// e = make_divisible(in * expand, 8), SiLU; absent when e == in), depthwise Conv2dNormActivation (e,
// kernel, stride, groups e, SiLU), SqueezeExcitation(e, max(1, in / 4)), Conv2dNormActivation 1x1 (e
// -> out, no activation); then stochastic_depth (StochasticDepth(p, "row") with p = 0.2 * (index of
// the block among all blocks) / (number of blocks)) and the residual add when stride 1 and in == out.
// Conv2dNormActivation = Sequential("0" conv without bias, padding (kernel - 1) / 2, "1" BatchNorm2d,
// "2" SiLU when there is an activation).
//
// Variants (width, depth, dropout; batch-norm eps and momentum):
//   b0 1.0 1.0 0.2, b1 1.0 1.1 0.2, b2 1.1 1.2 0.3, b3 1.2 1.4 0.3, b4 1.4 1.8 0.4 (eps 1e-5, momentum
//   0.1); b5 1.6 2.2 0.4, b6 1.8 2.6 0.5, b7 2.0 3.1 0.5 (eps 1e-3, momentum 0.01).
// ModelOptions::dropout, when set, replaces the variant's dropout.
//
// Initialization as torchvision: convs kaiming_normal_(fan_out) with zero bias, BatchNorm weight 1 and
// bias 0, Linear weight U(-1/sqrt(out), 1/sqrt(out)) with zero bias.
#pragma once

#include "layers/layers.h"
#include "models/registry.h"

namespace orbit {

// torchvision's _make_divisible: v rounded to the nearest multiple of `divisor` (at least
// `min_value`, default divisor), plus one divisor when that lost more than 10% of v.
int64_t make_divisible(double v, int64_t divisor, int64_t min_value = 0);

// torchvision.ops.SqueezeExcitation with SiLU and sigmoid: x * sigmoid(fc2(silu(fc1(avgpool(x))))),
// fc1 and fc2 1x1 convs with bias.
class SqueezeExcitation : public Module {
 public:
  SqueezeExcitation(int64_t input_channels, int64_t squeeze_channels, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<AdaptiveAvgPool2d> avgpool_;
  std::shared_ptr<Conv2d> fc1_, fc2_;
  std::shared_ptr<SiLU> activation_;
  std::shared_ptr<Sigmoid> scale_activation_;
};

struct BatchNormConfig {
  double eps = 1e-5;
  double momentum = 0.1;
};

class MBConv : public Module {
 public:
  MBConv(int64_t in_channels, int64_t out_channels, double expand_ratio, int64_t kernel, int64_t stride,
         double stochastic_depth_prob, const BatchNormConfig& bn, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  bool use_res_connect() const { return use_res_connect_; }

 private:
  std::shared_ptr<Sequential> block_;
  std::shared_ptr<StochasticDepth> stochastic_depth_;
  bool use_res_connect_;
};

struct EfficientNetSpec {
  double width_mult = 1.0, depth_mult = 1.0;
  double dropout = 0.2;
  BatchNormConfig bn;
  double stochastic_depth_prob = 0.2;
};

// The specs of torchvision's "efficientnet_b0" ... "efficientnet_b7". Throws for others.
EfficientNetSpec efficientnet_spec(const std::string& name);

class EfficientNet : public ClassifierModel {
 public:
  EfficientNet(const ModelOptions& options, const EfficientNetSpec& spec);
  // [N, in_channels, H, W] -> pooled features [N, num_features()].
  Tensor forward_features(const Tensor& x) override;
  Tensor forward_head(const Tensor& features) override;  // classifier: dropout, linear
  void reset_classifier(int64_t num_classes, Generator* gen = nullptr) override;
  int64_t num_classes() const override { return num_classes_; }
  // stem ("features.0."), stage1 .. stage7 ("features.1." ...), "head_conv" ("features.8."),
  // head ("classifier.").
  std::vector<std::pair<std::string, std::string>> parameter_groups() const override;
  int64_t num_features() const { return num_features_; }

 private:
  std::shared_ptr<Sequential> features_;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool_;
  std::shared_ptr<Sequential> classifier_;
  int64_t in_channels_, num_classes_, num_features_;
  Generator* gen_;
};

}  // namespace orbit

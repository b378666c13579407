// EfficientNet-B0 ... B7 and their blocks (models/efficientnet.h).
#include "models/efficientnet.h"

#include <cmath>
#include <map>

#include "layers/init.h"

namespace orbit {

int64_t make_divisible(double v, int64_t divisor, int64_t min_value) {
  if (min_value <= 0) min_value = divisor;
  int64_t r = std::max<int64_t>(min_value, static_cast<int64_t>(v + static_cast<double>(divisor) / 2) / divisor * divisor);
  if (static_cast<double>(r) < 0.9 * v) r += divisor;
  return r;
}

namespace {

// A conv with torchvision's EfficientNet initialization: kaiming_normal_(fan_out), zero bias.
std::shared_ptr<Conv2d> effnet_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, bool bias,
                                    Generator* gen) {
  auto conv = std::make_shared<Conv2d>(in, out, kernel, stride, (kernel - 1) / 2, 1, groups, bias, ConvPadding::Zeros, gen);
  init::kaiming_normal_(conv->weight, 0.0, "fan_out", "leaky_relu", gen);
  if (bias) init::zeros_(conv->bias);
  return conv;
}

// torchvision.ops.Conv2dNormActivation: "0" conv (no bias), "1" BatchNorm2d, "2" SiLU (optional).
std::shared_ptr<Sequential> conv_norm_act(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                                          bool activation, const BatchNormConfig& bn, Generator* gen) {
  auto s = std::make_shared<Sequential>();
  s->push_back(effnet_conv(in, out, kernel, stride, groups, /*bias=*/false, gen));
  s->push_back(std::make_shared<BatchNorm2d>(out, bn.eps, bn.momentum));
  if (activation) s->push_back(std::make_shared<SiLU>(true));
  return s;
}

// The classifier's Linear with torchvision's EfficientNet initialization.
std::shared_ptr<Linear> effnet_linear(int64_t in, int64_t out, Generator* gen) {
  auto fc = std::make_shared<Linear>(in, out, true, gen);
  const double r = 1.0 / std::sqrt(static_cast<double>(out));
  init::uniform_(fc->weight, -r, r, gen);
  init::zeros_(fc->bias);
  return fc;
}

struct StageConfig {
  double expand_ratio;
  int64_t kernel, stride, in, out, layers;
};

// EfficientNet-B0's stages, before the width and depth multipliers.
const StageConfig kStages[] = {{1, 3, 1, 32, 16, 1},   {6, 3, 2, 16, 24, 2},   {6, 5, 2, 24, 40, 2},  {6, 3, 2, 40, 80, 3},
                               {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4}, {6, 3, 1, 192, 320, 1}};

}  // namespace

// ---------------------------------------------------------------------------------- SqueezeExcitation

SqueezeExcitation::SqueezeExcitation(int64_t input_channels, int64_t squeeze_channels, Generator* gen)
    : Module("SqueezeExcitation") {
  avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1));
  fc1_ = register_module("fc1", effnet_conv(input_channels, squeeze_channels, 1, 1, 1, true, gen));
  fc2_ = register_module("fc2", effnet_conv(squeeze_channels, input_channels, 1, 1, 1, true, gen));
  activation_ = register_module("activation", std::make_shared<SiLU>(true));
  scale_activation_ = register_module("scale_activation", std::make_shared<Sigmoid>());
}

Tensor SqueezeExcitation::forward(const Tensor& x) {
  const Tensor scale = (*scale_activation_)((*fc2_)((*activation_)((*fc1_)((*avgpool_)(x)))));
  return mul(scale, x);
}

// ---------------------------------------------------------------------------------- MBConv

MBConv::MBConv(int64_t in_channels, int64_t out_channels, double expand_ratio, int64_t kernel, int64_t stride,
               double stochastic_depth_prob, const BatchNormConfig& bn, Generator* gen)
    : Module("MBConv"), use_res_connect_(stride == 1 && in_channels == out_channels) {
  ORBIT_CHECK(stride == 1 || stride == 2, "MBConv: expected stride 1 or 2, got ", stride);
  const int64_t expanded = make_divisible(static_cast<double>(in_channels) * expand_ratio, 8);
  block_ = register_module("block", std::make_shared<Sequential>());
  if (expanded != in_channels) block_->push_back(conv_norm_act(in_channels, expanded, 1, 1, 1, true, bn, gen));
  block_->push_back(conv_norm_act(expanded, expanded, kernel, stride, /*groups=*/expanded, true, bn, gen));
  block_->push_back(std::make_shared<SqueezeExcitation>(expanded, std::max<int64_t>(1, in_channels / 4), gen));
  block_->push_back(conv_norm_act(expanded, out_channels, 1, 1, 1, false, bn, gen));
  stochastic_depth_ = register_module("stochastic_depth", std::make_shared<StochasticDepth>(stochastic_depth_prob, "row", gen));
}

Tensor MBConv::forward(const Tensor& x) {
  Tensor y = (*block_)(x);
  if (use_res_connect_) y = add((*stochastic_depth_)(y), x);
  return y;
}

// ---------------------------------------------------------------------------------- EfficientNet

EfficientNetSpec efficientnet_spec(const std::string& name) {
  const BatchNormConfig bn_b0 = {1e-5, 0.1}, bn_b5 = {1e-3, 0.01};
  static const std::map<std::string, EfficientNetSpec> specs = {
      {"efficientnet_b0", {1.0, 1.0, 0.2, bn_b0}}, {"efficientnet_b1", {1.0, 1.1, 0.2, bn_b0}},
      {"efficientnet_b2", {1.1, 1.2, 0.3, bn_b0}}, {"efficientnet_b3", {1.2, 1.4, 0.3, bn_b0}},
      {"efficientnet_b4", {1.4, 1.8, 0.4, bn_b0}}, {"efficientnet_b5", {1.6, 2.2, 0.4, bn_b5}},
      {"efficientnet_b6", {1.8, 2.6, 0.5, bn_b5}}, {"efficientnet_b7", {2.0, 3.1, 0.5, bn_b5}},
  };
  auto it = specs.find(name);
  if (it == specs.end()) {
    std::string known;
    for (const auto& [k, v] : specs) known += (known.empty() ? "" : ", ") + k;
    throw Error(str_cat("efficientnet_spec: unknown EfficientNet variant \"", name, "\"; known: ", known));
  }
  return it->second;
}

EfficientNet::EfficientNet(const ModelOptions& o, const EfficientNetSpec& spec)
    : ClassifierModel("EfficientNet"), in_channels_(o.in_channels), num_classes_(o.num_classes), gen_(o.gen) {
  ORBIT_CHECK(o.in_channels > 0 && o.num_classes > 0, "EfficientNet: expected positive in_channels and num_classes, got ",
              o.in_channels, " and ", o.num_classes);
  ORBIT_CHECK(spec.width_mult > 0 && spec.depth_mult > 0, "EfficientNet: expected positive width and depth multipliers, got ",
              spec.width_mult, " and ", spec.depth_mult);
  const double dropout = o.dropout.value_or(spec.dropout);
  ORBIT_CHECK(dropout >= 0 && dropout <= 1, "EfficientNet: dropout must be in [0, 1], got ", dropout);
  auto width = [&](int64_t c) { return make_divisible(static_cast<double>(c) * spec.width_mult, 8); };
  auto depth = [&](int64_t n) { return static_cast<int64_t>(std::ceil(static_cast<double>(n) * spec.depth_mult)); };

  features_ = register_module("features", std::make_shared<Sequential>());
  features_->push_back(conv_norm_act(o.in_channels, width(kStages[0].in), 3, 2, 1, true, spec.bn, o.gen));
  int64_t total = 0, index = 0;
  for (const StageConfig& s : kStages) total += depth(s.layers);
  for (const StageConfig& s : kStages) {
    auto stage = std::make_shared<Sequential>();
    for (int64_t b = 0; b < depth(s.layers); ++b, ++index) {
      const double sd = spec.stochastic_depth_prob * static_cast<double>(index) / static_cast<double>(total);
      stage->push_back(std::make_shared<MBConv>(b == 0 ? width(s.in) : width(s.out), width(s.out), s.expand_ratio,
                                                s.kernel, b == 0 ? s.stride : 1, sd, spec.bn, o.gen));
    }
    features_->push_back(stage);
  }
  const int64_t last_in = width(kStages[6].out);
  num_features_ = 4 * last_in;
  features_->push_back(conv_norm_act(last_in, num_features_, 1, 1, 1, true, spec.bn, o.gen));
  avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1));
  classifier_ = register_module("classifier", std::make_shared<Sequential>());
  classifier_->push_back(std::make_shared<Dropout>(dropout, true, o.gen));
  classifier_->push_back(effnet_linear(num_features_, o.num_classes, o.gen));
}

Tensor EfficientNet::forward_features(const Tensor& x) {
  ORBIT_CHECK(x.dim() == 4 && x.size(1) == in_channels_ && x.size(2) > 0 && x.size(3) > 0,
              "EfficientNet: expected input [N, ", in_channels_, ", H, W], got ", shape_str(x.shape()));
  return (*avgpool_)((*features_)(x)).flatten(1);
}

Tensor EfficientNet::forward_head(const Tensor& features) {
  ORBIT_CHECK(features.dim() == 2 && features.size(1) == num_features_,
              "EfficientNet::forward_head: expected features [N, ", num_features_, "], got ", shape_str(features.shape()));
  return (*classifier_)(features);
}

void EfficientNet::reset_classifier(int64_t num_classes, Generator* gen) {
  ORBIT_CHECK(num_classes > 0, "EfficientNet::reset_classifier: expected num_classes > 0, got ", num_classes);
  const Tensor old = classifier_->state_dict().at("1.weight");
  auto head = effnet_linear(num_features_, num_classes, gen);
  head->to(old.device());
  head->to(old.dtype());
  classifier_->replace_module("1", head);
  num_classes_ = num_classes;
}

std::vector<std::pair<std::string, std::string>> EfficientNet::parameter_groups() const {
  std::vector<std::pair<std::string, std::string>> g = {{"stem", "features.0."}};
  for (int s = 1; s <= 7; ++s) g.push_back({str_cat("stage", s), str_cat("features.", s, ".")});
  g.push_back({"head_conv", "features.8."});
  g.push_back({"head", "classifier."});
  return g;
}

}  // namespace orbit

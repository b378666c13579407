// The torchvision ResNet family and its blocks (models/resnet.h).
#include "models/resnet.h"

#include <map>

#include "layers/init.h"

namespace orbit {

std::shared_ptr<Conv2d> resnet_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, Generator* gen,
                                    int64_t groups) {
  auto conv = std::make_shared<Conv2d>(in, out, kernel, stride, /*padding=*/kernel / 2, /*dilation=*/1, groups,
                                       /*bias=*/false, ConvPadding::Zeros, gen);
  init::kaiming_normal_(conv->weight, 0.0, "fan_out", "relu", gen);
  return conv;
}

namespace {
// downsample = Sequential(conv 1x1 with the stride, BatchNorm2d): "downsample.0", "downsample.1".
std::shared_ptr<Sequential> make_downsample(int64_t in, int64_t out, int64_t stride, Generator* gen) {
  auto d = std::make_shared<Sequential>();
  d->push_back(resnet_conv(in, out, 1, stride, gen));
  d->push_back(std::make_shared<BatchNorm2d>(out));
  return d;
}
}  // namespace

// ---------------------------------------------------------------------------------- BasicBlock

BasicBlock::BasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator* gen)
    : Module("BasicBlock") {
  // Registration order = torchvision's, hence the same state_dict order.
  conv1_ = register_module("conv1", resnet_conv(in_channels, out_channels, 3, stride, gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(out_channels));
  relu_ = register_module("relu", std::make_shared<ReLU>(true));
  conv2_ = register_module("conv2", resnet_conv(out_channels, out_channels, 3, 1, gen));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(out_channels));
  if (stride != 1 || in_channels != out_channels)
    downsample_ = register_module("downsample", make_downsample(in_channels, out_channels, stride, gen));
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = (*relu_)((*bn1_)((*conv1_)(x)));
  out = (*bn2_)((*conv2_)(out));
  const Tensor identity = downsample_ ? (*downsample_)(x) : x;
  return (*relu_)(add(out, identity));
}

// ---------------------------------------------------------------------------------- Bottleneck

Bottleneck::Bottleneck(int64_t in_channels, int64_t planes, int64_t stride, int64_t groups, int64_t base_width,
                       Generator* gen)
    : Module("Bottleneck") {
  const int64_t width = planes * base_width / 64 * groups;
  const int64_t out = planes * kExpansion;
  conv1_ = register_module("conv1", resnet_conv(in_channels, width, 1, 1, gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(width));
  conv2_ = register_module("conv2", resnet_conv(width, width, 3, stride, gen, groups));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(width));
  conv3_ = register_module("conv3", resnet_conv(width, out, 1, 1, gen));
  bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(out));
  relu_ = register_module("relu", std::make_shared<ReLU>(true));
  if (stride != 1 || in_channels != out)
    downsample_ = register_module("downsample", make_downsample(in_channels, out, stride, gen));
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor out = (*relu_)((*bn1_)((*conv1_)(x)));
  out = (*relu_)((*bn2_)((*conv2_)(out)));
  out = (*bn3_)((*conv3_)(out));
  const Tensor identity = downsample_ ? (*downsample_)(x) : x;
  return (*relu_)(add(out, identity));
}

// ---------------------------------------------------------------------------------- ResNet

ResNetSpec resnet_spec(const std::string& name) {
  static const std::map<std::string, ResNetSpec> specs = {
      {"resnet18", {false, {2, 2, 2, 2}, 1, 64}},
      {"resnet34", {false, {3, 4, 6, 3}, 1, 64}},
      {"resnet50", {true, {3, 4, 6, 3}, 1, 64}},
      {"resnet101", {true, {3, 4, 23, 3}, 1, 64}},
      {"resnet152", {true, {3, 8, 36, 3}, 1, 64}},
      {"resnext50_32x4d", {true, {3, 4, 6, 3}, 32, 4}},
      {"resnext101_32x8d", {true, {3, 4, 23, 3}, 32, 8}},
      {"resnext101_64x4d", {true, {3, 4, 23, 3}, 64, 4}},
      {"wide_resnet50_2", {true, {3, 4, 6, 3}, 1, 128}},
      {"wide_resnet101_2", {true, {3, 4, 23, 3}, 1, 128}},
  };
  auto it = specs.find(name);
  if (it == specs.end()) {
    std::string known;
    for (const auto& [k, v] : specs) known += (known.empty() ? "" : ", ") + k;
    throw Error(str_cat("resnet_spec: unknown ResNet variant \"", name, "\"; known: ", known));
  }
  return it->second;
}

ResNet::ResNet(const ModelOptions& o, const ResNetSpec& spec)
    : ClassifierModel("ResNet"), in_channels_(o.in_channels), num_classes_(o.num_classes) {
  ORBIT_CHECK(o.in_channels > 0 && o.num_classes > 0, "ResNet: expected positive in_channels and num_classes, got ",
              o.in_channels, " and ", o.num_classes);
  ORBIT_CHECK(spec.layers.size() == 4, "ResNet: expected blocks for 4 stages, got ", spec.layers.size());
  for (int64_t n : spec.layers) ORBIT_CHECK(n >= 1, "ResNet: expected at least one block per stage, got ", n);
  ORBIT_CHECK(spec.groups >= 1 && spec.width_per_group >= 1, "ResNet: expected groups and width_per_group >= 1, got ",
              spec.groups, " and ", spec.width_per_group);
  ORBIT_CHECK(spec.bottleneck || (spec.groups == 1 && spec.width_per_group == 64),
              "ResNet: BasicBlock only supports groups = 1 and width_per_group = 64 (as torchvision), got ",
              spec.groups, " and ", spec.width_per_group);
  ORBIT_CHECK(o.dropout.value_or(0.0) == 0.0, "ResNet: torchvision's ResNet has no dropout; expected dropout 0 or unset, got ",
              *o.dropout);
  const int64_t expansion = spec.bottleneck ? Bottleneck::kExpansion : BasicBlock::kExpansion;
  conv1_ = register_module("conv1", resnet_conv(o.in_channels, 64, 7, 2, o.gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(64));
  relu_ = register_module("relu", std::make_shared<ReLU>(true));
  maxpool_ = register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
  int64_t in = 64;
  auto make_layer = [&](int64_t planes, int64_t blocks, int64_t stride) {
    auto layer = std::make_shared<Sequential>();
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t s = b == 0 ? stride : 1;
      if (spec.bottleneck)
        layer->push_back(std::make_shared<Bottleneck>(in, planes, s, spec.groups, spec.width_per_group, o.gen));
      else
        layer->push_back(std::make_shared<BasicBlock>(in, planes, s, o.gen));
      in = planes * expansion;
    }
    return layer;
  };
  layer1_ = register_module("layer1", make_layer(64, spec.layers[0], 1));
  layer2_ = register_module("layer2", make_layer(128, spec.layers[1], 2));
  layer3_ = register_module("layer3", make_layer(256, spec.layers[2], 2));
  layer4_ = register_module("layer4", make_layer(512, spec.layers[3], 2));
  avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1, 1));
  num_features_ = 512 * expansion;
  fc_ = register_module("fc", std::make_shared<Linear>(num_features_, o.num_classes, true, o.gen));
}

Tensor ResNet::forward_features(const Tensor& x) {
  ORBIT_CHECK(x.dim() == 4 && x.size(1) == in_channels_ && x.size(2) > 0 && x.size(3) > 0,
              "ResNet: expected input [N, ", in_channels_, ", H, W], got ", shape_str(x.shape()));
  Tensor y = (*maxpool_)((*relu_)((*bn1_)((*conv1_)(x))));
  y = (*layer1_)(y);
  y = (*layer2_)(y);
  y = (*layer3_)(y);
  y = (*layer4_)(y);
  return (*avgpool_)(y).flatten(1);
}

Tensor ResNet::forward_head(const Tensor& features) {
  ORBIT_CHECK(features.dim() == 2 && features.size(1) == num_features_, "ResNet::forward_head: expected features [N, ",
              num_features_, "], got ", shape_str(features.shape()));
  return (*fc_)(features);
}

void ResNet::reset_classifier(int64_t num_classes, Generator* gen) {
  ORBIT_CHECK(num_classes > 0, "ResNet::reset_classifier: expected num_classes > 0, got ", num_classes);
  auto head = std::make_shared<Linear>(num_features_, num_classes, true, gen);
  head->to(fc_->weight.device());
  head->to(fc_->weight.dtype());
  fc_ = replace_module("fc", head);
  num_classes_ = num_classes;
}

std::vector<std::pair<std::string, std::string>> ResNet::parameter_groups() const {
  return {{"stem", "conv1."},    {"stem", "bn1."},     {"layer1", "layer1."}, {"layer2", "layer2."},
          {"layer3", "layer3."}, {"layer4", "layer4."}, {"head", "fc."}};
}

}  // namespace orbit

// ResNetSmall (models/resnet_small.h).
#include "models/resnet_small.h"

#include "layers/init.h"

namespace orbit {

namespace {
// layerN: two BasicBlocks named "0" and "1"; the first changes width and stride.
std::shared_ptr<Sequential> make_layer(int64_t in, int64_t out, int64_t stride, Generator* gen) {
  auto layer = std::make_shared<Sequential>();
  layer->push_back(std::make_shared<BasicBlock>(in, out, stride, gen));
  layer->push_back(std::make_shared<BasicBlock>(out, out, 1, gen));
  return layer;
}
}  // namespace

// ---------------------------------------------------------------------------------- ResNetSmall

ResNetSmall::ResNetSmall(const ModelOptions& o, int64_t width)
    : ClassifierModel("ResNetSmall"), in_channels_(o.in_channels), num_classes_(o.num_classes), width_(width) {
  ORBIT_CHECK(o.in_channels > 0 && o.num_classes > 0, "ResNetSmall: expected positive in_channels and num_classes, got ",
              o.in_channels, " and ", o.num_classes);
  ORBIT_CHECK(width > 0, "ResNetSmall: expected a positive width, got ", width);
  const double dropout = o.dropout.value_or(0.25);
  ORBIT_CHECK(dropout >= 0 && dropout < 1, "ResNetSmall: dropout must be in [0, 1), got ", dropout);
  const int64_t w = width;
  conv1_ = register_module("conv1", resnet_conv(o.in_channels, w, 3, 1, o.gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(w));
  relu_ = register_module("relu", std::make_shared<ReLU>(true));
  layer1_ = register_module("layer1", make_layer(w, w, 1, o.gen));
  layer2_ = register_module("layer2", make_layer(w, 2 * w, 2, o.gen));
  layer3_ = register_module("layer3", make_layer(2 * w, 4 * w, 2, o.gen));
  layer4_ = register_module("layer4", make_layer(4 * w, 8 * w, 2, o.gen));
  avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1, 1));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(dropout, false, o.gen));
  fc_ = register_module("fc", std::make_shared<Linear>(8 * w, o.num_classes, true, o.gen));
}

Tensor ResNetSmall::forward_features(const Tensor& x) {
  ORBIT_CHECK(x.dim() == 4 && x.size(1) == in_channels_ && x.size(2) > 0 && x.size(3) > 0,
              "ResNetSmall: expected input [N, ", in_channels_, ", H, W], got ", shape_str(x.shape()));
  Tensor y = (*relu_)((*bn1_)((*conv1_)(x)));
  y = (*layer1_)(y);
  y = (*layer2_)(y);
  y = (*layer3_)(y);
  y = (*layer4_)(y);
  return (*avgpool_)(y).flatten(1);
}

Tensor ResNetSmall::forward_head(const Tensor& features) {
  ORBIT_CHECK(features.dim() == 2 && features.size(1) == 8 * width_, "ResNetSmall::forward_head: expected features [N, ",
              8 * width_, "], got ", shape_str(features.shape()));
  return (*fc_)((*dropout_)(features));
}

void ResNetSmall::reset_classifier(int64_t num_classes, Generator* gen) {
  ORBIT_CHECK(num_classes > 0, "ResNetSmall::reset_classifier: expected num_classes > 0, got ", num_classes);
  auto head = std::make_shared<Linear>(8 * width_, num_classes, true, gen);
  head->to(fc_->weight.device());
  head->to(fc_->weight.dtype());
  fc_ = replace_module("fc", head);
  num_classes_ = num_classes;
}

std::vector<std::pair<std::string, std::string>> ResNetSmall::parameter_groups() const {
  return {{"stem", "conv1."},    {"stem", "bn1."},     {"layer1", "layer1."}, {"layer2", "layer2."},
          {"layer3", "layer3."}, {"layer4", "layer4."}, {"head", "fc."}};
}

}  // namespace orbit

// BatchNorm1d / BatchNorm2d: parameters, running-statistics buffers, train / eval / frozen modes.
#include "layers/layers.h"

namespace orbit {

BatchNorm::BatchNorm(const char* name, int64_t num_features, double eps, std::optional<double> momentum,
                     bool affine, bool track_running_stats)
    : Module(name), num_features_(num_features), eps_(eps), momentum_(momentum), affine_(affine),
      track_(track_running_stats) {
  ORBIT_CHECK(num_features > 0, name, ": num_features must be positive, got ", num_features);
  ORBIT_CHECK(eps > 0, name, ": eps must be positive, got ", eps);
  ORBIT_CHECK(!momentum || (*momentum >= 0 && *momentum <= 1), name, ": momentum must be in [0, 1] (or "
              "nullopt for a cumulative average), got ", momentum ? *momentum : 0.0);
  if (affine) {
    weight = register_parameter("weight", Tensor::ones({num_features}));
    bias = register_parameter("bias", Tensor::zeros({num_features}));
  }
  if (track_running_stats) {
    running_mean = register_buffer("running_mean", Tensor::zeros({num_features}));
    running_var = register_buffer("running_var", Tensor::ones({num_features}));
    num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::I64));
  }
}

void BatchNorm::reset_running_stats() {
  if (!track_) return;
  NoGradGuard ng;
  running_mean.zero_();
  running_var.fill_(1.0);
  num_batches_tracked.zero_();
}

void BatchNorm::reset_parameters() {
  reset_running_stats();
  if (!affine_) return;
  NoGradGuard ng;
  weight.fill_(1.0);
  bias.zero_();
}

void BatchNorm::freeze(bool on) {
  ORBIT_CHECK(!on || track_, name(), ": freeze() needs running statistics, but the layer was built with "
              "track_running_stats=False");
  frozen_ = on;
}

Tensor BatchNorm::forward(const Tensor& x) {
  ORBIT_CHECK(x.defined(), name(), ": undefined input");
  check_input(x);
  ORBIT_CHECK(x.size(1) == num_features_, name(), "(", num_features_, "): expected input with ", num_features_,
              " channels in dim 1, got shape ", shape_str(x.shape()));
  if (frozen_) return batch_norm(x, running_mean, running_var, weight, bias, /*training=*/false, 0.0, eps_);

  // As torch.nn.modules.batchnorm._BatchNorm.forward.
  double factor = momentum_.value_or(0.0);
  if (training_ && track_) {
    NoGradGuard ng;
    const double count = num_batches_tracked.item() + 1;
    num_batches_tracked.fill_(count);
    if (!momentum_) factor = 1.0 / count;  // cumulative moving average
  }
  // Batch statistics in training, and always when there are no running statistics.
  const bool use_batch_stats = training_ || !track_;
  return batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, factor, eps_);
}

std::string BatchNorm::extra_repr() const {
  return str_cat(num_features_, ", eps=", detail::py_float(eps_),
                 ", momentum=", momentum_ ? detail::py_float(*momentum_) : std::string("None"),
                 ", affine=", detail::py_bool(affine_), ", track_running_stats=", detail::py_bool(track_));
}

BatchNorm1d::BatchNorm1d(int64_t num_features, double eps, std::optional<double> momentum, bool affine,
                         bool track_running_stats)
    : BatchNorm("BatchNorm1d", num_features, eps, momentum, affine, track_running_stats) {}

void BatchNorm1d::check_input(const Tensor& x) const {
  ORBIT_CHECK(x.dim() == 2 || x.dim() == 3, "BatchNorm1d: expected 2D or 3D input (got ", x.dim(),
              "D input of shape ", shape_str(x.shape()), ")");
}

BatchNorm2d::BatchNorm2d(int64_t num_features, double eps, std::optional<double> momentum, bool affine,
                         bool track_running_stats)
    : BatchNorm("BatchNorm2d", num_features, eps, momentum, affine, track_running_stats) {}

void BatchNorm2d::check_input(const Tensor& x) const {
  ORBIT_CHECK(x.dim() == 4, "BatchNorm2d: expected 4D input (got ", x.dim(), "D input of shape ",
              shape_str(x.shape()), ")");
}

}  // namespace orbit

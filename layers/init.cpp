// Parameter initialization (torch.nn.init semantics, engine Generator).
#include "layers/init.h"

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"

namespace orbit::init {

namespace {

// Writes host-drawn values into t (values are drawn in element order on the host, so results do
// not depend on device or thread count).
void assign(const Tensor& t, const Tensor& values) {
  NoGradGuard ng;
  Tensor dst = t;
  dst.copy_(values);
}

void check_floating(const Tensor& t, const char* fn) {
  ORBIT_CHECK(t.defined(), "init::", fn, ": undefined tensor");
  ORBIT_CHECK(is_floating(t.dtype()), "init::", fn, ": expected a floating tensor, got ",
              dtype_name(t.dtype()));
}

double fan_for(const Tensor& t, const std::string& mode, const char* fn) {
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  ORBIT_CHECK(mode == "fan_in" || mode == "fan_out", "init::", fn, ": mode must be 'fan_in' or 'fan_out', got '",
              mode, "'");
  const int64_t fan = mode == "fan_in" ? fan_in : fan_out;
  ORBIT_CHECK(fan > 0, "init::", fn, ": cannot initialize a tensor of shape ", shape_str(t.shape()),
              " (its ", mode, " is 0)");
  return static_cast<double>(fan);
}

}  // namespace

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  ORBIT_CHECK(t.dim() >= 2, "init::calculate_fan_in_and_fan_out: fan in and fan out can not be computed for a "
              "tensor with fewer than 2 dimensions, got shape ", shape_str(t.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "sigmoid") return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  throw Error(str_cat("init::calculate_gain: unsupported nonlinearity '", nl,
                      "' (known: linear, conv1d, conv2d, conv3d, sigmoid, tanh, relu, leaky_relu, selu)"));
}

void uniform_(const Tensor& t, double a, double b, Generator* gen) {
  check_floating(t, "uniform_");
  assign(t, Tensor::uniform(t.shape(), a, b, gen, DType::F64));
}

void normal_(const Tensor& t, double mean, double std, Generator* gen) {
  check_floating(t, "normal_");
  ORBIT_CHECK(std >= 0, "init::normal_: std must be >= 0, got ", std);
  Generator& g = gen ? *gen : default_generator();
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (auto& x : v) x = mean + std * g.normal();
  assign(t, Tensor::from_vector(v, t.shape()));
}

void constant_(const Tensor& t, double value) {
  ORBIT_CHECK(t.defined(), "init::constant_: undefined tensor");
  NoGradGuard ng;
  Tensor dst = t;
  dst.fill_(value);
}
void zeros_(const Tensor& t) { constant_(t, 0.0); }
void ones_(const Tensor& t) { constant_(t, 1.0); }

void trunc_normal_(const Tensor& t, double mean, double std, double a, double b, Generator* gen) {
  check_floating(t, "trunc_normal_");
  ORBIT_CHECK(std > 0 && a < b, "init::trunc_normal_: expected std > 0 and a < b, got std=", std, ", a=", a,
              ", b=", b);
  // Rejection sampling needs the interval to carry some mass.
  const double lo = (a - mean) / std, hi = (b - mean) / std;
  const double mass = 0.5 * (std::erf(hi / std::sqrt(2.0)) - std::erf(lo / std::sqrt(2.0)));
  ORBIT_CHECK(mass > 1e-6, "init::trunc_normal_: [a, b] = [", a, ", ", b,
              "] is too far in the tail of N(", mean, ", ", std, "^2) for rejection sampling");
  Generator& g = gen ? *gen : default_generator();
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (auto& x : v) {
    do {
      x = mean + std * g.normal();
    } while (x < a || x > b);
  }
  assign(t, Tensor::from_vector(v, t.shape()));
}

void kaiming_uniform_(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                      Generator* gen) {
  check_floating(t, "kaiming_uniform_");
  const double std = calculate_gain(nonlinearity, a) / std::sqrt(fan_for(t, mode, "kaiming_uniform_"));
  const double bound = std::sqrt(3.0) * std;
  uniform_(t, -bound, bound, gen);
}

void kaiming_normal_(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                     Generator* gen) {
  check_floating(t, "kaiming_normal_");
  const double std = calculate_gain(nonlinearity, a) / std::sqrt(fan_for(t, mode, "kaiming_normal_"));
  normal_(t, 0.0, std, gen);
}

void xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_uniform_");
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  const double std = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  const double bound = std::sqrt(3.0) * std;
  uniform_(t, -bound, bound, gen);
}

void xavier_normal_(const Tensor& t, double gain, Generator* gen) {
  check_floating(t, "xavier_normal_");
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out)), gen);
}

}  // namespace orbit::init

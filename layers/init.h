// Parameter initialization, as torch.nn.init: each function overwrites a tensor in place (without
// recording autograd) with values drawn from an engine Generator (the default one when gen is null),
// so that building a model is reproducible from a seed.
#pragma once

#include <string>
#include <utility>

#include "engine/random.h"
#include "engine/tensor.h"

namespace orbit::init {

// (fan_in, fan_out) of a weight [out, in, *kernel]: in * prod(kernel), out * prod(kernel).
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);
// Recommended gain for a nonlinearity: "linear", "conv2d", "sigmoid" (1), "tanh" (5/3),
// "relu" (sqrt 2), "leaky_relu" (sqrt(2 / (1 + param^2))), "selu" (3/4).
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

void uniform_(const Tensor& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
void normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
void constant_(const Tensor& t, double value);
void zeros_(const Tensor& t);
void ones_(const Tensor& t);
// Normal(mean, std) restricted to [a, b] (by rejection, so the density is exactly truncated).
void trunc_normal_(const Tensor& t, double mean = 0.0, double std = 1.0, double a = -2.0, double b = 2.0,
                   Generator* gen = nullptr);

// He initialization. mode "fan_in" or "fan_out"; std = gain / sqrt(fan) with
// gain = calculate_gain(nonlinearity, a); the uniform variant draws from [-sqrt(3) std, sqrt(3) std].
// Conv2d and Linear use kaiming_uniform_(w, a = sqrt(5)), i.e. bound = 1 / sqrt(fan_in).
void kaiming_uniform_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                      const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
void kaiming_normal_(const Tensor& t, double a = 0.0, const std::string& mode = "fan_in",
                     const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// Glorot initialization: std = gain * sqrt(2 / (fan_in + fan_out)).
void xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
void xavier_normal_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace orbit::init

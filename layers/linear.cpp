// Linear: y = x W^T + b with PyTorch's default initialization and repr.
#include <cmath>

#include "layers/init.h"
#include "layers/layers.h"

namespace orbit {

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator* gen)
    : Module("Linear"), in_(in_features), out_(out_features) {
  ORBIT_CHECK(in_features >= 0 && out_features >= 0, "Linear: in_features and out_features must be "
              "non-negative, got ", in_features, " and ", out_features);
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  if (has_bias) bias = register_parameter("bias", Tensor::empty({out_features}));
  reset_parameters(gen);
}

void Linear::reset_parameters(Generator* gen) {
  if (in_ > 0 && out_ > 0) init::kaiming_uniform_(weight, std::sqrt(5.0), "fan_in", "leaky_relu", gen);
  if (bias.defined()) {
    const double bound = in_ > 0 ? 1.0 / std::sqrt(static_cast<double>(in_)) : 0.0;
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) {
  ORBIT_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_, "Linear(in_features=", in_, ", out_features=",
              out_, "): expected input [..., ", in_, "], got ",
              x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  return linear(x, weight, bias);
}

std::string Linear::extra_repr() const {
  return str_cat("in_features=", in_, ", out_features=", out_, ", bias=", detail::py_bool(bias.defined()));
}

}  // namespace orbit

// Activation layers: thin modules over the engine's activation ops.
#include "layers/layers.h"

namespace orbit {

ReLU::ReLU(bool inplace) : Module("ReLU"), inplace_(inplace) {}
Tensor ReLU::forward(const Tensor& x) { return relu(x); }
std::string ReLU::extra_repr() const { return inplace_ ? "inplace=True" : ""; }

SiLU::SiLU(bool inplace) : Module("SiLU"), inplace_(inplace) {}
Tensor SiLU::forward(const Tensor& x) { return silu(x); }
std::string SiLU::extra_repr() const { return inplace_ ? "inplace=True" : ""; }

GELU::GELU(const std::string& approximate) : Module("GELU"), approximate_(approximate) {
  ORBIT_CHECK(approximate == "none" || approximate == "tanh", "GELU: approximate must be 'none' or 'tanh', got '",
              approximate, "'");
}
Tensor GELU::forward(const Tensor& x) { return gelu(x, approximate_ == "tanh"); }
std::string GELU::extra_repr() const { return "approximate='" + approximate_ + "'"; }

Sigmoid::Sigmoid() : Module("Sigmoid") {}
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }

Tanh::Tanh() : Module("Tanh") {}
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }

}  // namespace orbit

// Dropout, Flatten and Identity.
#include "layers/layers.h"

namespace orbit {

Dropout::Dropout(double p, bool inplace, Generator* gen)
    : Module("Dropout"), p_(p), inplace_(inplace), gen_(gen) {
  ORBIT_CHECK(p >= 0.0 && p <= 1.0, "Dropout: dropout probability has to be between 0 and 1, but got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, training_, gen_); }

std::string Dropout::extra_repr() const {
  return str_cat("p=", detail::py_float(p_), ", inplace=", detail::py_bool(inplace_));
}

StochasticDepth::StochasticDepth(double p, const std::string& mode, Generator* gen)
    : Module("StochasticDepth"), p_(p), mode_(mode), gen_(gen) {
  ORBIT_CHECK(p >= 0.0 && p <= 1.0, "StochasticDepth: drop probability has to be between 0 and 1, but got ", p);
  ORBIT_CHECK(mode == "row" || mode == "batch", "StochasticDepth: mode has to be either 'batch' or 'row', but got ", mode);
}

Tensor StochasticDepth::forward(const Tensor& x) {
  if (!training_ || p_ == 0.0) return x;
  Shape shape(static_cast<size_t>(x.dim()), 1);  // one draw per sample ("row") or for all ("batch")
  if (mode_ == "row" && x.dim() > 0) shape[0] = x.size(0);
  const double survival = 1.0 - p_;
  // keep = 1 with probability `survival`, scaled by 1 / survival so the expectation is unchanged.
  Tensor keep = lt(Tensor::rand(shape, gen_, x.dtype()).to(x.device()), Tensor::full({}, survival, x.dtype(), x.device()));
  if (survival > 0.0) keep = mul(keep, 1.0 / survival);
  return mul(x, keep);
}

std::string StochasticDepth::extra_repr() const { return str_cat("p=", detail::py_float(p_), ", mode=", mode_); }

Flatten::Flatten(int64_t start_dim, int64_t end_dim) : Module("Flatten"), start_(start_dim), end_(end_dim) {}

Tensor Flatten::forward(const Tensor& x) { return x.flatten(start_, end_); }

std::string Flatten::extra_repr() const { return str_cat("start_dim=", start_, ", end_dim=", end_); }

Identity::Identity() : Module("Identity") {}

}  // namespace orbit

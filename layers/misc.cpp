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

Flatten::Flatten(int64_t start_dim, int64_t end_dim) : Module("Flatten"), start_(start_dim), end_(end_dim) {}

Tensor Flatten::forward(const Tensor& x) { return x.flatten(start_, end_); }

std::string Flatten::extra_repr() const { return str_cat("start_dim=", start_, ", end_dim=", end_); }

Identity::Identity() : Module("Identity") {}

}  // namespace orbit

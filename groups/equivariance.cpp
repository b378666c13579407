// Equivariance checks that return the error, and group averaging.
#include "groups/equivariance.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/ops.h"

namespace orbit::groups {

namespace {

// "1.2e-07"
std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1e", v);
  return buf;
}

// ρ_out(g)·y for an output y of a model whose input images are H x W (the size boxes live in).
Tensor act_output(const Group& G, int64_t g, const Tensor& y, FieldKind kind, int64_t H, int64_t W) {
  if (kind == FieldKind::Boxes) return act_boxes(G, g, y, H, W);
  return act(G, g, y, kind);
}

void check_input_kind(const char* op, const Group& G, const Tensor& x, FieldKind in_kind) {
  ORBIT_CHECK(in_kind != FieldKind::Boxes, op, ": group ", G.name(),
              ": received in_kind boxes, expected a field on the image grid (scalar, pseudo_scalar, vector) "
              "or invariant");
  const int64_t min_dim = in_kind == FieldKind::Invariant ? 1 : 3;
  ORBIT_CHECK(x.defined() && x.dim() >= min_dim, op, ": group ", G.name(), ": expected a batch ",
              min_dim == 1 ? "[N, ...]" : "[N, ..., H, W]", " for in_kind ", field_kind_name(in_kind), ", got ",
              x.defined() ? shape_str(x.shape()) : "an undefined tensor");
}

// The image size that output boxes live in: the input's last two dims (0 when it has none).
int64_t image_dim(const Tensor& x, int64_t d) { return x.dim() >= 2 ? x.size(d) : 0; }

}  // namespace

std::string EquivarianceReport::str() const {
  std::string s = group + ": mean " + sci(mean_error) + ", max " + sci(max_error) + " (";
  for (size_t i = 1; i < error.size(); ++i) {
    if (i > 1) s += ", ";
    s += (i < element_names.size() ? element_names[i] : "g" + std::to_string(i)) + " " + sci(error[i]);
  }
  return s + ")";
}

EquivarianceReport check_equivariance(const ModelFn& f, const Group& G, const Tensor& x, FieldKind in_kind,
                                      FieldKind out_kind, double eps) {
  check_input_kind("check_equivariance", G, x, in_kind);
  const int64_t H = image_dim(x, -2), W = image_dim(x, -1);
  EquivarianceReport report;
  report.group = G.name();
  report.error.assign(static_cast<size_t>(G.order()), 0.0);
  for (int64_t g = 0; g < G.order(); ++g) report.element_names.push_back(G.element_name(g));

  const Tensor fx = f(x);
  ORBIT_CHECK(fx.defined() && fx.dim() >= 1 && fx.size(0) == x.size(0), "check_equivariance: group ", G.name(),
              ": expected the model to return one output row per input item (", x.size(0), "), got ",
              fx.defined() ? shape_str(fx.shape()) : "an undefined tensor");
  const int64_t N = fx.size(0);
  const int64_t per_item = N > 0 ? fx.numel() / N : 0;
  const std::vector<double> fx_values = fx.detach().to_vector<double>();
  std::vector<double> fx_norm(static_cast<size_t>(N), 0.0);
  for (int64_t i = 0; i < N; ++i) {
    double s = 0;
    for (int64_t j = 0; j < per_item; ++j) s += fx_values[static_cast<size_t>(i * per_item + j)] * fx_values[static_cast<size_t>(i * per_item + j)];
    fx_norm[static_cast<size_t>(i)] = std::max(std::sqrt(s), eps);
  }

  double sum = 0;
  for (int64_t g = 1; g < G.order(); ++g) {
    const Tensor fgx = f(act(G, g, x, in_kind));
    const Tensor expected = act_output(G, g, fx, out_kind, H, W);
    ORBIT_CHECK(fgx.shape() == expected.shape(), "check_equivariance: group ", G.name(), ", element ",
                G.element_name(g), ": f(g·x) has shape ", shape_str(fgx.shape()), ", expected ",
                shape_str(expected.shape()), " (the shape of ρ_out(g)·f(x))");
    const std::vector<double> a = fgx.detach().to_vector<double>(), b = expected.detach().to_vector<double>();
    double err = 0;
    for (int64_t i = 0; i < N; ++i) {
      double d2 = 0;
      for (int64_t j = 0; j < per_item; ++j) {
        const double d = a[static_cast<size_t>(i * per_item + j)] - b[static_cast<size_t>(i * per_item + j)];
        d2 += d * d;
      }
      err += std::sqrt(d2) / fx_norm[static_cast<size_t>(i)];
    }
    err = N > 0 ? err / static_cast<double>(N) : 0.0;
    report.error[static_cast<size_t>(g)] = err;
    sum += err;
    report.max_error = std::max(report.max_error, err);
  }
  report.mean_error = G.order() > 1 ? sum / static_cast<double>(G.order() - 1) : 0.0;
  return report;
}

GroupAveraged::GroupAveraged(std::shared_ptr<Module> module, Group group, FieldKind in_kind, FieldKind out_kind)
    : Module("GroupAveraged"), module_(std::move(module)), group_(std::move(group)), in_kind_(in_kind),
      out_kind_(out_kind) {
  ORBIT_CHECK(module_ != nullptr, "GroupAveraged: received a null module, expected the model to average");
  ORBIT_CHECK(in_kind_ != FieldKind::Boxes, "GroupAveraged: received in_kind boxes, expected a field on the "
              "image grid (scalar, pseudo_scalar, vector) or invariant");
  register_module("module", module_);
}

Tensor GroupAveraged::forward(const Tensor& x) {
  check_input_kind("GroupAveraged", group_, x, in_kind_);
  const int64_t N = x.size(0), G = group_.order(), H = image_dim(x, -2), W = image_dim(x, -1);
  // One forward of |G|·N items: rows [g·N, (g+1)·N) hold g·x.
  std::vector<Tensor> copies;
  copies.reserve(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) copies.push_back(act(group_, g, x, in_kind_));
  const Tensor y = (*module_)(G == 1 ? copies[0] : cat(copies, 0));
  ORBIT_CHECK(y.defined() && y.dim() >= 1 && y.size(0) == G * N, "GroupAveraged: group ", group_.name(),
              ": the wrapped ", module_->name(), " returned ", y.defined() ? shape_str(y.shape()) : "undefined",
              " for ", G * N, " items, expected ", G * N, " output rows");
  // f_G(x) = 1/|G| Σ_g ρ_out(g⁻¹)·f(g·x)
  Tensor total;
  for (int64_t g = 0; g < G; ++g) {
    const Tensor back = act_output(group_, group_.inverse(g), y.narrow(0, g * N, N), out_kind_, H, W);
    total = total.defined() ? add(total, back) : back;
  }
  return G == 1 ? total : mul(total, 1.0 / static_cast<double>(G));
}

std::string GroupAveraged::extra_repr() const {
  return str_cat("group=", group_.name(), ", in_kind=", field_kind_name(in_kind_), ", out_kind=",
                 field_kind_name(out_kind_));
}

}  // namespace orbit::groups

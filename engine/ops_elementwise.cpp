// Elementwise ops: arithmetic with broadcasting, math functions and activations.
#include <cmath>
#include <limits>

#include "engine/op_utils.h"

namespace orbit {

using namespace detail;

namespace {

Tensor binary_forward(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same(a, b, name);
  const Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty_like(a, s);
  backend_of(out).binary(op, expanded(a, s), expanded(b, s), out);
  return out;
}

Tensor unary_forward(UnaryOp op, const char* name, const Tensor& x, double alpha = 0,
                     double beta = 0) {
  check_defined(x, name, "x");
  check_floating(x, name);
  Tensor out = empty_like(x, x.shape());
  backend_of(out).unary(op, x.detach(), out, alpha, beta);
  return out;
}

}  // namespace

// ====================================================================== binary

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Add, "add", a, b);
  const Shape sa = a.shape(), sb = b.shape();
  record("add", out, {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(g, sa), sum_to(g, sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Sub, "sub", a, b);
  const Shape sa = a.shape(), sb = b.shape();
  record("sub", out, {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(g, sa), sum_to(neg(g), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Mul, "mul", a, b);
  SavedTensor sa(a, "mul"), sb(b, "mul");
  record("mul", out, {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
    const Tensor a = sa.get(), b = sb.get();
    return {sum_to(mul(g, b), a.shape()), sum_to(mul(g, a), b.shape())};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Div, "div", a, b);
  SavedTensor sb(b, "div"), so(out, "div");
  const Shape shape_a = a.shape();
  record("div", out, {a, b}, [sb, so, shape_a](const Tensor& g) -> std::vector<Tensor> {
    const Tensor b = sb.get(), y = so.get();
    const Tensor ga = div(g, b);
    return {sum_to(ga, shape_a), sum_to(neg(mul(ga, y)), b.shape())};
  });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Pow, "pow", a, b);
  SavedTensor sa(a, "pow"), sb(b, "pow"), so(out, "pow");
  record("pow", out, {a, b}, [sa, sb, so](const Tensor& g) -> std::vector<Tensor> {
    const Tensor a = sa.get(), b = sb.get(), y = so.get();
    // d/da a^b = b a^(b-1); d/db a^b = a^b log a
    const Tensor ga = mul(g, mul(b, pow(a, add(b, -1.0))));
    const Tensor gb = mul(g, mul(y, log(a)));
    return {sum_to(ga, a.shape()), sum_to(gb, b.shape())};
  });
  return out;
}

namespace {
Tensor extremum(const Tensor& a, const Tensor& b, bool is_max) {
  const char* name = is_max ? "maximum" : "minimum";
  Tensor out = binary_forward(is_max ? BinaryOp::Maximum : BinaryOp::Minimum, name, a, b);
  SavedTensor sa(a, name), sb(b, name);
  record(name, out, {a, b}, [sa, sb, is_max](const Tensor& g) -> std::vector<Tensor> {
    const Tensor a = sa.get(), b = sb.get();
    // The winner takes the gradient; ties split it equally.
    const Tensor wins = is_max ? gt(a, b) : lt(a, b);
    const Tensor share = add(wins, mul(eq(a, b), 0.5));
    return {sum_to(mul(g, share), a.shape()), sum_to(mul(g, affine(share, -1.0, 1.0)), b.shape())};
  });
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(a, b, false); }

Tensor eq(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Ge, "ge", a, b); }

// ====================================================================== with a scalar

Tensor affine(const Tensor& x, double alpha, double beta) {
  Tensor out = unary_forward(UnaryOp::Affine, "affine", x, alpha, beta);
  record("affine", out, {x}, [alpha](const Tensor& g) -> std::vector<Tensor> {
    return {alpha == 1.0 ? g : affine(g, alpha, 0.0)};
  });
  return out;
}

Tensor add(const Tensor& a, double b) { return affine(a, 1.0, b); }
Tensor mul(const Tensor& a, double b) { return affine(a, b, 0.0); }

Tensor pow(const Tensor& x, double exponent) {
  Tensor out = unary_forward(UnaryOp::PowScalar, "pow", x, exponent);
  SavedTensor sx(x, "pow");
  record("pow_scalar", out, {x}, [sx, exponent](const Tensor& g) -> std::vector<Tensor> {
    const Tensor x = sx.get();
    if (exponent == 0.0) return {mul(g, 0.0)};
    return {mul(g, mul(pow(x, exponent - 1.0), exponent))};
  });
  return out;
}

// ====================================================================== math functions

Tensor neg(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Neg, "neg", x);
  record("neg", out, {x}, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Exp, "exp", x);
  SavedTensor so(out, "exp");
  record("exp", out, {x}, [so](const Tensor& g) -> std::vector<Tensor> { return {mul(g, so.get())}; });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Log, "log", x);
  SavedTensor sx(x, "log");
  record("log", out, {x}, [sx](const Tensor& g) -> std::vector<Tensor> { return {div(g, sx.get())}; });
  return out;
}

Tensor log1p(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Log1p, "log1p", x);
  SavedTensor sx(x, "log1p");
  record("log1p", out, {x}, [sx](const Tensor& g) -> std::vector<Tensor> {
    return {div(g, add(sx.get(), 1.0))};
  });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Sqrt, "sqrt", x);
  SavedTensor so(out, "sqrt");
  record("sqrt", out, {x}, [so](const Tensor& g) -> std::vector<Tensor> {
    return {div(mul(g, 0.5), so.get())};
  });
  return out;
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Rsqrt, "rsqrt", x);
  SavedTensor so(out, "rsqrt");
  record("rsqrt", out, {x}, [so](const Tensor& g) -> std::vector<Tensor> {
    const Tensor y = so.get();  // d/dx x^(-1/2) = -1/2 y^3
    return {mul(g, mul(pow(y, 3.0), -0.5))};
  });
  return out;
}

Tensor abs(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Abs, "abs", x);
  SavedTensor sx(x, "abs");
  record("abs", out, {x}, [sx](const Tensor& g) -> std::vector<Tensor> { return {mul(g, sign(sx.get()))}; });
  return out;
}

Tensor sign(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Sign, "sign", x);
  record("sign", out, {x}, [](const Tensor& g) -> std::vector<Tensor> { return {mul(g, 0.0)}; });
  return out;
}

Tensor square(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Square, "square", x);
  SavedTensor sx(x, "square");
  record("square", out, {x}, [sx](const Tensor& g) -> std::vector<Tensor> {
    return {mul(g, mul(sx.get(), 2.0))};
  });
  return out;
}

Tensor reciprocal(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Reciprocal, "reciprocal", x);
  SavedTensor so(out, "reciprocal");
  record("reciprocal", out, {x}, [so](const Tensor& g) -> std::vector<Tensor> {
    const Tensor y = so.get();
    return {neg(mul(g, square(y)))};
  });
  return out;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  ORBIT_CHECK(!(lo > hi), "clamp: expected lo <= hi, got lo = ", lo, ", hi = ", hi);
  Tensor out = unary_forward(UnaryOp::Clamp, "clamp", x, lo, hi);
  SavedTensor sx(x, "clamp");
  record("clamp", out, {x}, [sx, lo, hi](const Tensor& g) -> std::vector<Tensor> {
    const Tensor x = sx.get();
    const Tensor inside = mul(ge(x, scalar_like(lo, x)), le(x, scalar_like(hi, x)));
    return {mul(g, inside)};
  });
  return out;
}

Tensor clamp_min(const Tensor& x, double lo) { return clamp(x, lo, std::numeric_limits<double>::infinity()); }
Tensor clamp_max(const Tensor& x, double hi) { return clamp(x, -std::numeric_limits<double>::infinity(), hi); }

// ====================================================================== activations

Tensor relu(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Relu, "relu", x);
  SavedTensor so(out, "relu");
  record("relu", out, {x}, [so](const Tensor& g) -> std::vector<Tensor> {
    const Tensor y = so.get();
    Tensor gx = empty_like(g, g.shape());
    backend_of(g).binary(BinaryOp::ReluBackward, g, y, gx);  // y > 0 exactly where x > 0
    return {gx};
  });
  return out;
}

namespace {
// Gradient via a fused backward kernel: gx = kernel(g, saved).
Tensor fused_backward(BinaryOp op, const Tensor& g, const Tensor& saved) {
  Tensor gx = empty_like(g, g.shape());
  backend_of(g).binary(op, g, saved, gx);
  return gx;
}
}  // namespace

Tensor sigmoid(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Sigmoid, "sigmoid", x);
  SavedTensor so(out, "sigmoid");
  record("sigmoid", out, {x}, [so](const Tensor& g) -> std::vector<Tensor> {
    return {fused_backward(BinaryOp::SigmoidBackward, g, so.get())};
  });
  return out;
}

Tensor tanh(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Tanh, "tanh", x);
  SavedTensor so(out, "tanh");
  record("tanh", out, {x}, [so](const Tensor& g) -> std::vector<Tensor> {
    return {fused_backward(BinaryOp::TanhBackward, g, so.get())};
  });
  return out;
}

Tensor silu(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Silu, "silu", x);
  SavedTensor sx(x, "silu");
  record("silu", out, {x}, [sx](const Tensor& g) -> std::vector<Tensor> {
    return {fused_backward(BinaryOp::SiluBackward, g, sx.get())};
  });
  return out;
}

Tensor gelu(const Tensor& x, bool tanh_approximation) {
  Tensor out = unary_forward(tanh_approximation ? UnaryOp::GeluTanh : UnaryOp::Gelu, "gelu", x);
  SavedTensor sx(x, "gelu");
  record("gelu", out, {x}, [sx, tanh_approximation](const Tensor& g) -> std::vector<Tensor> {
    return {fused_backward(tanh_approximation ? BinaryOp::GeluTanhBackward : BinaryOp::GeluBackward,
                           g, sx.get())};
  });
  return out;
}

Tensor softplus(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Softplus, "softplus", x);
  SavedTensor sx(x, "softplus");
  record("softplus", out, {x}, [sx](const Tensor& g) -> std::vector<Tensor> {
    return {mul(g, sigmoid(sx.get()))};
  });
  return out;
}

}  // namespace orbit

// Elementwise kernels of the CUDA backend: fill, strided copy with dtype conversion, unary and binary
// ops. One work item per output element; strided operands through an Indexer. The formulas are those
// of the CPU backend (engine/cpu/cpu_backend.cpp), written once for both executors (common.h).
#pragma once

#include "engine/cuda/kernels/common.h"

namespace orbit::cuda::kernels {

template <class T>
struct FillKernel {
  Indexer<1> g;
  T* out;
  T value;
  ORBIT_HD void operator()(int64_t i) const {
    int64_t o[1];
    g.offsets(i, o);
    out[o[0]] = value;
  }
};

template <class S, class D>
struct CopyKernel {
  Indexer<2> g;  // operand 0: dst, 1: src
  const S* src;
  D* dst;
  ORBIT_HD void operator()(int64_t i) const {
    int64_t o[2];
    g.offsets(i, o);
    dst[o[0]] = static_cast<D>(src[o[1]]);
  }
};

template <class Exec>
void fill(const Exec& ex, const Tensor& out, double value) {
  const auto g = make_indexer<1>(out.shape(), {out.strides()});
  dispatch_all(out.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(out.numel(), FillKernel<T>{g, ptr<T>(out), static_cast<T>(value)});
  });
}

template <class Exec>
void copy(const Exec& ex, const Tensor& src, const Tensor& dst) {
  ORBIT_CHECK(src.shape() == dst.shape(), "cuda copy: shapes differ, ", shape_str(src.shape()), " and ",
              shape_str(dst.shape()));
  const auto g = make_indexer<2>(dst.shape(), {dst.strides(), src.strides()});
  dispatch_all(src.dtype(), "copy", [&](auto stag) {
    using S = decltype(stag);
    dispatch_all(dst.dtype(), "copy", [&](auto dtag) {
      using D = decltype(dtag);
      ex.launch(dst.numel(), CopyKernel<S, D>{g, ptr<const S>(src), ptr<D>(dst)});
    });
  });
}

// ---------------------------------------------------------------------------- unary
template <class T>
ORBIT_HD inline T k_sigmoid(T x) {
  return T(1) / (T(1) + k_exp(-x));
}

template <class T>
ORBIT_HD inline T unary_value(UnaryOp op, T v, T alpha, T beta) {
  switch (op) {
    case UnaryOp::Neg: return -v;
    case UnaryOp::Exp: return k_exp(v);
    case UnaryOp::Log: return k_log(v);
    case UnaryOp::Sqrt: return k_sqrt(v);
    case UnaryOp::Rsqrt: return T(1) / k_sqrt(v);
    case UnaryOp::Abs: return k_abs(v);
    case UnaryOp::Sign: return T((v > 0) - (v < 0));
    case UnaryOp::Square: return v * v;
    case UnaryOp::Reciprocal: return T(1) / v;
    case UnaryOp::Log1p: return k_log1p(v);
    case UnaryOp::Relu: return v > T(0) ? v : T(0);
    case UnaryOp::Sigmoid: return k_sigmoid(v);
    case UnaryOp::Tanh: return k_tanh(v);
    case UnaryOp::Silu: return v * k_sigmoid(v);
    case UnaryOp::Gelu: return T(0.5) * v * (T(1) + k_erf(v * T(0.70710678118654752440)));
    case UnaryOp::GeluTanh: {
      const T k = T(0.7978845608028654);  // sqrt(2 / pi)
      return T(0.5) * v * (T(1) + k_tanh(k * (v + T(0.044715) * v * v * v)));
    }
    case UnaryOp::Softplus: return k_max(v, T(0)) + k_log1p(k_exp(-k_abs(v)));
    case UnaryOp::Affine: return alpha * v + beta;
    case UnaryOp::PowScalar: return k_pow(v, alpha);
    case UnaryOp::Clamp: return v < alpha ? alpha : (v > beta ? beta : v);  // NaN stays NaN
  }
  return v;
}

template <class T>
struct UnaryKernel {
  Indexer<2> g;  // operand 0: out, 1: x
  const T* x;
  T* out;
  UnaryOp op;
  T alpha, beta;
  int64_t n, m;  // elements, items (kUnroll elements each: i, i + m, ...)
  ORBIT_HD void operator()(int64_t i) const {
    int64_t o[kUnroll][2] = {};
    T v[kUnroll] = {};
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) {
        g.offsets(i + u * m, o[u]);
        v[u] = x[o[u][1]];
      }
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) out[o[u][0]] = unary_value(op, v[u], alpha, beta);
  }
};

template <class Exec>
void unary(const Exec& ex, UnaryOp op, const Tensor& x, const Tensor& out, double alpha, double beta) {
  const auto g = make_indexer<2>(x.shape(), {out.strides(), x.strides()});
  dispatch_float(x.dtype(), "unary op", [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = x.numel(), m = unrolled_items(n);
    ex.launch(m, UnaryKernel<T>{g, ptr<const T>(x), ptr<T>(out), op, static_cast<T>(alpha), static_cast<T>(beta), n, m});
  });
}

// ---------------------------------------------------------------------------- binary
// Integer tensors have the arithmetic and comparison ops; the others need floats (as on the CPU).
inline bool binary_defined_for_int(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: case BinaryOp::Sub: case BinaryOp::Mul: case BinaryOp::Div:
    case BinaryOp::Eq: case BinaryOp::Ne: case BinaryOp::Lt: case BinaryOp::Le: case BinaryOp::Gt: case BinaryOp::Ge:
      return true;
    default:
      return false;
  }
}

template <class T>
ORBIT_HD inline T binary_value(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::Add: return x + y;
    case BinaryOp::Sub: return x - y;
    case BinaryOp::Mul: return x * y;
    case BinaryOp::Div: return x / y;
    case BinaryOp::Eq: return T(x == y);
    case BinaryOp::Ne: return T(x != y);
    case BinaryOp::Lt: return T(x < y);
    case BinaryOp::Le: return T(x <= y);
    case BinaryOp::Gt: return T(x > y);
    case BinaryOp::Ge: return T(x >= y);
    default: break;
  }
  if constexpr (std::is_floating_point<T>::value) {
    switch (op) {
      case BinaryOp::Pow: return k_pow(x, y);
      case BinaryOp::Maximum: return (x != x || x > y) ? x : y;  // NaN wins (as PyTorch)
      case BinaryOp::Minimum: return (x != x || x < y) ? x : y;
      case BinaryOp::ReluBackward: return y > T(0) ? x : T(0);
      case BinaryOp::SigmoidBackward: return x * y * (T(1) - y);
      case BinaryOp::TanhBackward: return x * (T(1) - y * y);
      case BinaryOp::SiluBackward: {
        const T s = k_sigmoid(y);
        return x * s * (T(1) + y * (T(1) - s));
      }
      case BinaryOp::GeluBackward: {
        const T cdf = T(0.5) * (T(1) + k_erf(y * T(0.70710678118654752440)));
        const T pdf = k_exp(T(-0.5) * y * y) * T(0.3989422804014327);  // 1 / sqrt(2 pi)
        return x * (cdf + y * pdf);
      }
      case BinaryOp::GeluTanhBackward: {
        const T k = T(0.7978845608028654), c = T(0.044715);
        const T th = k_tanh(k * (y + c * y * y * y));
        const T dinner = k * (T(1) + T(3) * c * y * y);
        return x * (T(0.5) * (T(1) + th) + T(0.5) * y * (T(1) - th * th) * dinner);
      }
      default: break;
    }
  }
  return T(0);
}

template <class T>
struct BinaryKernel {
  Indexer<3> g;  // operand 0: out, 1: a, 2: b
  const T* a;
  const T* b;
  T* out;
  BinaryOp op;
  int64_t n, m;  // elements, items (kUnroll elements each: i, i + m, ...)
  ORBIT_HD void operator()(int64_t i) const {
    int64_t o[kUnroll][3] = {};
    T va[kUnroll] = {}, vb[kUnroll] = {};
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) {
        g.offsets(i + u * m, o[u]);
        va[u] = a[o[u][1]];
        vb[u] = b[o[u][2]];
      }
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) out[o[u][0]] = binary_value(op, va[u], vb[u]);
  }
};

template <class Exec>
void binary(const Exec& ex, BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const auto g = make_indexer<3>(out.shape(), {out.strides(), a.strides(), b.strides()});
  dispatch_all(out.dtype(), "binary op", [&](auto tag) {
    using T = decltype(tag);
    if (!std::is_floating_point<T>::value && !binary_defined_for_int(op))
      throw Error(str_cat("binary op ", static_cast<int>(op), " is not defined for ", dtype_name(out.dtype())));
    const int64_t n = out.numel(), m = unrolled_items(n);
    ex.launch(m, BinaryKernel<T>{g, ptr<const T>(a), ptr<const T>(b), ptr<T>(out), op, n, m});
  });
}

}  // namespace orbit::cuda::kernels

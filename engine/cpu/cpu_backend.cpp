// CPU backend: memory, elementwise, reductions, softmax and GEMM dispatch.
#include "engine/cpu/cpu_backend.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "engine/cpu/gemm.h"
#include "engine/cpu/strided.h"
#include "engine/parallel.h"

namespace orbit::cpu {

// ====================================================================== memory

void* CpuBackend::allocate(size_t nbytes) {
  const size_t aligned = ((nbytes + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, aligned == 0 ? 64 : aligned);
  ORBIT_CHECK(p != nullptr, "cpu: out of memory allocating ", nbytes, " bytes");
  return p;
}

void CpuBackend::deallocate(void* ptr, size_t) { std::free(ptr); }

void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}
void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}

// ====================================================================== fill and copy

void CpuBackend::fill(const Tensor& out, double value) {
  dispatch_all(out.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    T* base = static_cast<T*>(out.raw_data());
    const T v = static_cast<T>(value);
    auto g = coalesce<1>(out.shape(), {out.strides()});
    const int64_t s = g.inner_stride(0);
    for_each_row(g, [&](const std::array<int64_t, 1>& off, int64_t n) {
      T* p = base + off[0];
      for (int64_t i = 0; i < n; ++i) p[i * s] = v;
    });
  });
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  ORBIT_ASSERT(src.shape() == dst.shape(), "copy ", shape_str(src.shape()), " -> ", shape_str(dst.shape()));
  dispatch_all(src.dtype(), "copy", [&](auto stag) {
    using S = decltype(stag);
    dispatch_all(dst.dtype(), "copy", [&](auto dtag) {
      using D = decltype(dtag);
      const S* sp = static_cast<const S*>(src.raw_data());
      D* dp = static_cast<D*>(dst.raw_data());
      auto g = coalesce<2>(dst.shape(), {dst.strides(), src.strides()});
      const int64_t ds = g.inner_stride(0), ss = g.inner_stride(1);
      for_each_row(g, [&](const std::array<int64_t, 2>& off, int64_t n) {
        D* d = dp + off[0];
        const S* s = sp + off[1];
        if (ds == 1 && ss == 1) {
          for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) d[i * ds] = static_cast<D>(s[i * ss]);
        }
      });
    });
  });
}

// ====================================================================== unary

namespace {

template <class T>
T gelu_exact(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(M_SQRT1_2)));
}
template <class T>
T gelu_tanh(T x) {
  const T k = T(0.7978845608028654);  // sqrt(2 / pi)
  return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
}
template <class T>
T sigmoid_of(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// out[i] = f(x[i]) over a strided x and a contiguous out.
template <class T, class F>
void map_unary(const Tensor& x, const Tensor& out, F f) {
  const T* xp = static_cast<const T*>(x.raw_data());
  T* op = static_cast<T*>(out.raw_data());
  auto g = coalesce<2>(x.shape(), {out.strides(), x.strides()});
  const int64_t xs = g.inner_stride(1), os = g.inner_stride(0);
  for_each_row(g, [&](const std::array<int64_t, 2>& off, int64_t n) {
    T* o = op + off[0];
    const T* s = xp + off[1];
    if (xs == 1 && os == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(s[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * os] = f(s[i * xs]);
    }
  });
}

template <class T>
void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, T alpha, T beta) {
  switch (op) {
    case UnaryOp::Neg: return map_unary<T>(x, out, [](T v) { return -v; });
    case UnaryOp::Exp: return map_unary<T>(x, out, [](T v) { return std::exp(v); });
    case UnaryOp::Log: return map_unary<T>(x, out, [](T v) { return std::log(v); });
    case UnaryOp::Sqrt: return map_unary<T>(x, out, [](T v) { return std::sqrt(v); });
    case UnaryOp::Rsqrt: return map_unary<T>(x, out, [](T v) { return T(1) / std::sqrt(v); });
    case UnaryOp::Abs: return map_unary<T>(x, out, [](T v) { return std::abs(v); });
    case UnaryOp::Sign: return map_unary<T>(x, out, [](T v) { return T((v > 0) - (v < 0)); });
    case UnaryOp::Square: return map_unary<T>(x, out, [](T v) { return v * v; });
    case UnaryOp::Reciprocal: return map_unary<T>(x, out, [](T v) { return T(1) / v; });
    case UnaryOp::Log1p: return map_unary<T>(x, out, [](T v) { return std::log1p(v); });
    case UnaryOp::Relu: return map_unary<T>(x, out, [](T v) { return v > T(0) ? v : T(0); });
    case UnaryOp::Sigmoid: return map_unary<T>(x, out, [](T v) { return sigmoid_of(v); });
    case UnaryOp::Tanh: return map_unary<T>(x, out, [](T v) { return std::tanh(v); });
    case UnaryOp::Silu: return map_unary<T>(x, out, [](T v) { return v * sigmoid_of(v); });
    case UnaryOp::Gelu: return map_unary<T>(x, out, [](T v) { return gelu_exact(v); });
    case UnaryOp::GeluTanh: return map_unary<T>(x, out, [](T v) { return gelu_tanh(v); });
    case UnaryOp::Softplus:
      return map_unary<T>(x, out, [](T v) { return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v))); });
    case UnaryOp::Affine: return map_unary<T>(x, out, [=](T v) { return alpha * v + beta; });
    case UnaryOp::PowScalar: return map_unary<T>(x, out, [=](T v) { return std::pow(v, alpha); });
    case UnaryOp::Clamp:
      // NaN stays NaN (as PyTorch).
      return map_unary<T>(x, out, [=](T v) { return v < alpha ? alpha : (v > beta ? beta : v); });
  }
  ORBIT_ASSERT(false, "unknown unary op");
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha, double beta) {
  dispatch_float(x.dtype(), "unary op", [&](auto tag) {
    using T = decltype(tag);
    unary_typed<T>(op, x, out, static_cast<T>(alpha), static_cast<T>(beta));
  });
}

// ====================================================================== binary

namespace {

template <class T, class F>
void map_binary(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  const T* ap = static_cast<const T*>(a.raw_data());
  const T* bp = static_cast<const T*>(b.raw_data());
  T* op = static_cast<T*>(out.raw_data());
  auto g = coalesce<3>(out.shape(), {out.strides(), a.strides(), b.strides()});
  const int64_t os = g.inner_stride(0), as = g.inner_stride(1), bs = g.inner_stride(2);
  for_each_row(g, [&](const std::array<int64_t, 3>& off, int64_t n) {
    T* o = op + off[0];
    const T* x = ap + off[1];
    const T* y = bp + off[2];
    if (os == 1 && as == 1 && bs == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (os == 1 && as == 1 && bs == 0) {
      const T yv = y[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
    } else if (os == 1 && as == 0 && bs == 1) {
      const T xv = x[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * os] = f(x[i * as], y[i * bs]);
    }
  });
}

template <class T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (op) {
    case BinaryOp::Add: return map_binary<T>(a, b, out, [](T x, T y) { return x + y; });
    case BinaryOp::Sub: return map_binary<T>(a, b, out, [](T x, T y) { return x - y; });
    case BinaryOp::Mul: return map_binary<T>(a, b, out, [](T x, T y) { return x * y; });
    case BinaryOp::Div: return map_binary<T>(a, b, out, [](T x, T y) { return x / y; });
    case BinaryOp::Eq: return map_binary<T>(a, b, out, [](T x, T y) { return T(x == y); });
    case BinaryOp::Ne: return map_binary<T>(a, b, out, [](T x, T y) { return T(x != y); });
    case BinaryOp::Lt: return map_binary<T>(a, b, out, [](T x, T y) { return T(x < y); });
    case BinaryOp::Le: return map_binary<T>(a, b, out, [](T x, T y) { return T(x <= y); });
    case BinaryOp::Gt: return map_binary<T>(a, b, out, [](T x, T y) { return T(x > y); });
    case BinaryOp::Ge: return map_binary<T>(a, b, out, [](T x, T y) { return T(x >= y); });
    default: break;
  }
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case BinaryOp::Pow: return map_binary<T>(a, b, out, [](T x, T y) { return std::pow(x, y); });
      case BinaryOp::Maximum:
        return map_binary<T>(a, b, out, [](T x, T y) { return (x != x || x > y) ? x : y; });
      case BinaryOp::Minimum:
        return map_binary<T>(a, b, out, [](T x, T y) { return (x != x || x < y) ? x : y; });
      case BinaryOp::ReluBackward:
        return map_binary<T>(a, b, out, [](T g, T x) { return x > T(0) ? g : T(0); });
      case BinaryOp::SigmoidBackward:
        return map_binary<T>(a, b, out, [](T g, T y) { return g * y * (T(1) - y); });
      case BinaryOp::TanhBackward:
        return map_binary<T>(a, b, out, [](T g, T y) { return g * (T(1) - y * y); });
      case BinaryOp::SiluBackward:
        return map_binary<T>(a, b, out, [](T g, T x) {
          const T s = sigmoid_of(x);
          return g * s * (T(1) + x * (T(1) - s));
        });
      case BinaryOp::GeluBackward:
        return map_binary<T>(a, b, out, [](T g, T x) {
          const T cdf = T(0.5) * (T(1) + std::erf(x * T(M_SQRT1_2)));
          const T pdf = std::exp(T(-0.5) * x * x) * T(0.3989422804014327);  // 1 / sqrt(2 pi)
          return g * (cdf + x * pdf);
        });
      case BinaryOp::GeluTanhBackward:
        return map_binary<T>(a, b, out, [](T g, T x) {
          const T k = T(0.7978845608028654), c = T(0.044715);
          const T inner = k * (x + c * x * x * x);
          const T th = std::tanh(inner);
          const T dinner = k * (T(1) + T(3) * c * x * x);
          return g * (T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * dinner);
        });
      default: break;
    }
  }
  throw Error(str_cat("binary op ", static_cast<int>(op), " is not defined for ", dtype_name(out.dtype())));
}

}  // namespace

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(out.dtype(), "binary op", [&](auto tag) { binary_typed<decltype(tag)>(op, a, b, out); });
}

// ====================================================================== reductions

namespace {

template <class T> struct Accum { using type = double; };
template <> struct Accum<int64_t> { using type = int64_t; };

template <class T>
void reduce_typed(ReduceOp op, const Tensor& x, const std::vector<bool>& red, const Tensor& out) {
  // Order dims as (kept..., reduced...) so each output element owns a contiguous block of work.
  Shape kept_shape, kept_x, kept_o, red_shape, red_x;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (red[d]) {
      red_shape.push_back(x.shape()[d]);
      red_x.push_back(x.strides()[d]);
    } else {
      kept_shape.push_back(x.shape()[d]);
      kept_x.push_back(x.strides()[d]);
      kept_o.push_back(out.strides()[d]);
    }
  }
  const T* xp = static_cast<const T*>(x.raw_data());
  T* op_ = static_cast<T*>(out.raw_data());
  const auto rg = coalesce<1>(red_shape, {red_x});
  const int64_t rinner = rg.inner(), rs = rg.inner_stride(0);
  const int64_t rcount = shape_numel(red_shape);
  using A = typename Accum<T>::type;

  auto reduce_block = [&](const T* base) -> T {
    if (rcount == 0) {
      if (op == ReduceOp::Sum) return T(0);
      if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::quiet_NaN();
      return T(0);
    }
    if (op == ReduceOp::Sum) {
      A acc = 0;
      for_each_row(rg, [&](const std::array<int64_t, 1>& off, int64_t n) {
        const T* p = base + off[0];
        A part = 0;
        for (int64_t i = 0; i < n; ++i) part += static_cast<A>(p[i * rs]);
        acc += part;
      }, false);
      return static_cast<T>(acc);
    }
    const bool is_max = op == ReduceOp::Max;
    T best = base[0];
    bool nan = false;
    for_each_row(rg, [&](const std::array<int64_t, 1>& off, int64_t n) {
      const T* p = base + off[0];
      for (int64_t i = 0; i < n; ++i) {
        const T v = p[i * rs];
        if (v != v) nan = true;
        if (is_max ? v > best : v < best) best = v;
      }
    }, false);
    if constexpr (std::is_floating_point_v<T>)
      if (nan) return std::numeric_limits<T>::quiet_NaN();
    return best;
  };
  (void)rinner;

  const auto kg = coalesce<2>(kept_shape, {kept_o, kept_x});
  const int64_t kinner = kg.inner(), kos = kg.inner_stride(0), kxs = kg.inner_stride(1);
  const bool parallel_outer = shape_numel(kept_shape) > 1;
  for_each_row(kg, [&](const std::array<int64_t, 2>& off, int64_t n) {
    for (int64_t i = 0; i < n; ++i) op_[off[0] + i * kos] = reduce_block(xp + off[1] + i * kxs);
  }, parallel_outer);
  (void)kinner;
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<bool>& red, const Tensor& out) {
  dispatch_all(x.dtype(), "reduce", [&](auto tag) { reduce_typed<decltype(tag)>(op, x, red, out); });
}

namespace {
// Views a contiguous tensor as [outer, n, inner] around dim.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
  Around(const Shape& s, int64_t dim) {
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
      if (d < dim) outer *= s[d];
      else if (d == dim) n = s[d];
      else inner *= s[d];
    }
  }
};
}  // namespace

void CpuBackend::arg_reduce(bool is_max, const Tensor& x, int64_t dim, const Tensor& values,
                            const Tensor& indices) {
  ORBIT_ASSERT(x.is_contiguous());
  const Around g(x.shape(), dim);
  dispatch_all(x.dtype(), "max/min", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* vp = values.data<T>();
    int64_t* ip = indices.data<int64_t>();
    parallel_for(0, g.outer * g.inner, 4096 / std::max<int64_t>(g.n, 1) + 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t o = k / g.inner, i = k % g.inner;
        const T* p = xp + o * g.n * g.inner + i;
        T best = p[0];
        int64_t bi = 0;
        for (int64_t j = 1; j < g.n; ++j) {
          const T v = p[j * g.inner];
          if (best != best) break;  // NaN wins, first occurrence
          if (v != v || (is_max ? v > best : v < best)) {
            best = v;
            bi = j;
          }
        }
        vp[k] = best;
        ip[k] = bi;
      }
    });
  });
}

void CpuBackend::softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) {
  ORBIT_ASSERT(x.is_contiguous());
  const Around g(x.shape(), dim);
  dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* yp = out.data<T>();
    parallel_for(0, g.outer * g.inner, 4096 / std::max<int64_t>(g.n, 1) + 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t o = k / g.inner, i = k % g.inner;
        const T* p = xp + o * g.n * g.inner + i;
        T* q = yp + o * g.n * g.inner + i;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < g.n; ++j) m = std::max(m, p[j * g.inner]);
        double s = 0;
        for (int64_t j = 0; j < g.n; ++j) s += std::exp(static_cast<double>(p[j * g.inner] - m));
        if (log) {
          // (x - m) - log(s), not x - (m + log(s)): the latter loses the digits of log(s) when |m| is large.
          const T log_s = static_cast<T>(std::log(s));
          for (int64_t j = 0; j < g.n; ++j) q[j * g.inner] = (p[j * g.inner] - m) - log_s;
        } else {
          const double inv = 1.0 / s;
          for (int64_t j = 0; j < g.n; ++j)
            q[j * g.inner] = static_cast<T>(std::exp(static_cast<double>(p[j * g.inner] - m)) * inv);
        }
      }
    });
  });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log,
                                  const Tensor& gx) {
  ORBIT_ASSERT(y.is_contiguous() && gy.is_contiguous());
  const Around g(y.shape(), dim);
  dispatch_float(y.dtype(), "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    const T* yp = y.data<T>();
    const T* gp = gy.data<T>();
    T* xp = gx.data<T>();
    parallel_for(0, g.outer * g.inner, 4096 / std::max<int64_t>(g.n, 1) + 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t base = (k / g.inner) * g.n * g.inner + k % g.inner;
        double s = 0;
        if (log) {
          // y = log softmax: gx = gy - softmax * sum(gy)
          for (int64_t j = 0; j < g.n; ++j) s += gp[base + j * g.inner];
          for (int64_t j = 0; j < g.n; ++j) {
            const int64_t t = base + j * g.inner;
            xp[t] = static_cast<T>(gp[t] - std::exp(static_cast<double>(yp[t])) * s);
          }
        } else {
          // y = softmax: gx = y * (gy - sum(gy * y))
          for (int64_t j = 0; j < g.n; ++j) s += static_cast<double>(gp[base + j * g.inner]) * yp[base + j * g.inner];
          for (int64_t j = 0; j < g.n; ++j) {
            const int64_t t = base + j * g.inner;
            xp[t] = static_cast<T>(yp[t] * (gp[t] - s));
          }
        }
      }
    });
  });
}

// ====================================================================== GEMM

void CpuBackend::gemm(const GemmArgs& a) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* A = static_cast<const T*>(a.A);
    const T* B = static_cast<const T*>(a.B);
    T* C = static_cast<T*>(a.C);
    auto one = [&](int64_t b) {
      if constexpr (std::is_same_v<T, float>)
        sgemm(a.trans_a, a.trans_b, a.M, a.N, a.K, static_cast<float>(a.alpha), A + b * a.stride_a,
              a.lda, B + b * a.stride_b, a.ldb, static_cast<float>(a.beta), C + b * a.stride_c, a.ldc);
      else
        dgemm(a.trans_a, a.trans_b, a.M, a.N, a.K, a.alpha, A + b * a.stride_a, a.lda,
              B + b * a.stride_b, a.ldb, a.beta, C + b * a.stride_c, a.ldc);
    };
    // Many small products: one product per thread. Few large ones: the GEMM itself is parallel.
    const int64_t flops = a.M * a.N * a.K;
    if (a.batch > 1 && flops < (1 << 21)) {
      parallel_for(0, a.batch, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) one(b);
      });
    } else {
      for (int64_t b = 0; b < a.batch; ++b) one(b);
    }
  };
  dispatch_float(a.dtype, "gemm", run);
}

}  // namespace orbit::cpu

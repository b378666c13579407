// Batch-normalization kernels of the CUDA backend. x is contiguous [N, C, S...] (the ops make it so);
// the values of channel c are the N blocks x[n, c, :] of S = numel / (N * C) contiguous elements, M =
// N * S values in all, numbered e = n * S + s. The formulas are those of the CPU backend
// (engine/cpu/cpu_norm.cpp):
//   mean = sum x / M,  var = sum (x - mean)^2 / M          (biased; sums in double)
//   y    = x * scale + shift,  scale = invstd * weight, shift = bias - mean * scale
//   dbias = sum gy,  dweight = invstd * sum gy * (x - mean)
//   dx    = k * gy - k * a - k * b * invstd * (x - mean),  k = weight * invstd,
//           a = dbias / M, b = dweight / M with batch statistics, a = b = 0 with fixed ones.
//
// Design, in plain words: a per-channel sum is a reduction of M values, done in two passes without
// atomics. Pass 1 has L work items ("lanes") per channel; lane l adds up the values e = l, l + L,
// l + 2L, ... of its channel in double, so neighbouring lanes read neighbouring addresses (coalesced
// on a GPU), and writes its partial sum to scratch memory. Pass 2 has one item per channel, which adds
// the L partial sums in lane order. The order of the additions depends only on the shape, so results
// are deterministic, though not the CPU's bit for bit (its order differs). The statistics take two
// such reductions: the mean first, then the mean of the squared deviations from it (no cancellation
// as in E[x^2] - E[x]^2). The backward takes one (sum gy and sum gy * (x - mean) together) and the
// per-element passes (apply, dx) are one item per element reading its channel's coefficients.
#pragma once

#include "engine/cuda/kernels/common.h"

namespace orbit::cuda::kernels {

namespace norm_detail {

struct Layout {
  int64_t N, C, S;
  int64_t M() const { return N * S; }  // values per channel
};

inline Layout layout_of(const Tensor& x) {
  ORBIT_CHECK(x.dim() >= 2 && x.is_contiguous(), "cuda batch_norm: expected a contiguous [N, C, ...] input, got ",
              shape_str(x.shape()));
  const int64_t N = x.size(0), C = x.size(1);
  return {N, C, N * C == 0 ? 0 : x.numel() / (N * C)};
}

// Lanes per channel for the partial sums: about 64 values each, at most 1024 (the partial sums are
// then added by one item per channel).
inline int64_t lanes_for(int64_t M) { return k_max<int64_t>(1, k_min<int64_t>(1024, (M + 63) / 64)); }

// Address of value e of channel c.
ORBIT_HD inline int64_t at(int64_t c, int64_t e, int64_t C, int64_t S) {
  const int64_t n = e / S;
  return (n * C + c) * S + (e - n * S);
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

}  // namespace norm_detail

// ============================================================================ statistics

// Pass 1: item (c, lane): partial sum of x (center == nullptr) or of (x - center[c])^2.
template <class T>
struct BnPartialSumKernel {
  const T* x;
  const double* center;
  double* part;  // [C * L]
  int64_t C, S, M, L;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t c = i / L, lane = i - c * L;
    double s = 0;
    if (center) {
      const double m = center[c];
      for (int64_t e = lane; e < M; e += L) {
        const double d = x[norm_detail::at(c, e, C, S)] - m;
        s += d * d;
      }
    } else {
      for (int64_t e = lane; e < M; e += L) s += x[norm_detail::at(c, e, C, S)];
    }
    part[i] = s;
  }
};

// Pass 2 for the mean: item c: the partial sums added in lane order, over M.
struct BnMeanKernel {
  const double* part;
  double* mean;
  int64_t M, L;
  ORBIT_HD void operator()(int64_t c) const {
    double s = 0;
    for (int64_t l = 0; l < L; ++l) s += part[c * L + l];
    mean[c] = M > 0 ? s / static_cast<double>(M) : 0.0;
  }
};

// Pass 2 for the variance: item c: the biased variance, and both statistics written in x's dtype.
template <class T>
struct BnVarKernel {
  const double* part;
  const double* mean_d;
  T* mean;
  T* var;
  int64_t M, L;
  ORBIT_HD void operator()(int64_t c) const {
    double q = 0;
    for (int64_t l = 0; l < L; ++l) q += part[c * L + l];
    mean[c] = static_cast<T>(mean_d[c]);
    var[c] = static_cast<T>(M > 0 ? q / static_cast<double>(M) : 0.0);
  }
};

template <class Exec>
void batch_norm_stats(const Exec& ex, const Tensor& x, const Tensor& mean, const Tensor& var) {
  const auto l = norm_detail::layout_of(x);
  if (l.C == 0) return;
  const int64_t M = l.M(), L = norm_detail::lanes_for(M);
  auto part = ex.scratch(sizeof(double) * static_cast<size_t>(l.C * L));
  auto mean_d = ex.scratch(sizeof(double) * static_cast<size_t>(l.C));
  double* pp = static_cast<double*>(part.data());
  double* mp = static_cast<double*>(mean_d.data());
  dispatch_float(x.dtype(), "batch_norm_stats", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = ptr<const T>(x);
    ex.launch(l.C * L, BnPartialSumKernel<T>{xp, nullptr, pp, l.C, l.S, M, L});
    ex.launch(l.C, BnMeanKernel{pp, mp, M, L});
    ex.launch(l.C * L, BnPartialSumKernel<T>{xp, mp, pp, l.C, l.S, M, L});
    ex.launch(l.C, BnVarKernel<T>{pp, mp, ptr<T>(mean), ptr<T>(var), M, L});
  });
}

// ============================================================================ apply

template <class T>
struct BnApplyKernel {
  const T* x;
  const T* mean;
  const T* invstd;
  const T* weight;  // may be null (1)
  const T* bias;    // may be null (0)
  T* y;
  int64_t C, S;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t c = (i / S) % C;
    const T scale = invstd[c] * (weight ? weight[c] : T(1));
    const T shift = (bias ? bias[c] : T(0)) - mean[c] * scale;
    y[i] = x[i] * scale + shift;
  }
};

template <class Exec>
void batch_norm_apply(const Exec& ex, const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                      const Tensor& bias, const Tensor& y) {
  const auto l = norm_detail::layout_of(x);
  ORBIT_CHECK(y.is_contiguous(), "cuda batch_norm_apply: y must be contiguous");
  if (l.S == 0) return;
  dispatch_float(x.dtype(), "batch_norm_apply", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(x.numel(), BnApplyKernel<T>{ptr<const T>(x), ptr<const T>(mean), ptr<const T>(invstd),
                                          norm_detail::ptr_or_null<T>(weight), norm_detail::ptr_or_null<T>(bias),
                                          ptr<T>(y), l.C, l.S});
  });
}

// ============================================================================ backward

// Pass 1: item (c, lane): partial sums of gy and of gy * (x - mean[c]).
template <class T>
struct BnBackwardPartialKernel {
  const T* x;
  const T* gy;
  const T* mean;
  double* part;  // [2][C * L]: sum gy, sum gy * (x - mean)
  int64_t C, S, M, L;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t c = i / L, lane = i - c * L;
    const double m = mean[c];
    double sg = 0, sgx = 0;
    for (int64_t e = lane; e < M; e += L) {
      const int64_t a = norm_detail::at(c, e, C, S);
      const double g = gy[a];
      sg += g;
      sgx += g * (x[a] - m);
    }
    part[i] = sg;
    part[C * L + i] = sgx;
  }
};

// Pass 2: item c: gbias and gweight, and the coefficients of dx = kk * gy - ka - kb * (x - km), in
// x's dtype as on the CPU.
template <class T>
struct BnBackwardCoefKernel {
  const double* part;  // null: the sums are not needed (fixed statistics, no gweight / gbias)
  const T* mean;
  const T* invstd;
  const T* weight;  // may be null (1)
  T* gweight;       // may be null
  T* gbias;         // may be null
  T* coef;          // [C][4]: kk, ka, kb, km
  int64_t C, M, L;
  bool batch_stats;
  ORBIT_HD void operator()(int64_t c) const {
    const double m = mean[c], is = invstd[c];
    double sg = 0, sgx = 0;
    if (part) {
      for (int64_t l = 0; l < L; ++l) {
        sg += part[c * L + l];
        sgx += part[C * L + c * L + l];
      }
      sgx *= is;
    }
    if (gbias) gbias[c] = static_cast<T>(sg);
    if (gweight) gweight[c] = static_cast<T>(sgx);
    const double k = is * (weight ? static_cast<double>(weight[c]) : 1.0);
    const double a = batch_stats && M > 0 ? sg / static_cast<double>(M) : 0.0;
    const double b = batch_stats && M > 0 ? sgx / static_cast<double>(M) : 0.0;
    coef[4 * c] = static_cast<T>(k);
    coef[4 * c + 1] = static_cast<T>(k * a);
    coef[4 * c + 2] = static_cast<T>(k * b * is);
    coef[4 * c + 3] = static_cast<T>(m);
  }
};

// Pass 3: one item per element.
template <class T>
struct BnBackwardInputKernel {
  const T* x;
  const T* gy;
  const T* coef;
  T* gx;
  int64_t C, S;
  ORBIT_HD void operator()(int64_t i) const {
    const T* k = coef + 4 * ((i / S) % C);
    gx[i] = k[0] * gy[i] - k[1] - k[2] * (x[i] - k[3]);
  }
};

template <class Exec>
void batch_norm_backward(const Exec& ex, const Tensor& x, const Tensor& gy, const Tensor& mean, const Tensor& invstd,
                         const Tensor& weight, bool batch_stats, const Tensor& gx, const Tensor& gweight,
                         const Tensor& gbias) {
  const auto l = norm_detail::layout_of(x);
  ORBIT_CHECK(gy.is_contiguous() && gy.shape() == x.shape() && (!gx.defined() || gx.is_contiguous()),
              "cuda batch_norm_backward: gy and gx must be contiguous of x's shape");
  if (l.C == 0) return;
  const bool need_sums = batch_stats || gweight.defined() || gbias.defined();
  const int64_t M = l.M(), L = norm_detail::lanes_for(M);
  auto part = ex.scratch(need_sums ? sizeof(double) * 2 * static_cast<size_t>(l.C * L) : 0);
  double* pp = need_sums ? static_cast<double*>(part.data()) : nullptr;
  dispatch_float(x.dtype(), "batch_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    auto coef = ex.scratch(sizeof(T) * 4 * static_cast<size_t>(l.C));
    T* cp = static_cast<T*>(coef.data());
    const T* xp = ptr<const T>(x);
    const T* gp = ptr<const T>(gy);
    if (need_sums) ex.launch(l.C * L, BnBackwardPartialKernel<T>{xp, gp, ptr<const T>(mean), pp, l.C, l.S, M, L});
    ex.launch(l.C, BnBackwardCoefKernel<T>{pp, ptr<const T>(mean), ptr<const T>(invstd),
                                           norm_detail::ptr_or_null<T>(weight), norm_detail::mut_ptr_or_null<T>(gweight),
                                           norm_detail::mut_ptr_or_null<T>(gbias), cp, l.C, M, L, batch_stats});
    if (gx.defined() && l.S > 0)
      ex.launch(x.numel(), BnBackwardInputKernel<T>{xp, gp, cp, ptr<T>(gx), l.C, l.S});
  });
}

}  // namespace orbit::cuda::kernels

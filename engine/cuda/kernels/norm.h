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
// Design, in plain words: a per-channel sum is a reduction of M values, done in passes without
// atomics. Pass 1 has L work items ("lanes") per channel; lane l adds up the values e = l, l + L,
// l + 2L, ... of its channel in double, so neighbouring lanes read neighbouring addresses (coalesced
// on a GPU), and writes its partial sum to scratch memory. When there are more than kLaneGroup lanes,
// a combining pass adds each run of kLaneGroup neighbouring partial sums into one, in lane order.
// Pass 2 has one item per channel, which adds the remaining partial sums in order (one item adding a
// thousand partial sums one after the other took about 60 us per layer on an H200). The order of the
// additions depends only on the shape, so results are deterministic, though not the CPU's bit for bit
// (its order differs). The statistics take two such reductions: the mean first, then the mean of the
// squared deviations from it (no cancellation as in E[x^2] - E[x]^2). The backward takes one (sum gy
// and sum gy * (x - mean) together). The per-element passes (apply, dx) read their channel's
// coefficients, kUnroll elements per item (common.h).
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

// Lanes per channel for the partial sums: about 64 values each, at most 4096 (enough items to fill a
// GPU for a few channels of many values).
inline int64_t lanes_for(int64_t M) { return k_max<int64_t>(1, k_min<int64_t>(4096, (M + 63) / 64)); }

// Partial sums added per item of the combining pass, and so the most that pass 2 adds per channel.
constexpr int64_t kLaneGroup = 64;

// Address of value e of channel c.
ORBIT_HD inline int64_t at(int64_t c, int64_t e, int64_t C, int64_t S) {
  const int64_t n = k_div(e, S);
  return (n * C + c) * S + (e - n * S);
}

// Channel of element i of a contiguous [N, C, S] tensor.
ORBIT_HD inline int64_t channel(int64_t i, int64_t C, int64_t S) {
  const int64_t q = k_div(i, S);
  return q - k_div(q, C) * C;
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

// The combining pass: rows of L partial sums (row r at part[r * L]) into rows of L2 = ceil(L /
// kLaneGroup); item (r, j) adds partial sums j * kLaneGroup ... of row r in order.
struct CombineLanesKernel {
  const double* part;
  double* out;
  int64_t L, L2;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t r = k_div(i, L2), j = i - r * L2;
    const int64_t end = k_min((j + 1) * kLaneGroup, L);
    double s = 0;
    for (int64_t l = j * kLaneGroup; l < end; ++l) s += part[r * L + l];
    out[i] = s;
  }
};

// The partial sums that pass 2 adds, L per row: `part` itself when a row has at most kLaneGroup of
// them, otherwise their combination in `scratch` (allocated here, kept alive by the caller).
struct LaneSums {
  const double* part;
  int64_t L;
};
template <class Exec, class Buffer>
LaneSums combine_lanes(const Exec& ex, const double* part, int64_t rows, int64_t L, Buffer* scratch) {
  if (L <= kLaneGroup) return {part, L};
  const int64_t L2 = (L + kLaneGroup - 1) / kLaneGroup;
  *scratch = ex.scratch(sizeof(double) * static_cast<size_t>(rows * L2));
  double* out = static_cast<double*>(scratch->data());
  ex.launch(rows * L2, CombineLanesKernel{part, out, L, L2});
  return {out, L2};
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
    const int64_t c = k_div(i, L), lane = i - c * L;
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
    auto combined = ex.scratch(0);
    ex.launch(l.C * L, BnPartialSumKernel<T>{xp, nullptr, pp, l.C, l.S, M, L});
    const norm_detail::LaneSums sums = norm_detail::combine_lanes(ex, pp, l.C, L, &combined);
    ex.launch(l.C, BnMeanKernel{sums.part, mp, M, sums.L});
    ex.launch(l.C * L, BnPartialSumKernel<T>{xp, mp, pp, l.C, l.S, M, L});
    const norm_detail::LaneSums squares = norm_detail::combine_lanes(ex, pp, l.C, L, &combined);
    ex.launch(l.C, BnVarKernel<T>{squares.part, mp, ptr<T>(mean), ptr<T>(var), M, squares.L});
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
  int64_t n, m;  // elements, items (kUnroll elements each: i, i + m, ...)
  ORBIT_HD void operator()(int64_t i) const {
    T v[kUnroll] = {}, scale[kUnroll] = {}, shift[kUnroll] = {};
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) {
        const int64_t c = norm_detail::channel(i + u * m, C, S);
        v[u] = x[i + u * m];
        scale[u] = invstd[c] * (weight ? weight[c] : T(1));
        shift[u] = (bias ? bias[c] : T(0)) - mean[c] * scale[u];
      }
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) y[i + u * m] = v[u] * scale[u] + shift[u];
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
    const int64_t n = x.numel(), m = unrolled_items(n);
    ex.launch(m, BnApplyKernel<T>{ptr<const T>(x), ptr<const T>(mean), ptr<const T>(invstd),
                                  norm_detail::ptr_or_null<T>(weight), norm_detail::ptr_or_null<T>(bias), ptr<T>(y),
                                  l.C, l.S, n, m});
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
    const int64_t c = k_div(i, L), lane = i - c * L;
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
  int64_t n, m;  // elements, items (kUnroll elements each: i, i + m, ...)
  ORBIT_HD void operator()(int64_t i) const {
    T vx[kUnroll] = {}, vg[kUnroll] = {};
    const T* k[kUnroll] = {};
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) {
        k[u] = coef + 4 * norm_detail::channel(i + u * m, C, S);
        vx[u] = x[i + u * m];
        vg[u] = gy[i + u * m];
      }
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * m < n) gx[i + u * m] = k[u][0] * vg[u] - k[u][1] - k[u][2] * (vx[u] - k[u][3]);
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
    // The two rows of partial sums of a channel are rows c and C + c of [2C, L].
    auto combined = ex.scratch(0);
    norm_detail::LaneSums sums{nullptr, L};
    if (need_sums) {
      ex.launch(l.C * L, BnBackwardPartialKernel<T>{xp, gp, ptr<const T>(mean), pp, l.C, l.S, M, L});
      sums = norm_detail::combine_lanes(ex, pp, 2 * l.C, L, &combined);
    }
    ex.launch(l.C, BnBackwardCoefKernel<T>{sums.part, ptr<const T>(mean), ptr<const T>(invstd),
                                           norm_detail::ptr_or_null<T>(weight), norm_detail::mut_ptr_or_null<T>(gweight),
                                           norm_detail::mut_ptr_or_null<T>(gbias), cp, l.C, M, sums.L, batch_stats});
    if (gx.defined() && l.S > 0) {
      const int64_t n = x.numel(), m = unrolled_items(n);
      ex.launch(m, BnBackwardInputKernel<T>{xp, gp, cp, ptr<T>(gx), l.C, l.S, n, m});
    }
  });
}

}  // namespace orbit::cuda::kernels

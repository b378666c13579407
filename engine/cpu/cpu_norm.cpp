// Batch-normalization kernels of the CPU backend. x is contiguous [N, C, S...]; the values of
// channel c are the N blocks x[n, c, :] of S = numel / (N * C) contiguous elements. Per-channel sums
// are accumulated in double and channels run in parallel.
//
// With xhat = (x - mean) * invstd and y = weight * xhat + bias, the gradients are
//   dbias = sum gy,   dweight = sum gy * xhat,
//   dx    = weight * invstd * gy                                          (fixed statistics)
//   dx    = weight * invstd * (gy - mean(gy) - xhat * mean(gy * xhat))    (batch statistics)
// where the second form includes the dependence of the batch mean and variance on x.
#include <algorithm>
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/parallel.h"

namespace orbit::cpu {

namespace {

struct Layout {
  int64_t N, C, S;
};

Layout layout_of(const Tensor& x) {
  const int64_t N = x.size(0), C = x.size(1);
  return {N, C, N * C == 0 ? 0 : x.numel() / (N * C)};
}

// Calls f(block, length) for the N blocks of channel c, block pointing at x[n, c, 0].
template <class T, class F>
void for_channel_blocks(T* base, const Layout& l, int64_t c, const F& f) {
  for (int64_t n = 0; n < l.N; ++n) f(base + (n * l.C + c) * l.S, l.S);
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

}  // namespace

void CpuBackend::batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  const Layout l = layout_of(x);
  dispatch_float(x.dtype(), "batch_norm_stats", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* mp = static_cast<T*>(mean.raw_data());
    T* vp = static_cast<T*>(var.raw_data());
    const double count = static_cast<double>(l.N * l.S);
    parallel_for(0, l.C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        // Two passes (mean, then squared deviations) avoid the cancellation of E[x^2] - E[x]^2.
        double s = 0;
        for_channel_blocks(xp, l, c, [&](const T* b, int64_t n) {
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < n; ++i) s += b[i];
        });
        const double m = count > 0 ? s / count : 0.0;
        double q = 0;
        for_channel_blocks(xp, l, c, [&](const T* b, int64_t n) {
#pragma omp simd reduction(+ : q)
          for (int64_t i = 0; i < n; ++i) q += (b[i] - m) * (b[i] - m);
        });
        mp[c] = static_cast<T>(m);
        vp[c] = static_cast<T>(count > 0 ? q / count : 0.0);
      }
    });
  });
}

void CpuBackend::batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                  const Tensor& weight, const Tensor& bias, const Tensor& y) {
  const Layout l = layout_of(x);
  dispatch_float(x.dtype(), "batch_norm_apply", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* mp = static_cast<const T*>(mean.raw_data());
    const T* ip = static_cast<const T*>(invstd.raw_data());
    const T* wp = ptr_or_null<T>(weight);
    const T* bp = ptr_or_null<T>(bias);
    T* yp = static_cast<T*>(y.raw_data());
    // y = x * scale + shift per channel, over the N * C blocks in parallel.
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(l.S, 1));
    parallel_for(0, l.N * l.C, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t c = b % l.C;
        const T scale = ip[c] * (wp ? wp[c] : T(1));
        const T shift = (bp ? bp[c] : T(0)) - mp[c] * scale;
        const T* xs = xp + b * l.S;
        T* ys = yp + b * l.S;
#pragma omp simd
        for (int64_t i = 0; i < l.S; ++i) ys[i] = xs[i] * scale + shift;
      }
    });
  });
}

void CpuBackend::batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& mean,
                                     const Tensor& invstd, const Tensor& weight, bool batch_stats,
                                     const Tensor& gx, const Tensor& gweight, const Tensor& gbias) {
  const Layout l = layout_of(x);
  dispatch_float(x.dtype(), "batch_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* gp = static_cast<const T*>(gy.raw_data());
    const T* mp = static_cast<const T*>(mean.raw_data());
    const T* ip = static_cast<const T*>(invstd.raw_data());
    const T* wp = ptr_or_null<T>(weight);
    T* gxp = gx.defined() ? static_cast<T*>(gx.raw_data()) : nullptr;
    T* gwp = gweight.defined() ? static_cast<T*>(gweight.raw_data()) : nullptr;
    T* gbp = gbias.defined() ? static_cast<T*>(gbias.raw_data()) : nullptr;
    const bool need_sums = batch_stats || gwp || gbp;
    const double count = static_cast<double>(l.N * l.S);
    parallel_for(0, l.C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double m = mp[c], is = ip[c];
        // sum gy and sum gy * xhat = invstd * sum gy * (x - mean)
        double sg = 0, sgx = 0;
        if (need_sums) {
          for (int64_t n = 0; n < l.N; ++n) {
            const T* xs = xp + (n * l.C + c) * l.S;
            const T* gs = gp + (n * l.C + c) * l.S;
#pragma omp simd reduction(+ : sg, sgx)
            for (int64_t i = 0; i < l.S; ++i) {
              sg += gs[i];
              sgx += gs[i] * (xs[i] - m);
            }
          }
          sgx *= is;
        }
        if (gbp) gbp[c] = static_cast<T>(sg);
        if (gwp) gwp[c] = static_cast<T>(sgx);
        if (!gxp) continue;
        const double k = is * (wp ? wp[c] : 1.0);
        // dx = k * (gy - a - xhat * b) with a = mean(gy), b = mean(gy * xhat) (zero for fixed stats)
        const double a = batch_stats && count > 0 ? sg / count : 0.0;
        const double bb = batch_stats && count > 0 ? sgx / count : 0.0;
        const T kk = static_cast<T>(k), ka = static_cast<T>(k * a);
        const T kb = static_cast<T>(k * bb * is), km = static_cast<T>(m);
        for (int64_t n = 0; n < l.N; ++n) {
          const T* xs = xp + (n * l.C + c) * l.S;
          const T* gs = gp + (n * l.C + c) * l.S;
          T* gxs = gxp + (n * l.C + c) * l.S;
#pragma omp simd
          for (int64_t i = 0; i < l.S; ++i) gxs[i] = kk * gs[i] - ka - kb * (xs[i] - km);
        }
      }
    });
  });
}

}  // namespace orbit::cpu

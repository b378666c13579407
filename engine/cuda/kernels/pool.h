// Pooling kernels of the CUDA backend: max, average and adaptive-average pooling over the planes of a
// contiguous x [N, C, H, W] (the ops make inputs contiguous), with the window rules of the CPU backend
// (engine/cpu/cpu_pool.cpp, PyTorch's rules).
//
// Design, in plain words:
//   - Forward: one work item per output element. It walks its window in the CPU's order (rows, then
//     columns) and so gives the CPU's results bit for bit: the same maximum (first maximum wins, a
//     NaN wins) and index (flat h * W + w in the input plane), and the same sum divided by the same
//     divisor.
//   - Backward: no atomics. One work item per input element gathers the gradient of the output windows
//     that contain it and writes gx once (so gx is overwritten, as on the CPU, and the result is
//     deterministic). It visits those windows in ascending output order, which is the order in which
//     the CPU scatters into that element, so the sums are again the CPU's bit for bit.
//     * Average pooling: the windows that contain input row h are the output rows oi with
//       oi * stride - pad <= h < oi * stride - pad + kernel (likewise for columns), and each brings
//       gy / divisor of its window.
//     * Adaptive average pooling: the output rows oi with floor(oi * H / Ho) <= h < ceil((oi + 1) * H / Ho).
//     * Max pooling: the backend call gets no window parameters, only the indices, so the candidate
//       windows are bounded from the indices themselves. A pre-pass finds, for every output row, the
//       smallest and largest input row that any of its maxima (over all planes and columns) lies in,
//       and the same for output columns; a second small pass turns that into, for every input row h,
//       the first and last output row whose maxima can lie in row h (and the same for columns). Every
//       output whose index points at an input element lies inside that element's row range x column
//       range, and the ranges are no larger than the true windows containing it, so the gather visits
//       a handful of outputs and adds gy where indices[out] == its flat position.
#pragma once

#include "engine/cuda/kernels/common.h"

namespace orbit::cuda::kernels {

namespace pool_detail {

constexpr int64_t kNone = int64_t(0x7fffffffffffffff);  // "no row / column" for a minimum

// floor(a / b) for b > 0 and any sign of a.
ORBIT_HD inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The average-pooling window of output position o along one dim (the CPU's avg_window): it starts at
// o * stride - pad and is cut at in + pad, which gives the divisor with count_include_pad; [lo, hi) is
// the part inside the input.
struct AvgWindow {
  int64_t lo, hi, padded;
};
ORBIT_HD inline AvgWindow avg_window(int64_t o, int64_t kernel, int64_t stride, int64_t pad, int64_t in) {
  const int64_t start = o * stride - pad;
  const int64_t end = k_min(start + kernel, in + pad);
  return {k_max<int64_t>(start, 0), k_min(end, in), end - start};
}

// The taps [k0, k1) of a max-pooling window starting at `start` (dilation d, `kernel` taps) that fall
// inside [0, n) (the CPU's tap_range).
ORBIT_HD inline void tap_range(int64_t start, int64_t d, int64_t kernel, int64_t n, int64_t& k0, int64_t& k1) {
  if (d == 1) {
    k0 = k_max<int64_t>(0, -start);
    k1 = k_max<int64_t>(0, k_min(kernel, n - start));
  } else {
    k0 = start >= 0 ? 0 : (-start + d - 1) / d;
    k1 = n - 1 - start < 0 ? 0 : k_min(kernel, (n - 1 - start) / d + 1);
  }
  k0 = k_min(k0, k1);
}

// Adaptive windows: [floor(o * in / out), ceil((o + 1) * in / out)).
ORBIT_HD inline int64_t adaptive_start(int64_t o, int64_t out, int64_t in) { return (o * in) / out; }
ORBIT_HD inline int64_t adaptive_end(int64_t o, int64_t out, int64_t in) { return ((o + 1) * in + out - 1) / out; }

struct Planes {
  int64_t planes, H, W, Ho, Wo;
};

inline Planes planes_of(const Tensor& in, const Tensor& out) {
  ORBIT_CHECK(in.dim() == 4 && out.dim() == 4 && in.is_contiguous() && out.is_contiguous(),
              "cuda pooling: expected contiguous 4-D tensors, got ", shape_str(in.shape()), " and ",
              shape_str(out.shape()));
  return {in.size(0) * in.size(1), in.size(2), in.size(3), out.size(2), out.size(3)};
}

}  // namespace pool_detail

// ============================================================================ max pooling

template <class T>
struct MaxPoolKernel {
  const T* x;
  T* out;
  int64_t* indices;
  int64_t H, W, Ho, Wo;
  Pool2dParams p;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t j = i % Wo, r = (i / Wo) % Ho, b = i / (Ho * Wo);
    const T* xs = x + b * H * W;
    const int64_t h0 = r * p.stride_h - p.pad_h, w0 = j * p.stride_w - p.pad_w;
    int64_t ki0, ki1, kj0, kj1;
    pool_detail::tap_range(h0, p.dilation_h, p.kernel_h, H, ki0, ki1);
    pool_detail::tap_range(w0, p.dilation_w, p.kernel_w, W, kj0, kj1);
    // First maximum in row-major window order; a NaN wins (the last one); a window with no element
    // inside the input gives -inf and index -1 (as on the CPU).
    T best = -k_inf<T>();
    int64_t arg = -1;
    for (int64_t ki = ki0; ki < ki1; ++ki) {
      const int64_t ih = h0 + ki * p.dilation_h;
      for (int64_t kj = kj0; kj < kj1; ++kj) {
        const int64_t at = ih * W + w0 + kj * p.dilation_w;
        const T v = xs[at];
        if (v > best || v != v || arg < 0) {
          best = v;
          arg = at;
        }
      }
    }
    out[i] = best;
    indices[i] = arg;
  }
};

template <class Exec>
void max_pool2d(const Exec& ex, const Tensor& x, const Pool2dParams& p, const Tensor& out, const Tensor& indices) {
  const auto s = pool_detail::planes_of(x, out);
  ORBIT_CHECK(indices.dtype() == DType::I64 && indices.is_contiguous() && indices.shape() == out.shape(),
              "cuda max_pool2d: indices must be contiguous int64 of the output's shape");
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(out.numel(),
              MaxPoolKernel<T>{ptr<const T>(x), ptr<T>(out), ptr<int64_t>(indices), s.H, s.W, s.Ho, s.Wo, p});
  });
}

// Pass 1 of the bounds: item (lane, k) for output position k = oi * Wo + oj of the plane: the smallest
// and largest input row and column that the maxima at k lie in, over the planes lane, lane + L, ...
// (consecutive items read consecutive indices).
struct MaxPoolBoundsPartialKernel {
  const int64_t* indices;
  int64_t* part;  // [4][L * P]: min row, max row, min column, max column
  int64_t planes, P, W, L;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t lane = i / P, k = i - lane * P;
    int64_t rmin = pool_detail::kNone, rmax = -1, cmin = pool_detail::kNone, cmax = -1;
    for (int64_t b = lane; b < planes; b += L) {
      const int64_t at = indices[b * P + k];
      if (at < 0) continue;  // a window without elements: no gradient goes anywhere
      const int64_t r = at / W, c = at - r * W;
      rmin = k_min(rmin, r);
      rmax = k_max(rmax, r);
      cmin = k_min(cmin, c);
      cmax = k_max(cmax, c);
    }
    const int64_t n = L * P;
    part[i] = rmin;
    part[n + i] = rmax;
    part[2 * n + i] = cmin;
    part[3 * n + i] = cmax;
  }
};

// Pass 2: item o < Ho: output row o, combining the partials over lanes and columns; item Ho + o:
// output column o, over lanes and rows. bounds = [lo, hi) pairs: rows at [0, 2 Ho), columns after.
struct MaxPoolBoundsCombineKernel {
  const int64_t* part;
  int64_t* bounds;
  int64_t Ho, Wo, L;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t n = L * Ho * Wo;
    const bool row = i < Ho;
    const int64_t o = row ? i : i - Ho;
    const int64_t* pmin = part + (row ? 0 : 2 * n);
    const int64_t* pmax = part + (row ? n : 3 * n);
    int64_t lo = pool_detail::kNone, hi = -1;
    const int64_t m = row ? Wo : Ho;  // the other dim, combined over
    for (int64_t lane = 0; lane < L; ++lane)
      for (int64_t q = 0; q < m; ++q) {
        const int64_t k = lane * Ho * Wo + (row ? o * Wo + q : q * Wo + o);
        lo = k_min(lo, pmin[k]);
        hi = k_max(hi, pmax[k]);
      }
    bounds[2 * i] = lo;
    bounds[2 * i + 1] = hi;
  }
};

// Pass 3: item h < H: the first and last output row o whose maxima can lie in input row h
// (bounds lo(o) <= h <= hi(o)); item H + w: the same for columns. ranges = [first, last] pairs, an
// empty range as (0, -1).
struct MaxPoolRangesKernel {
  const int64_t* bounds;
  int64_t* ranges;
  int64_t H, Ho, Wo;
  ORBIT_HD void operator()(int64_t i) const {
    const bool row = i < H;
    const int64_t v = row ? i : i - H;
    const int64_t m = row ? Ho : Wo;
    const int64_t* b = bounds + (row ? 0 : 2 * Ho);
    int64_t first = 0, last = -1;
    bool found = false;
    for (int64_t o = 0; o < m; ++o)
      if (b[2 * o] <= v && v <= b[2 * o + 1]) {
        if (!found) first = o;
        found = true;
        last = o;
      }
    ranges[2 * i] = first;
    ranges[2 * i + 1] = last;
  }
};

// Pass 4: one item per input element: the sum of gy over the outputs whose maximum it is, visited in
// ascending output order.
template <class T>
struct MaxPoolBackwardKernel {
  const T* gy;
  const int64_t* indices;
  const int64_t* ranges;  // rows at [0, 2 H), columns after
  T* gx;
  int64_t H, W, Ho, Wo;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t w = i % W, h = (i / W) % H, b = i / (H * W);
    const int64_t at = h * W + w;
    const int64_t r0 = ranges[2 * h], r1 = ranges[2 * h + 1];
    const int64_t c0 = ranges[2 * (H + w)], c1 = ranges[2 * (H + w) + 1];
    const T* gys = gy + b * Ho * Wo;
    const int64_t* is = indices + b * Ho * Wo;
    T s = T(0);
    for (int64_t r = r0; r <= r1; ++r)
      for (int64_t c = c0; c <= c1; ++c)
        if (is[r * Wo + c] == at) s += gys[r * Wo + c];
    gx[i] = s;
  }
};

template <class Exec>
void max_pool2d_backward(const Exec& ex, const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  const auto s = pool_detail::planes_of(gx, gy);
  ORBIT_CHECK(indices.dtype() == DType::I64 && indices.is_contiguous() && indices.shape() == gy.shape(),
              "cuda max_pool2d_backward: indices must be contiguous int64 of gy's shape");
  const int64_t P = s.Ho * s.Wo;
  if (gx.numel() == 0) return;
  // Lanes of the bounds pass: about 65536 items to fill a GPU, at most 256 partials per output
  // position (the combining pass then reads at most 256 * max(Ho, Wo) of them per item).
  const int64_t L = k_max<int64_t>(1, k_min<int64_t>(s.planes, k_min<int64_t>(256, 65536 / k_max<int64_t>(P, 1))));
  auto part = ex.scratch(sizeof(int64_t) * 4 * static_cast<size_t>(L * P));
  auto bounds = ex.scratch(sizeof(int64_t) * 2 * static_cast<size_t>(s.Ho + s.Wo));
  auto ranges = ex.scratch(sizeof(int64_t) * 2 * static_cast<size_t>(s.H + s.W));
  int64_t* pp = static_cast<int64_t*>(part.data());
  int64_t* bp = static_cast<int64_t*>(bounds.data());
  int64_t* rp = static_cast<int64_t*>(ranges.data());
  const int64_t* ip = ptr<const int64_t>(indices);
  ex.launch(L * P, MaxPoolBoundsPartialKernel{ip, pp, s.planes, P, s.W, L});
  ex.launch(s.Ho + s.Wo, MaxPoolBoundsCombineKernel{pp, bp, s.Ho, s.Wo, L});
  ex.launch(s.H + s.W, MaxPoolRangesKernel{bp, rp, s.H, s.Ho, s.Wo});
  dispatch_float(gy.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(gx.numel(), MaxPoolBackwardKernel<T>{ptr<const T>(gy), ip, rp, ptr<T>(gx), s.H, s.W, s.Ho, s.Wo});
  });
}

// ============================================================================ average pooling

template <class T>
struct AvgPoolKernel {
  const T* x;
  T* out;
  int64_t H, W, Ho, Wo;
  Pool2dParams p;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t j = i % Wo, r = (i / Wo) % Ho, b = i / (Ho * Wo);
    const auto wh = pool_detail::avg_window(r, p.kernel_h, p.stride_h, p.pad_h, H);
    const auto ww = pool_detail::avg_window(j, p.kernel_w, p.stride_w, p.pad_w, W);
    if (wh.lo >= wh.hi || ww.lo >= ww.hi) {
      out[i] = T(0);
      return;
    }
    const T* xs = x + b * H * W;
    T s = T(0);
    for (int64_t ih = wh.lo; ih < wh.hi; ++ih)
      for (int64_t iw = ww.lo; iw < ww.hi; ++iw) s += xs[ih * W + iw];
    const int64_t divisor = p.count_include_pad ? wh.padded * ww.padded : (wh.hi - wh.lo) * (ww.hi - ww.lo);
    out[i] = s / static_cast<T>(divisor);
  }
};

template <class Exec>
void avg_pool2d(const Exec& ex, const Tensor& x, const Pool2dParams& p, const Tensor& out) {
  const auto s = pool_detail::planes_of(x, out);
  dispatch_float(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(out.numel(), AvgPoolKernel<T>{ptr<const T>(x), ptr<T>(out), s.H, s.W, s.Ho, s.Wo, p});
  });
}

template <class T>
struct AvgPoolBackwardKernel {
  const T* gy;
  T* gx;
  int64_t H, W, Ho, Wo;
  Pool2dParams p;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t w = i % W, h = (i / W) % H, b = i / (H * W);
    // Output rows r with r * stride - pad <= h < r * stride - pad + kernel, and likewise columns.
    const int64_t r0 = k_max<int64_t>(0, pool_detail::floor_div(h + p.pad_h - p.kernel_h, p.stride_h) + 1);
    const int64_t r1 = k_min<int64_t>(Ho - 1, pool_detail::floor_div(h + p.pad_h, p.stride_h));
    const int64_t c0 = k_max<int64_t>(0, pool_detail::floor_div(w + p.pad_w - p.kernel_w, p.stride_w) + 1);
    const int64_t c1 = k_min<int64_t>(Wo - 1, pool_detail::floor_div(w + p.pad_w, p.stride_w));
    const T* gys = gy + b * Ho * Wo;
    T s = T(0);
    for (int64_t r = r0; r <= r1; ++r) {
      const auto wh = pool_detail::avg_window(r, p.kernel_h, p.stride_h, p.pad_h, H);
      if (h < wh.lo || h >= wh.hi) continue;
      for (int64_t c = c0; c <= c1; ++c) {
        const auto ww = pool_detail::avg_window(c, p.kernel_w, p.stride_w, p.pad_w, W);
        if (w < ww.lo || w >= ww.hi) continue;
        const int64_t divisor =
            p.count_include_pad ? wh.padded * ww.padded : (wh.hi - wh.lo) * (ww.hi - ww.lo);
        s += gys[r * Wo + c] / static_cast<T>(divisor);
      }
    }
    gx[i] = s;
  }
};

template <class Exec>
void avg_pool2d_backward(const Exec& ex, const Tensor& gy, const Pool2dParams& p, const Tensor& gx) {
  const auto s = pool_detail::planes_of(gx, gy);
  dispatch_float(gy.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(gx.numel(), AvgPoolBackwardKernel<T>{ptr<const T>(gy), ptr<T>(gx), s.H, s.W, s.Ho, s.Wo, p});
  });
}

// ============================================================================ adaptive average pooling

template <class T>
struct AdaptiveAvgPoolKernel {
  const T* x;
  T* out;
  int64_t H, W, Ho, Wo;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t j = i % Wo, r = (i / Wo) % Ho, b = i / (Ho * Wo);
    const int64_t h0 = pool_detail::adaptive_start(r, Ho, H), h1 = pool_detail::adaptive_end(r, Ho, H);
    const int64_t w0 = pool_detail::adaptive_start(j, Wo, W), w1 = pool_detail::adaptive_end(j, Wo, W);
    const T* xs = x + b * H * W;
    T s = T(0);
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) s += xs[ih * W + iw];
    out[i] = s / static_cast<T>((h1 - h0) * (w1 - w0));
  }
};

template <class Exec>
void adaptive_avg_pool2d(const Exec& ex, const Tensor& x, const Tensor& out) {
  const auto s = pool_detail::planes_of(x, out);
  dispatch_float(x.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(out.numel(), AdaptiveAvgPoolKernel<T>{ptr<const T>(x), ptr<T>(out), s.H, s.W, s.Ho, s.Wo});
  });
}

template <class T>
struct AdaptiveAvgPoolBackwardKernel {
  const T* gy;
  T* gx;
  int64_t H, W, Ho, Wo;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t w = i % W, h = (i / W) % H, b = i / (H * W);
    // Output rows r with start(r) <= h < end(r): floor(h * Ho / H) <= r <= floor(((h + 1) * Ho - 1) / H)
    // (checked again against the windows below), and likewise columns.
    const int64_t r0 = (h * Ho) / H, r1 = k_min<int64_t>(Ho - 1, ((h + 1) * Ho - 1) / H);
    const int64_t c0 = (w * Wo) / W, c1 = k_min<int64_t>(Wo - 1, ((w + 1) * Wo - 1) / W);
    const T* gys = gy + b * Ho * Wo;
    T s = T(0);
    for (int64_t r = r0; r <= r1; ++r) {
      const int64_t h0 = pool_detail::adaptive_start(r, Ho, H), h1 = pool_detail::adaptive_end(r, Ho, H);
      if (h < h0 || h >= h1) continue;
      for (int64_t c = c0; c <= c1; ++c) {
        const int64_t w0 = pool_detail::adaptive_start(c, Wo, W), w1 = pool_detail::adaptive_end(c, Wo, W);
        if (w < w0 || w >= w1) continue;
        s += gys[r * Wo + c] / static_cast<T>((h1 - h0) * (w1 - w0));
      }
    }
    gx[i] = s;
  }
};

template <class Exec>
void adaptive_avg_pool2d_backward(const Exec& ex, const Tensor& gy, const Tensor& gx) {
  const auto s = pool_detail::planes_of(gx, gy);
  dispatch_float(gy.dtype(), "adaptive_avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(gx.numel(), AdaptiveAvgPoolBackwardKernel<T>{ptr<const T>(gy), ptr<T>(gx), s.H, s.W, s.Ho, s.Wo});
  });
}

}  // namespace orbit::cuda::kernels

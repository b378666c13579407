// Pooling kernels of the CPU backend: max, average and adaptive-average pooling over the planes of
// x [N, C, H, W], forward and backward, with PyTorch's window rules. Every (n, c) plane is
// independent, so planes run in parallel. Backward kernels overwrite gx (zero, then add).
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/cpu/cpu_backend.h"
#include "engine/parallel.h"

namespace orbit::cpu {

namespace {

// Calls f(plane) for every plane in [0, planes), in parallel; `work` is the cost of one plane.
template <class F>
void for_each_plane(int64_t planes, int64_t work, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(work, 1));
  parallel_for(0, planes, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// The window of output position o along one dim for average pooling (PyTorch's rule): it starts at
// o * stride - pad and is cut at in + pad, which defines the divisor with count_include_pad; the
// part inside the input, [lo, hi), is what gets summed.
struct AvgWindow {
  int64_t lo, hi, padded;  // padded: window length counting padding (ceil-mode windows are cut)
};
inline AvgWindow avg_window(int64_t o, int64_t kernel, int64_t stride, int64_t pad, int64_t in) {
  const int64_t start = o * stride - pad;
  const int64_t end = std::min(start + kernel, in + pad);
  return {std::max<int64_t>(start, 0), std::min(end, in), end - start};
}

// The taps [k0, k1) of a max-pooling window starting at `start` (dilation d, `kernel` taps) that
// fall inside [0, n): start + k * d >= 0 and start + k * d <= n - 1.
inline void tap_range(int64_t start, int64_t d, int64_t kernel, int64_t n, int64_t& k0, int64_t& k1) {
  if (d == 1) {  // the common case, without divisions
    k0 = std::max<int64_t>(0, -start);
    k1 = std::max<int64_t>(0, std::min(kernel, n - start));
  } else {
    k0 = start >= 0 ? 0 : (-start + d - 1) / d;
    k1 = n - 1 - start < 0 ? 0 : std::min(kernel, (n - 1 - start) / d + 1);
  }
  k0 = std::min(k0, k1);
}

// Adaptive windows: [floor(o * in / out), ceil((o + 1) * in / out)).
inline int64_t adaptive_start(int64_t o, int64_t out, int64_t in) { return (o * in) / out; }
inline int64_t adaptive_end(int64_t o, int64_t out, int64_t in) {
  return ((o + 1) * in + out - 1) / out;
}

}  // namespace

// ====================================================================== max pooling

void CpuBackend::max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out,
                            const Tensor& indices) {
  const int64_t H = x.size(2), W = x.size(3), Ho = out.size(2), Wo = out.size(3);
  const int64_t planes = x.size(0) * x.size(1);
  int64_t* ip = indices.data<int64_t>();
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    for_each_plane(planes, Ho * Wo * p.kernel_h * p.kernel_w, [&](int64_t b) {
      const T* xs = xp + b * H * W;
      T* os = op + b * Ho * Wo;
      int64_t* is = ip + b * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i) {
        int64_t ki0, ki1;
        tap_range(i * p.stride_h - p.pad_h, p.dilation_h, p.kernel_h, H, ki0, ki1);
        for (int64_t j = 0; j < Wo; ++j) {
          int64_t kj0, kj1;
          const int64_t w0 = j * p.stride_w - p.pad_w;
          tap_range(w0, p.dilation_w, p.kernel_w, W, kj0, kj1);
          // First maximum in row-major window order; a NaN wins (the last one, as in PyTorch's CPU
          // kernel). A window with no element inside the input gives -inf and index -1.
          T best = -std::numeric_limits<T>::infinity();
          int64_t arg = -1;
          for (int64_t ki = ki0; ki < ki1; ++ki) {
            const int64_t ih = i * p.stride_h - p.pad_h + ki * p.dilation_h;
            for (int64_t kj = kj0; kj < kj1; ++kj) {
              const int64_t at = ih * W + w0 + kj * p.dilation_w;
              const T v = xs[at];
              if (v > best || v != v || arg < 0) {
                best = v;
                arg = at;
              }
            }
          }
          os[i * Wo + j] = best;
          is[i * Wo + j] = arg;
        }
      }
    });
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  const int64_t HW = gx.size(2) * gx.size(3), P = gy.size(2) * gy.size(3);
  const int64_t planes = gx.size(0) * gx.size(1);
  const int64_t* ip = indices.data<int64_t>();
  dispatch_float(gy.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = static_cast<const T*>(gy.raw_data());
    T* xp = static_cast<T*>(gx.raw_data());
    for_each_plane(planes, HW + P, [&](int64_t b) {
      T* gxs = xp + b * HW;
      std::fill(gxs, gxs + HW, T(0));
      const T* gys = gp + b * P;
      const int64_t* is = ip + b * P;
      for (int64_t k = 0; k < P; ++k)
        if (is[k] >= 0) gxs[is[k]] += gys[k];
    });
  });
}

// ====================================================================== average pooling

void CpuBackend::avg_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out) {
  const int64_t H = x.size(2), W = x.size(3), Ho = out.size(2), Wo = out.size(3);
  const int64_t planes = x.size(0) * x.size(1);
  dispatch_float(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    for_each_plane(planes, Ho * Wo * p.kernel_h * p.kernel_w, [&](int64_t b) {
      const T* xs = xp + b * H * W;
      T* os = op + b * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i) {
        const AvgWindow wh = avg_window(i, p.kernel_h, p.stride_h, p.pad_h, H);
        for (int64_t j = 0; j < Wo; ++j) {
          const AvgWindow ww = avg_window(j, p.kernel_w, p.stride_w, p.pad_w, W);
          const int64_t inside = (wh.hi - wh.lo) * (ww.hi - ww.lo);
          if (wh.lo >= wh.hi || ww.lo >= ww.hi) {
            os[i * Wo + j] = T(0);
            continue;
          }
          T s = 0;
          for (int64_t ih = wh.lo; ih < wh.hi; ++ih)
            for (int64_t iw = ww.lo; iw < ww.hi; ++iw) s += xs[ih * W + iw];
          const int64_t divisor = p.count_include_pad ? wh.padded * ww.padded : inside;
          os[i * Wo + j] = s / static_cast<T>(divisor);
        }
      }
    });
  });
}

void CpuBackend::avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, const Tensor& gx) {
  const int64_t H = gx.size(2), W = gx.size(3), Ho = gy.size(2), Wo = gy.size(3);
  const int64_t planes = gx.size(0) * gx.size(1);
  dispatch_float(gy.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = static_cast<const T*>(gy.raw_data());
    T* xp = static_cast<T*>(gx.raw_data());
    for_each_plane(planes, Ho * Wo * p.kernel_h * p.kernel_w, [&](int64_t b) {
      T* gxs = xp + b * H * W;
      std::fill(gxs, gxs + H * W, T(0));
      const T* gys = gp + b * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i) {
        const AvgWindow wh = avg_window(i, p.kernel_h, p.stride_h, p.pad_h, H);
        for (int64_t j = 0; j < Wo; ++j) {
          const AvgWindow ww = avg_window(j, p.kernel_w, p.stride_w, p.pad_w, W);
          if (wh.lo >= wh.hi || ww.lo >= ww.hi) continue;
          const int64_t inside = (wh.hi - wh.lo) * (ww.hi - ww.lo);
          const int64_t divisor = p.count_include_pad ? wh.padded * ww.padded : inside;
          const T g = gys[i * Wo + j] / static_cast<T>(divisor);
          for (int64_t ih = wh.lo; ih < wh.hi; ++ih)
            for (int64_t iw = ww.lo; iw < ww.hi; ++iw) gxs[ih * W + iw] += g;
        }
      }
    });
  });
}

// ====================================================================== adaptive average pooling

void CpuBackend::adaptive_avg_pool2d(const Tensor& x, const Tensor& out) {
  const int64_t H = x.size(2), W = x.size(3), Ho = out.size(2), Wo = out.size(3);
  const int64_t planes = x.size(0) * x.size(1);
  dispatch_float(x.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    for_each_plane(planes, H * W + Ho * Wo, [&](int64_t b) {
      const T* xs = xp + b * H * W;
      T* os = op + b * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i) {
        const int64_t h0 = adaptive_start(i, Ho, H), h1 = adaptive_end(i, Ho, H);
        for (int64_t j = 0; j < Wo; ++j) {
          const int64_t w0 = adaptive_start(j, Wo, W), w1 = adaptive_end(j, Wo, W);
          T s = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) s += xs[ih * W + iw];
          os[i * Wo + j] = s / static_cast<T>((h1 - h0) * (w1 - w0));
        }
      }
    });
  });
}

void CpuBackend::adaptive_avg_pool2d_backward(const Tensor& gy, const Tensor& gx) {
  const int64_t H = gx.size(2), W = gx.size(3), Ho = gy.size(2), Wo = gy.size(3);
  const int64_t planes = gx.size(0) * gx.size(1);
  dispatch_float(gy.dtype(), "adaptive_avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = static_cast<const T*>(gy.raw_data());
    T* xp = static_cast<T*>(gx.raw_data());
    for_each_plane(planes, H * W + Ho * Wo, [&](int64_t b) {
      T* gxs = xp + b * H * W;
      std::fill(gxs, gxs + H * W, T(0));
      const T* gys = gp + b * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i) {
        const int64_t h0 = adaptive_start(i, Ho, H), h1 = adaptive_end(i, Ho, H);
        for (int64_t j = 0; j < Wo; ++j) {
          const int64_t w0 = adaptive_start(j, Wo, W), w1 = adaptive_end(j, Wo, W);
          const T g = gys[i * Wo + j] / static_cast<T>((h1 - h0) * (w1 - w0));
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) gxs[ih * W + iw] += g;
        }
      }
    });
  });
}

}  // namespace orbit::cpu

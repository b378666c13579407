// The plain, direct 2-D convolution (forward and both backwards) that the fast CPU kernels in
// cpu_conv.cpp are tested against. Written for readability, not speed: one loop per index of
//
//   y[n, o, i, j] = sum_{c, ki, kj} w[o, c, ki, kj] * x[n, g * Cg + c, i * sh - ph + ki * dh,
//                                                             j * sw - pw + kj * dw]
//
// where g = o / Og is the group of output channel o, Cg = C / groups and Og = O / groups input and
// output channels per group, and x is zero outside the image. Sums are accumulated in double.
// Tensors must be contiguous CPU float32/float64; outputs are allocated here.
#pragma once

#include <vector>

#include "engine/backend.h"
#include "engine/tensor.h"

namespace orbit::cpu {

namespace conv_reference_detail {

struct Dims {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, Cg, Og;
};

inline Dims dims_of(const Shape& x, const Shape& w, const Conv2dParams& p) {
  Dims d{};
  d.N = x[0], d.C = x[1], d.H = x[2], d.W = x[3];
  d.O = w[0], d.kh = w[2], d.kw = w[3];
  d.Ho = (d.H + 2 * p.pad_h - p.dilation_h * (d.kh - 1) - 1) / p.stride_h + 1;
  d.Wo = (d.W + 2 * p.pad_w - p.dilation_w * (d.kw - 1) - 1) / p.stride_w + 1;
  d.Cg = d.C / p.groups;
  d.Og = d.O / p.groups;
  return d;
}

// Calls f(n, o, i, j, c_in, c_w, ki, kj, ih, iw) for every term of the convolution sum whose input
// position (ih, iw) lies inside the image; c_in is the input channel, c_w its index in the weight.
template <class F>
void for_each_term(const Dims& d, const Conv2dParams& p, const F& f) {
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t o = 0; o < d.O; ++o)
      for (int64_t i = 0; i < d.Ho; ++i)
        for (int64_t j = 0; j < d.Wo; ++j)
          for (int64_t c = 0; c < d.Cg; ++c)
            for (int64_t ki = 0; ki < d.kh; ++ki)
              for (int64_t kj = 0; kj < d.kw; ++kj) {
                const int64_t ih = i * p.stride_h - p.pad_h + ki * p.dilation_h;
                const int64_t iw = j * p.stride_w - p.pad_w + kj * p.dilation_w;
                if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
                f(n, o, i, j, (o / d.Og) * d.Cg + c, c, ki, kj, ih, iw);
              }
}

}  // namespace conv_reference_detail

// y [N, O, Ho, Wo] from x [N, C, H, W] and w [O, C / groups, kh, kw].
inline Tensor conv2d_reference(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  using namespace conv_reference_detail;
  const Dims d = dims_of(x.shape(), w.shape(), p);
  std::vector<double> y(d.N * d.O * d.Ho * d.Wo, 0.0);
  const std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  for_each_term(d, p, [&](int64_t n, int64_t o, int64_t i, int64_t j, int64_t ci, int64_t cw,
                          int64_t ki, int64_t kj, int64_t ih, int64_t iw) {
    y[((n * d.O + o) * d.Ho + i) * d.Wo + j] +=
        wv[((o * d.Cg + cw) * d.kh + ki) * d.kw + kj] * xv[((n * d.C + ci) * d.H + ih) * d.W + iw];
  });
  return Tensor::from_vector(y, {d.N, d.O, d.Ho, d.Wo}).to(x.dtype());
}

// dL/dx [N, C, H, W] (x_shape) from dL/dy: every term sends w * gy back to its input position.
inline Tensor conv2d_reference_backward_input(const Tensor& gy, const Tensor& w, const Shape& x_shape,
                                              const Conv2dParams& p) {
  using namespace conv_reference_detail;
  const Dims d = dims_of(x_shape, w.shape(), p);
  std::vector<double> gx(d.N * d.C * d.H * d.W, 0.0);
  const std::vector<double> gv = gy.to_vector<double>(), wv = w.to_vector<double>();
  for_each_term(d, p, [&](int64_t n, int64_t o, int64_t i, int64_t j, int64_t ci, int64_t cw,
                          int64_t ki, int64_t kj, int64_t ih, int64_t iw) {
    gx[((n * d.C + ci) * d.H + ih) * d.W + iw] +=
        wv[((o * d.Cg + cw) * d.kh + ki) * d.kw + kj] * gv[((n * d.O + o) * d.Ho + i) * d.Wo + j];
  });
  return Tensor::from_vector(gx, x_shape).to(gy.dtype());
}

// dL/dw [O, C / groups, kh, kw] (w_shape) from x and dL/dy: every term adds x * gy to its weight.
inline Tensor conv2d_reference_backward_weight(const Tensor& x, const Tensor& gy, const Shape& w_shape,
                                               const Conv2dParams& p) {
  using namespace conv_reference_detail;
  const Dims d = dims_of(x.shape(), w_shape, p);
  std::vector<double> gw(d.O * d.Cg * d.kh * d.kw, 0.0);
  const std::vector<double> xv = x.to_vector<double>(), gv = gy.to_vector<double>();
  for_each_term(d, p, [&](int64_t n, int64_t o, int64_t i, int64_t j, int64_t ci, int64_t cw,
                          int64_t ki, int64_t kj, int64_t ih, int64_t iw) {
    gw[((o * d.Cg + cw) * d.kh + ki) * d.kw + kj] +=
        xv[((n * d.C + ci) * d.H + ih) * d.W + iw] * gv[((n * d.O + o) * d.Ho + i) * d.Wo + j];
  });
  return Tensor::from_vector(gw, w_shape).to(x.dtype());
}

}  // namespace orbit::cpu

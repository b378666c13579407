// Spatial-transform kernels of the CUDA backend, the group actions on images: flip and roll (exact
// coordinate permutations; a rotation by 90 degrees is a flip plus a transposed view) and grid_sample
// with its backward (bilinear / nearest sampling with zeros / border / reflection padding; rotations
// by other angles). Semantics and formulas are those of the CPU backend (engine/cpu/cpu_spatial.cpp),
// which follows PyTorch's torch.nn.functional.grid_sample formula by formula.
//
// The design, in plain words:
//   - flip and roll are one kernel (CoordMapKernel) with one work item per output element. The item
//     splits its flat index into coordinates, maps each coordinate of the output to the coordinate of
//     x it reads (unchanged, reversed n-1-c, or shifted (c - shift) mod n), and copies that element.
//     The per-dim flip flags and shifts travel with the kernel as fixed arrays of kMaxDims. Size-1
//     dims are dropped and neighbouring dims that are both untouched (or both reversed) and
//     contiguous are merged on the host, as the Indexer does. x may be strided.
//   - grid_sample has one work item per output element (n, c, output pixel): it turns the grid
//     point into a source position (unnormalize, then padding), then reads the nearest pixel or the
//     four bilinear corners of channel c. Each item recomputes the source position of its pixel,
//     which is cheap next to the memory reads and keeps every item independent.
//   - grid_sample_backward for the input (gx) is the adjoint: gx is zeroed, then one work item per
//     element of gy adds gy times each corner weight into gx with atomic_add, since many output
//     pixels may read the same input pixel. On the GPU the order of those float additions is then
//     unspecified (not bit-reproducible where they collide); the host executor adds in the CPU
//     backend's order.
//   - grid_sample_backward for the grid (ggrid, only when wanted) has one work item per grid point
//     (n, output pixel), which sums over the channels itself, so nothing collides and no atomics are
//     needed. Nearest sampling is piecewise constant, so its grid gradient is zero (as PyTorch).
#pragma once

#include <climits>

#include "engine/cuda/kernels/common.h"
#include "engine/cuda/kernels/elementwise.h"  // fill (to zero gx)

namespace orbit::cuda::kernels {

// ============================================================================ flip and roll

// For out[c_0, ..., c_{k-1}] = x[m_0(c_0), ..., m_{k-1}(c_{k-1})] with per-dim maps m_d: the identity,
// a reversal (flipped[d] = 1) or a cyclic shift by shift[d] in [0, sizes[d]).
struct CoordMap {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t out_strides[kMaxDims] = {};
  int64_t x_strides[kMaxDims] = {};
  int64_t flipped[kMaxDims] = {};
  int64_t shift[kMaxDims] = {};

  ORBIT_HD void offsets(int64_t i, int64_t* out_offset, int64_t* x_offset) const {
    int64_t oo = 0, ox = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t n = sizes[d];
      const int64_t q = i / n;
      const int64_t c = i - q * n;  // output coordinate
      i = q;
      int64_t s = c;                // the coordinate of x it reads
      if (flipped[d])
        s = n - 1 - c;
      else if (shift[d] != 0)
        s = c >= shift[d] ? c - shift[d] : c - shift[d] + n;  // element j moved to j + shift
      oo += c * out_strides[d];
      ox += s * x_strides[d];
    }
    *out_offset = oo;
    *x_offset = ox;
  }
};

template <class T>
struct CoordMapKernel {
  CoordMap m;
  const T* x;
  T* out;
  ORBIT_HD void operator()(int64_t i) const {
    int64_t oo, ox;
    m.offsets(i, &oo, &ox);
    out[oo] = x[ox];
  }
};

static_assert(std::is_trivially_copyable<CoordMapKernel<float>>::value, "kernels are passed by value");

namespace spatial_detail {

// flipped / shift: one entry per dim of out (shift already reduced into [0, size)).
inline CoordMap make_coord_map(const Tensor& x, const Tensor& out, const std::vector<int64_t>& flipped,
                               const std::vector<int64_t>& shift, const char* what) {
  const Shape& shape = out.shape();
  CoordMap m;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;  // every map of a size-1 dim is the identity
    const bool identity = !flipped[d] && shift[d] == 0;
    if (m.ndim > 0) {
      const int p = m.ndim - 1;
      const bool prev_identity = !m.flipped[p] && m.shift[p] == 0;
      // Reversing (or keeping) two neighbouring dims is reversing (keeping) the merged one; shifts are
      // never merged.
      const bool same_map = (identity && prev_identity) || (flipped[d] && m.flipped[p]);
      if (same_map && m.out_strides[p] == out.strides()[d] * shape[d] &&
          m.x_strides[p] == x.strides()[d] * shape[d]) {
        m.sizes[p] *= shape[d];
        m.out_strides[p] = out.strides()[d];
        m.x_strides[p] = x.strides()[d];
        continue;
      }
    }
    ORBIT_CHECK(m.ndim < kMaxDims, "cuda ", what, ": the kernel takes at most ", kMaxDims,
                " dims after merging, got shape ", shape_str(shape));
    m.sizes[m.ndim] = shape[d];
    m.out_strides[m.ndim] = out.strides()[d];
    m.x_strides[m.ndim] = x.strides()[d];
    m.flipped[m.ndim] = flipped[d] ? 1 : 0;
    m.shift[m.ndim] = shift[d];
    ++m.ndim;
  }
  return m;
}

template <class Exec>
void launch_coord_map(const Exec& ex, const Tensor& x, const Tensor& out, const std::vector<int64_t>& flipped,
                      const std::vector<int64_t>& shift, const char* what) {
  const CoordMap m = make_coord_map(x, out, flipped, shift, what);
  dispatch_all(x.dtype(), what, [&](auto tag) {
    using T = decltype(tag);
    ex.launch(out.numel(), CoordMapKernel<T>{m, ptr<const T>(x), ptr<T>(out)});
  });
}

}  // namespace spatial_detail

// out = x reversed along each dim in dims. x may be strided; out has x's shape.
template <class Exec>
void flip(const Exec& ex, const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out) {
  ORBIT_ASSERT(x.shape() == out.shape() && x.dtype() == out.dtype());
  if (out.numel() == 0) return;
  const size_t nd = out.shape().size();
  std::vector<int64_t> flipped(nd, 0), shift(nd, 0);
  for (int64_t d : dims) flipped[static_cast<size_t>(d)] = 1;
  spatial_detail::launch_coord_map(ex, x, out, flipped, shift, "flip");
}

// out = x with element j moved to (j + shifts[k]) mod n along dims[k]; any shift (negative, larger
// than the size); a dim listed twice is shifted by the sum.
template <class Exec>
void roll(const Exec& ex, const Tensor& x, const std::vector<int64_t>& shifts, const std::vector<int64_t>& dims,
          const Tensor& out) {
  ORBIT_ASSERT(x.shape() == out.shape() && x.dtype() == out.dtype() && shifts.size() == dims.size());
  if (out.numel() == 0) return;
  const size_t nd = out.shape().size();
  std::vector<int64_t> flipped(nd, 0), shift(nd, 0);
  for (size_t k = 0; k < dims.size(); ++k) {
    const size_t d = static_cast<size_t>(dims[k]);
    const int64_t n = out.shape()[d];
    shift[d] = (shift[d] + ((shifts[k] % n) + n) % n) % n;
  }
  spatial_detail::launch_coord_map(ex, x, out, flipped, shift, "roll");
}

// ============================================================================ grid_sample

namespace spatial_detail {

// Math the k_* helpers of common.h do not cover (same functions on host and device).
template <class T> ORBIT_HD inline T k_fmod(T a, T b) { return std::fmod(a, b); }
template <class T> ORBIT_HD inline T k_nearbyint(T x) { return std::nearbyint(x); }  // half to even
template <class T> ORBIT_HD inline bool k_isfinite(T x) { return std::isfinite(x); }

// Grid coordinate in [-1, 1] to a pixel coordinate: -1 and 1 are the centres of the border pixels
// (align_corners) or their outer edges (otherwise). *scale receives d(pixel)/d(coordinate).
template <class T>
ORBIT_HD inline T unnormalize(T coord, int64_t size, bool align_corners, T* scale) {
  if (align_corners) {
    *scale = T(size - 1) / 2;
    return (coord + 1) / 2 * T(size - 1);
  }
  *scale = T(size) / 2;
  return ((coord + 1) * T(size) - 1) / 2;
}

// Clamps to [0, size - 1]; *grad receives the derivative (0 where clamped, as PyTorch).
template <class T>
ORBIT_HD inline T clip_coordinates(T in, int64_t size, T* grad) {
  if (in <= T(0)) {
    *grad = 0;
    return 0;
  }
  const T hi = T(size - 1);
  if (in >= hi) {
    *grad = 0;
    return hi;
  }
  *grad = 1;
  return in;
}

// Reflects `in` into [twice_low / 2, twice_high / 2] (bounds doubled so that half-integers stay exact);
// *grad receives the derivative (+1 or -1). The parity of the number of reflections is taken in
// floating point, so that no float-to-integer conversion can overflow for huge or infinite inputs.
template <class T>
ORBIT_HD inline T reflect_coordinates(T in, int64_t twice_low, int64_t twice_high, T* grad) {
  if (twice_low == twice_high) {
    *grad = 0;
    return 0;
  }
  const T lo = T(twice_low) / 2, span = T(twice_high - twice_low) / 2;
  in -= lo;
  T sign = 1;
  if (in < 0) {
    sign = -1;
    in = -in;
  }
  const T extra = k_fmod(in, span);
  const bool even = k_fmod(k_floor(in / span), T(2)) == T(0);
  if (even) {
    *grad = sign;
    return extra + lo;
  }
  *grad = -sign;
  return span - extra + lo;
}

// Non-finite or huge coordinates would overflow the integer conversion; they become -100, which is
// out of bounds (they sample zero and get no gradient), as PyTorch.
template <class T>
ORBIT_HD inline T safe_downgrade_to_int_range(T x) {
  if (!k_isfinite(x) || k_abs(x) > T(INT_MAX / 2)) return T(-100);
  return x;
}

// The source pixel coordinate of grid coordinate `coord` along an axis of `size` pixels, after the
// padding, with d(source)/d(coord) in *grad.
template <class T>
ORBIT_HD inline T source_index(T coord, int64_t size, GridPadding padding, bool align_corners, T* grad) {
  T g_scale, g_pad = 1;
  coord = unnormalize(coord, size, align_corners, &g_scale);
  if (padding == GridPadding::Border) {
    coord = clip_coordinates(coord, size, &g_pad);
  } else if (padding == GridPadding::Reflection) {
    T g_refl, g_clip;
    // About the border pixel centres (align_corners) or the image edges (otherwise).
    if (align_corners)
      coord = reflect_coordinates(coord, int64_t(0), 2 * (size - 1), &g_refl);
    else
      coord = reflect_coordinates(coord, int64_t(-1), 2 * size - 1, &g_refl);
    coord = clip_coordinates(coord, size, &g_clip);
    g_pad = g_refl * g_clip;
  }
  *grad = g_scale * g_pad;
  return safe_downgrade_to_int_range(coord);
}

ORBIT_HD inline bool within(int64_t h, int64_t w, int64_t H, int64_t W) {
  return h >= 0 && h < H && w >= 0 && w < W;
}

// The nearest pixel of a source point (round half to even, as PyTorch).
template <class T>
ORBIT_HD inline int64_t nearest(T i) {
  return static_cast<int64_t>(k_nearbyint(i));
}

// The bilinear stencil of a source point (ix, iy): corners k = nw, ne, sw, se at (cx[k], cy[k]) with
// weights nw = ux uy, ne = tx uy, sw = ux ty, se = tx ty, where tx / ux are the distances to the west /
// east neighbours (and ty / uy north / south), computed as PyTorch does so that rounding matches.
template <class T>
struct Bilinear {
  int64_t cx[4], cy[4];
  T tx, ux, ty, uy;
  ORBIT_HD Bilinear(T ix, T iy) {
    const T fx = k_floor(ix), fy = k_floor(iy);
    const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);
    tx = ix - fx;
    ux = (fx + 1) - ix;
    ty = iy - fy;
    uy = (fy + 1) - iy;
    cx[0] = x0; cx[1] = x0 + 1; cx[2] = x0; cx[3] = x0 + 1;
    cy[0] = y0; cy[1] = y0;     cy[2] = y0 + 1; cy[3] = y0 + 1;
  }
  ORBIT_HD void weights(T w[4]) const {
    w[0] = ux * uy;
    w[1] = tx * uy;
    w[2] = ux * ty;
    w[3] = tx * ty;
  }
};

// Sizes of x [N, C, H, W] and grid [N, Ho, Wo, 2]; P = Ho * Wo output pixels per plane.
struct GridShape {
  int64_t C = 0, H = 0, W = 0, P = 0;
};

inline GridShape grid_shape(const Tensor& x, const Tensor& grid) {
  ORBIT_ASSERT(x.dim() == 4 && grid.dim() == 4 && grid.shape()[3] == 2 && grid.shape()[0] == x.shape()[0]);
  GridShape s;
  s.C = x.shape()[1];
  s.H = x.shape()[2];
  s.W = x.shape()[3];
  s.P = grid.shape()[1] * grid.shape()[2];
  return s;
}

}  // namespace spatial_detail

// out[n, c, p] from x[n, c] at grid point (n, p). One item per output element (x, grid, out contiguous).
template <class T>
struct GridSampleKernel {
  spatial_detail::GridShape s;
  const T* x;
  const T* grid;
  T* out;
  GridMode mode;
  GridPadding padding;
  bool align_corners;
  ORBIT_HD void operator()(int64_t i) const {
    using namespace spatial_detail;
    const int64_t nc = i / s.P, p = i - nc * s.P, n = nc / s.C;
    const T* gp = grid + (n * s.P + p) * 2;
    T unused;
    const T ix = source_index(gp[0], s.W, padding, align_corners, &unused);
    const T iy = source_index(gp[1], s.H, padding, align_corners, &unused);
    const T* plane = x + nc * s.H * s.W;
    if (mode == GridMode::Nearest) {
      const int64_t xi = nearest(ix), yi = nearest(iy);
      out[i] = within(yi, xi, s.H, s.W) ? plane[yi * s.W + xi] : T(0);
      return;
    }
    const Bilinear<T> b(ix, iy);
    T w[4];
    b.weights(w);
    T acc = 0;
    for (int k = 0; k < 4; ++k)
      if (within(b.cy[k], b.cx[k], s.H, s.W)) acc += plane[b.cy[k] * s.W + b.cx[k]] * w[k];
    out[i] = acc;
  }
};

// gx[n, c] += gy[n, c, p] * (the weight of each pixel that output p read). One item per element of gy;
// the additions into gx collide across items, so they are atomic (unspecified order on the GPU).
template <class T>
struct GridSampleBackwardInputKernel {
  spatial_detail::GridShape s;
  const T* gy;
  const T* grid;
  T* gx;
  GridMode mode;
  GridPadding padding;
  bool align_corners;
  ORBIT_HD void operator()(int64_t i) const {
    using namespace spatial_detail;
    const int64_t nc = i / s.P, p = i - nc * s.P, n = nc / s.C;
    const T* gp = grid + (n * s.P + p) * 2;
    T unused;
    const T ix = source_index(gp[0], s.W, padding, align_corners, &unused);
    const T iy = source_index(gp[1], s.H, padding, align_corners, &unused);
    T* plane = gx + nc * s.H * s.W;
    const T go = gy[i];
    if (mode == GridMode::Nearest) {
      const int64_t xi = nearest(ix), yi = nearest(iy);
      if (within(yi, xi, s.H, s.W)) atomic_add(plane + yi * s.W + xi, go);
      return;
    }
    const Bilinear<T> b(ix, iy);
    T w[4];
    b.weights(w);
    for (int k = 0; k < 4; ++k)
      if (within(b.cy[k], b.cx[k], s.H, s.W)) atomic_add(plane + b.cy[k] * s.W + b.cx[k], w[k] * go);
  }
};

// ggrid[n, p] = d(sum over c of gy[n, c, p] * out[n, c, p]) / d(grid[n, p]). One item per grid point,
// summing over the channels itself (no collisions).
template <class T>
struct GridSampleBackwardGridKernel {
  spatial_detail::GridShape s;
  const T* gy;
  const T* x;
  const T* grid;
  T* ggrid;
  GridMode mode;
  GridPadding padding;
  bool align_corners;
  ORBIT_HD void operator()(int64_t np) const {
    using namespace spatial_detail;
    if (mode == GridMode::Nearest) {  // piecewise constant in the grid
      ggrid[np * 2 + 0] = ggrid[np * 2 + 1] = T(0);
      return;
    }
    const int64_t n = np / s.P, p = np - n * s.P;
    T dix, diy;  // d(source)/d(grid coordinate)
    const T ix = source_index(grid[np * 2 + 0], s.W, padding, align_corners, &dix);
    const T iy = source_index(grid[np * 2 + 1], s.H, padding, align_corners, &diy);
    const Bilinear<T> b(ix, iy);
    // d(out)/d(ix) = sum over corners of value * d(weight)/d(ix), and likewise for iy:
    //   x: nw -uy, ne +uy, sw -ty, se +ty;   y: nw -ux, ne -tx, sw +ux, se +tx
    const T dwx[4] = {-b.uy, b.uy, -b.ty, b.ty};
    const T dwy[4] = {-b.ux, -b.tx, b.ux, b.tx};
    bool ok[4];
    for (int k = 0; k < 4; ++k) ok[k] = within(b.cy[k], b.cx[k], s.H, s.W);
    const int64_t HW = s.H * s.W;
    T gix = 0, giy = 0;
    for (int64_t c = 0; c < s.C; ++c) {
      const T* plane = x + (n * s.C + c) * HW;
      const T go = gy[(n * s.C + c) * s.P + p];
      for (int k = 0; k < 4; ++k) {
        if (!ok[k]) continue;
        const T v = plane[b.cy[k] * s.W + b.cx[k]] * go;
        gix += v * dwx[k];
        giy += v * dwy[k];
      }
    }
    ggrid[np * 2 + 0] = dix * gix;
    ggrid[np * 2 + 1] = diy * giy;
  }
};

static_assert(std::is_trivially_copyable<GridSampleKernel<float>>::value, "kernels are passed by value");
static_assert(std::is_trivially_copyable<GridSampleBackwardInputKernel<float>>::value, "kernels are passed by value");
static_assert(std::is_trivially_copyable<GridSampleBackwardGridKernel<double>>::value, "kernels are passed by value");

// x [N, C, H, W], grid [N, Ho, Wo, 2] (x, y in [-1, 1]), out [N, C, Ho, Wo]; all contiguous.
template <class Exec>
void grid_sample(const Exec& ex, const Tensor& x, const Tensor& grid, GridMode mode, GridPadding padding,
                 bool align_corners, const Tensor& out) {
  ORBIT_ASSERT(x.is_contiguous() && grid.is_contiguous() && out.is_contiguous());
  const spatial_detail::GridShape s = spatial_detail::grid_shape(x, grid);
  if (out.numel() == 0) return;
  dispatch_float(x.dtype(), "grid_sample", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(out.numel(), GridSampleKernel<T>{s, ptr<const T>(x), ptr<const T>(grid), ptr<T>(out), mode, padding,
                                               align_corners});
  });
}

// gx (zeroed here, then accumulated) and ggrid (written; may be undefined when not wanted); all
// contiguous.
template <class Exec>
void grid_sample_backward(const Exec& ex, const Tensor& gy, const Tensor& x, const Tensor& grid, GridMode mode,
                          GridPadding padding, bool align_corners, const Tensor& gx, const Tensor& ggrid) {
  ORBIT_ASSERT(gy.is_contiguous() && x.is_contiguous() && grid.is_contiguous() && gx.is_contiguous() &&
               gx.shape() == x.shape());
  const spatial_detail::GridShape s = spatial_detail::grid_shape(x, grid);
  fill(ex, gx, 0.0);
  dispatch_float(x.dtype(), "grid_sample backward", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(gy.numel(), GridSampleBackwardInputKernel<T>{s, ptr<const T>(gy), ptr<const T>(grid), ptr<T>(gx),
                                                           mode, padding, align_corners});
    if (!ggrid.defined()) return;
    ORBIT_ASSERT(ggrid.is_contiguous() && ggrid.shape() == grid.shape());
    ex.launch(grid.numel() / 2, GridSampleBackwardGridKernel<T>{s, ptr<const T>(gy), ptr<const T>(x),
                                                                ptr<const T>(grid), ptr<T>(ggrid), mode, padding,
                                                                align_corners});
  });
}

}  // namespace orbit::cuda::kernels

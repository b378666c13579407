// CPU kernels for spatial transforms: flip and roll (coordinate permutations) and grid_sample with
// its backward (bilinear / nearest sampling with zeros / border / reflection padding), following
// PyTorch's reference CPU implementation of torch.nn.functional.grid_sample formula by formula.
#include "engine/cpu/cpu_backend.h"

#include <cmath>
#include <limits>
#include <vector>

#include "engine/parallel.h"

namespace orbit::cpu {

namespace {

// out[i_0, ..., i_{n-1}] = x[map_0[i_0], ..., map_{n-1}[i_{n-1}]] for per-dim coordinate maps (the
// identity, a reversal or a cyclic shift). x may be strided; out is contiguous.
void permute_coordinates(const Tensor& x, const std::vector<std::vector<int64_t>>& maps,
                         const Tensor& out, const char* what) {
  const Shape& shape = out.shape();
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (out.numel() == 0) return;
  if (nd == 0) {
    backend_of(out).copy(x, out);
    return;
  }
  // Per-dim offsets into x of each output coordinate: table[d][i] = map_d[i] * x.stride(d).
  std::vector<std::vector<int64_t>> table(nd);
  for (int64_t d = 0; d < nd; ++d) {
    table[d].resize(shape[d]);
    for (int64_t i = 0; i < shape[d]; ++i) table[d][i] = maps[d][i] * x.strides()[d];
  }
  const int64_t inner = shape[nd - 1], rows = out.numel() / inner;
  const std::vector<int64_t>& last = table[nd - 1];
  dispatch_all(x.dtype(), what, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const int64_t grain = std::max<int64_t>(1, 32768 / inner);
    parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int64_t base = 0, rem = r;  // x offset of the row from its multi-index over dims [0, nd-1)
        for (int64_t d = nd - 2; d >= 0; --d) {
          base += table[d][rem % shape[d]];
          rem /= shape[d];
        }
        T* o = op + r * inner;
        for (int64_t i = 0; i < inner; ++i) o[i] = xp[base + last[i]];
      }
    });
  });
}

std::vector<std::vector<int64_t>> identity_maps(const Shape& shape) {
  std::vector<std::vector<int64_t>> maps(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    maps[d].resize(shape[d]);
    for (int64_t i = 0; i < shape[d]; ++i) maps[d][i] = i;
  }
  return maps;
}

}  // namespace

void CpuBackend::flip(const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out) {
  ORBIT_ASSERT(x.shape() == out.shape() && out.is_contiguous());
  auto maps = identity_maps(x.shape());
  for (int64_t d : dims) {
    const int64_t n = x.shape()[d];
    for (int64_t i = 0; i < n; ++i) maps[d][i] = n - 1 - i;
  }
  permute_coordinates(x, maps, out, "flip");
}

void CpuBackend::roll(const Tensor& x, const std::vector<int64_t>& shifts,
                      const std::vector<int64_t>& dims, const Tensor& out) {
  ORBIT_ASSERT(x.shape() == out.shape() && out.is_contiguous() && shifts.size() == dims.size());
  auto maps = identity_maps(x.shape());
  // Element j moves to (j + shift) mod n, so output i reads input (i - shift) mod n. Repeated dims
  // compose (their shifts add up).
  for (size_t k = 0; k < dims.size(); ++k) {
    const int64_t d = dims[k], n = x.shape()[d];
    if (n == 0) continue;
    const int64_t s = ((shifts[k] % n) + n) % n;
    for (int64_t i = 0; i < n; ++i) maps[d][i] = (maps[d][i] - s + n) % n;
  }
  permute_coordinates(x, maps, out, "roll");
}

// ====================================================================== grid_sample

namespace {

// Grid coordinates in [-1, 1] to pixel coordinates: -1 and 1 are the centres of the border pixels
// (align_corners) or their outer edges (not align_corners). `scale` receives d(pixel)/d(coord).
template <class T>
T unnormalize(T coord, int64_t size, bool align_corners, T* scale) {
  if (align_corners) {
    *scale = T(size - 1) / 2;
    return (coord + 1) / 2 * T(size - 1);
  }
  *scale = T(size) / 2;
  return ((coord + 1) * T(size) - 1) / 2;
}

// Clamps to [0, size - 1]; `grad` receives the derivative (0 outside, as PyTorch).
template <class T>
T clip_coordinates(T in, int64_t size, T* grad) {
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

// Reflects `in` into [twice_low / 2, twice_high / 2] (bounds doubled so that half-integers stay
// exact); `grad` receives the derivative (+1 or -1).
template <class T>
T reflect_coordinates(T in, int64_t twice_low, int64_t twice_high, T* grad) {
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
  const T extra = std::fmod(in, span);
  const int64_t flips = static_cast<int64_t>(std::floor(in / span));
  if (flips % 2 == 0) {
    *grad = sign;
    return extra + lo;
  }
  *grad = -sign;
  return span - extra + lo;
}

// Non-finite or huge coordinates would overflow the integer conversion; PyTorch maps them to -100,
// which is out of bounds (so they sample zero / get no gradient).
template <class T>
T safe_downgrade_to_int_range(T x) {
  if (!std::isfinite(x) || std::fabs(x) > T(std::numeric_limits<int32_t>::max() / 2)) return T(-100);
  return x;
}

// The source pixel coordinate of grid coordinate `coord` along an axis of `size` pixels, after
// padding, with its derivative d(source)/d(coord) in *grad.
template <class T>
T source_index(T coord, int64_t size, GridPadding padding, bool align_corners, T* grad) {
  T g_scale, g_pad = 1;
  coord = unnormalize(coord, size, align_corners, &g_scale);
  if (padding == GridPadding::Border) {
    coord = clip_coordinates(coord, size, &g_pad);
  } else if (padding == GridPadding::Reflection) {
    T g_refl, g_clip;
    // Reflect about the border pixel centres (align_corners) or the image edges (otherwise).
    if (align_corners)
      coord = reflect_coordinates(coord, 0, 2 * (size - 1), &g_refl);
    else
      coord = reflect_coordinates(coord, -1, 2 * size - 1, &g_refl);
    coord = clip_coordinates(coord, size, &g_clip);
    g_pad = g_refl * g_clip;
  }
  *grad = g_scale * g_pad;
  return safe_downgrade_to_int_range(coord);
}

inline bool within(int64_t h, int64_t w, int64_t H, int64_t W) {
  return h >= 0 && h < H && w >= 0 && w < W;
}

// The bilinear stencil of a source point (ix, iy): the north-west corner (x0, y0) and the
// distances to the west / east and north / south neighbours (tx + ux = 1, ty + uy = 1, each pair
// computed as PyTorch does, so that rounding matches). Corner weights in the order nw, ne, sw, se:
//   nw = ux uy, ne = tx uy, sw = ux ty, se = tx ty.
template <class T>
struct Bilinear {
  int64_t x0, y0;
  T tx, ux, ty, uy;
  Bilinear(T ix, T iy) {
    const T fx = std::floor(ix), fy = std::floor(iy);
    x0 = static_cast<int64_t>(fx);
    y0 = static_cast<int64_t>(fy);
    tx = ix - fx;
    ux = (fx + 1) - ix;
    ty = iy - fy;
    uy = (fy + 1) - iy;
  }
  void weights(T w[4]) const {
    w[0] = ux * uy;
    w[1] = tx * uy;
    w[2] = ux * ty;
    w[3] = tx * ty;
  }
};

struct GridGeometry {
  int64_t N, C, H, W, Ho, Wo;
  GridGeometry(const Tensor& x, const Tensor& grid)
      : N(x.shape()[0]), C(x.shape()[1]), H(x.shape()[2]), W(x.shape()[3]),
        Ho(grid.shape()[1]), Wo(grid.shape()[2]) {}
};

}  // namespace

void CpuBackend::grid_sample(const Tensor& x, const Tensor& grid, GridMode mode,
                             GridPadding padding, bool align_corners, const Tensor& out) {
  ORBIT_ASSERT(x.is_contiguous() && grid.is_contiguous() && out.is_contiguous());
  const GridGeometry g(x, grid);
  const int64_t P = g.Ho * g.Wo;
  dispatch_float(x.dtype(), "grid_sample", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* gp = static_cast<const T*>(grid.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(g.C, 1));
    // Each (n, output pixel) is independent: out[n, c, p] for all c.
    parallel_for(0, g.N * P, grain, [&](int64_t b, int64_t e) {
      for (int64_t np = b; np < e; ++np) {
        const int64_t n = np / P, p = np % P;
        T unused;
        const T ix = source_index(gp[np * 2 + 0], g.W, padding, align_corners, &unused);
        const T iy = source_index(gp[np * 2 + 1], g.H, padding, align_corners, &unused);
        const T* xn = xp + n * g.C * g.H * g.W;
        T* on = op + n * g.C * P + p;
        if (mode == GridMode::Nearest) {
          // Round half to even, as std::nearbyint in the default rounding mode (PyTorch's choice).
          const int64_t xi = static_cast<int64_t>(std::nearbyint(ix));
          const int64_t yi = static_cast<int64_t>(std::nearbyint(iy));
          const bool in = within(yi, xi, g.H, g.W);
          for (int64_t c = 0; c < g.C; ++c)
            on[c * P] = in ? xn[(c * g.H + yi) * g.W + xi] : T(0);
          continue;
        }
        const Bilinear<T> s(ix, iy);
        T w[4];
        s.weights(w);
        const int64_t cx[4] = {s.x0, s.x0 + 1, s.x0, s.x0 + 1};
        const int64_t cy[4] = {s.y0, s.y0, s.y0 + 1, s.y0 + 1};
        bool ok[4];
        for (int k = 0; k < 4; ++k) ok[k] = within(cy[k], cx[k], g.H, g.W);
        for (int64_t c = 0; c < g.C; ++c) {
          const T* plane = xn + c * g.H * g.W;
          T acc = 0;
          for (int k = 0; k < 4; ++k)
            if (ok[k]) acc += plane[cy[k] * g.W + cx[k]] * w[k];
          on[c * P] = acc;
        }
      }
    });
  });
}

void CpuBackend::grid_sample_backward(const Tensor& gy, const Tensor& x, const Tensor& grid,
                                      GridMode mode, GridPadding padding, bool align_corners,
                                      const Tensor& gx, const Tensor& ggrid) {
  ORBIT_ASSERT(gy.is_contiguous() && x.is_contiguous() && grid.is_contiguous() && gx.is_contiguous());
  const GridGeometry g(x, grid);
  const int64_t P = g.Ho * g.Wo, HW = g.H * g.W;
  dispatch_float(x.dtype(), "grid_sample backward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* gp = static_cast<const T*>(grid.raw_data());
    const T* gyp = static_cast<const T*>(gy.raw_data());
    T* gxp = static_cast<T*>(gx.raw_data());

    // gx: many output pixels may read the same input pixel, so the split is over (n, c) planes,
    // each accumulated by one thread in output-pixel order.
    parallel_for(0, g.N * g.C, 1, [&](int64_t b, int64_t e) {
      for (int64_t nc = b; nc < e; ++nc) {
        const int64_t n = nc / g.C;
        T* plane = gxp + nc * HW;
        for (int64_t i = 0; i < HW; ++i) plane[i] = 0;
        const T* gyc = gyp + nc * P;
        const T* gn = gp + n * P * 2;
        for (int64_t p = 0; p < P; ++p) {
          T unused;
          const T ix = source_index(gn[p * 2 + 0], g.W, padding, align_corners, &unused);
          const T iy = source_index(gn[p * 2 + 1], g.H, padding, align_corners, &unused);
          const T go = gyc[p];
          if (mode == GridMode::Nearest) {
            const int64_t xi = static_cast<int64_t>(std::nearbyint(ix));
            const int64_t yi = static_cast<int64_t>(std::nearbyint(iy));
            if (within(yi, xi, g.H, g.W)) plane[yi * g.W + xi] += go;
            continue;
          }
          const Bilinear<T> s(ix, iy);
          T w[4];
          s.weights(w);
          const int64_t cx[4] = {s.x0, s.x0 + 1, s.x0, s.x0 + 1};
          const int64_t cy[4] = {s.y0, s.y0, s.y0 + 1, s.y0 + 1};
          for (int k = 0; k < 4; ++k)
            if (within(cy[k], cx[k], g.H, g.W)) plane[cy[k] * g.W + cx[k]] += w[k] * go;
        }
      }
    });

    if (!ggrid.defined()) return;
    ORBIT_ASSERT(ggrid.is_contiguous() && ggrid.shape() == grid.shape());
    T* ggp = static_cast<T*>(ggrid.raw_data());
    // ggrid: one (n, output pixel) per task, summing over channels. Nearest sampling is piecewise
    // constant in the grid, so its gradient is zero (as PyTorch).
    const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(g.C, 1));
    parallel_for(0, g.N * P, grain, [&](int64_t b, int64_t e) {
      for (int64_t np = b; np < e; ++np) {
        if (mode == GridMode::Nearest) {
          ggp[np * 2 + 0] = ggp[np * 2 + 1] = 0;
          continue;
        }
        const int64_t n = np / P, p = np % P;
        T dix, diy;  // d(source)/d(grid coordinate)
        const T ix = source_index(gp[np * 2 + 0], g.W, padding, align_corners, &dix);
        const T iy = source_index(gp[np * 2 + 1], g.H, padding, align_corners, &diy);
        const Bilinear<T> s(ix, iy);
        // d(out)/d(ix) = sum over corners of value * d(weight)/d(tx), and likewise for iy:
        //   x: nw -uy, ne +uy, sw -ty, se +ty;   y: nw -ux, ne -tx, sw +ux, se +tx
        const T dwx[4] = {-s.uy, s.uy, -s.ty, s.ty};
        const T dwy[4] = {-s.ux, -s.tx, s.ux, s.tx};
        const int64_t cx[4] = {s.x0, s.x0 + 1, s.x0, s.x0 + 1};
        const int64_t cy[4] = {s.y0, s.y0, s.y0 + 1, s.y0 + 1};
        bool ok[4];
        for (int k = 0; k < 4; ++k) ok[k] = within(cy[k], cx[k], g.H, g.W);
        T gix = 0, giy = 0;
        for (int64_t c = 0; c < g.C; ++c) {
          const T* plane = xp + (n * g.C + c) * HW;
          const T go = gyp[(n * g.C + c) * P + p];
          for (int k = 0; k < 4; ++k) {
            if (!ok[k]) continue;
            const T v = plane[cy[k] * g.W + cx[k]] * go;
            gix += v * dwx[k];
            giy += v * dwy[k];
          }
        }
        ggp[np * 2 + 0] = dix * gix;
        ggp[np * 2 + 1] = diy * giy;
      }
    });
  });
}

}  // namespace orbit::cpu

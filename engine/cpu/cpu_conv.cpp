// Convolution kernels of the CPU backend: im2col + GEMM for forward and both backwards, and a direct
// loop for depthwise convolutions. engine/cpu/conv_reference.h holds the plain 7-loop version that
// these are tested against.
//
// Notation: x [N, C, H, W], w [O, Cg, kh, kw], y [N, O, Ho, Wo] with G groups, Cg = C / G and
// Og = O / G channels per group, P = Ho * Wo output positions. For one image and one group, the
// column matrix is
//
//   col [K = Cg * kh * kw, P],  col[(c * kh + ki) * kw + kj][i * Wo + j]
//                                  = x[c][i * sh - ph + ki * dh][j * sw - pw + kj * dw]
//
// (zero outside the image), and the convolution of that group is one matrix product:
//
//   forward          y_g [Og, P]  = w_g [Og, K] * col [K, P]
//   backward input   dcol [K, P]  = w_g^T * dy_g,  then col2im adds dcol back onto dx (the adjoint)
//   backward weight  dw_g [Og, K] = sum over images of dy_g [Og, P] * col^T
//
// Blocks. The GEMMs run on blocks of columns: either several whole images side by side (when P is
// small, e.g. 7x7 or 14x14 outputs: a wider matrix keeps the GEMM micro-kernel's 32-column tiles
// full and gives the weight-gradient product a longer inner dimension), or one image split into
// bands of output rows (when K * P is large, so that the column matrix stays in the cache and its
// size is bounded for large images). A 1x1 convolution with stride 1 and no padding, one image per
// block, needs no im2col: the group's input planes [Cg, H * W] already are the column matrix.
//
// Threads: with at least as many images as threads, the images are split over the threads and each
// runs its own im2col and single-threaded GEMMs (sgemm runs on one thread inside a parallel region).
// For the ResNet-50 shapes at batch 8 on 2 cores this measured 1.3-2x faster than one image at a
// time with a multi-threaded GEMM (no fork/join per GEMM, each core keeps its column matrix in its
// own cache, and it degrades far less when another process competes for a core). Images left over
// (N not a multiple of the thread count, or N = 1) run with the GEMM and im2col parallel inside.
// The weight gradient is accumulated per thread and the partial sums are added in thread order, so
// results are deterministic for a given thread count.
#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include <omp.h>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/gemm.h"
#include "engine/parallel.h"

namespace orbit::cpu {

namespace {

struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t O = 0, kh = 0, kw = 0;       // weight
  int64_t Ho = 0, Wo = 0;              // output
  int64_t G = 1, Cg = 0, Og = 0;       // groups; input / output channels per group
  int64_t K = 0;                       // Cg * kh * kw: rows of the column matrix
  int64_t P = 0;                       // Ho * Wo: columns of the column matrix
  Conv2dParams p;

  bool pointwise() const {
    return kh == 1 && kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  }
  // One input channel per group: the per-group GEMMs would be tiny, a direct loop is faster.
  bool depthwise() const { return G > 1 && Cg == 1; }
};

ConvGeom geometry(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& p) {
  ConvGeom g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.O = w[0], g.kh = w[2], g.kw = w[3];
  g.Ho = y[2], g.Wo = y[3];
  g.G = p.groups;
  g.Cg = g.C / g.G;
  g.Og = g.O / g.G;
  g.K = g.Cg * g.kh * g.kw;
  g.P = g.Ho * g.Wo;
  g.p = p;
  ORBIT_ASSERT(w[1] == g.Cg && y[0] == g.N && y[1] == g.O, "conv2d kernel: inconsistent shapes");
  return g;
}

// The output positions [lo, hi) along one row whose input position o * stride + off lies in
// [0, n_in): o >= ceil(-off / stride) and o <= floor((n_in - 1 - off) / stride).
inline void valid_range(int64_t n_out, int64_t stride, int64_t off, int64_t n_in, int64_t& lo,
                        int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  const int64_t last = n_in - 1 - off;
  hi = last < 0 ? 0 : std::min(n_out, last / stride + 1);
  lo = std::min(lo, hi);
}

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>)
    sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
  else
    dgemm(ta, tb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
}

// Elements of one column matrix (4 MiB in float32): bounds the workspace per thread and keeps it in
// the shared cache between im2col and the GEMM's packing. Images are put side by side until a block
// has at least kTargetColumns columns. Both measured best among nearby values (budget 0.5M-2M,
// target 256-1024) on the ResNet-50 shapes at batch 8, by a few percent.
constexpr int64_t kColumnBudget = int64_t(1) << 20;
constexpr int64_t kTargetColumns = 512;

// A block of work: output rows [i0, i1) of the images [n0, n0 + nb). Its column matrix has
// cols() = nb * (i1 - i0) * Wo columns; image b's come at b * (i1 - i0) * Wo.
struct Block {
  int64_t n0, nb, i0, i1;
  int64_t cols(const ConvGeom& g) const { return nb * (i1 - i0) * g.Wo; }
  // One whole image: its outputs are contiguous in y, no staging needed.
  bool single() const { return nb == 1; }
};

struct Tiling {
  int64_t images = 1;  // per block
  int64_t rows = 1;    // output rows per block (all of them when images > 1)

  // max_images: the most images one thread handles in a call.
  Tiling(const ConvGeom& g, int64_t max_images) {
    const int64_t per_image = std::max<int64_t>(g.K * g.P, 1);
    const int64_t fit = kColumnBudget / per_image;  // whole images that fit into the budget
    const int64_t want = (kTargetColumns + g.P - 1) / std::max<int64_t>(g.P, 1);
    images = std::max<int64_t>(1, std::min({max_images, fit, want}));
    // Bands of rows for one large image; a 1x1 stride-1 convolution reads its input planes directly
    // and needs no column matrix, hence no bands.
    rows = images > 1 || g.pointwise()
               ? g.Ho
               : std::max<int64_t>(1, std::min(g.Ho, kColumnBudget / std::max<int64_t>(g.K * g.Wo, 1)));
  }
  int64_t max_cols(const ConvGeom& g) const { return images * rows * g.Wo; }

  // Calls f(block) for the blocks covering images [n_begin, n_end).
  template <class F>
  void each(const ConvGeom& g, int64_t n_begin, int64_t n_end, const F& f) const {
    for (int64_t n0 = n_begin; n0 < n_end; n0 += images)
      for (int64_t i0 = 0; i0 < g.Ho; i0 += rows)
        f(Block{n0, std::min(images, n_end - n0), i0, std::min(g.Ho, i0 + rows)});
  }
};

// Clears n elements, n being a few (the columns a kernel reaches into the padding): a plain loop,
// where a memset call per output row would cost more than the row's copy.
template <class T>
inline void clear_few(T* p, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    p[k] = T(0);
    asm volatile("" ::: "memory");  // keeps the compiler from turning this loop back into a memset call
  }
}

// Clears the wrapped entries of the band rows [a, e) (columns [0, lo) and [hi, Wo) of each): the end
// of one row and the start of the next are adjacent, so one span per row boundary.
template <class T>
void clear_wrapped(T* band, int64_t a, int64_t e, int64_t lo, int64_t hi, int64_t Wo) {
  if (lo == 0 && hi == Wo) return;
  clear_few(band + a * Wo, lo);
  for (int64_t i = a; i + 1 < e; ++i) clear_few(band + i * Wo + hi, Wo - hi + lo);
  clear_few(band + (e - 1) * Wo + hi, Wo - hi);
}

// Copies a plane at a time. Stride 1 with outputs as wide as the inputs (3x3 with padding 1, 5x5
// with padding 2, dilated kernels with matching padding): output row i of kernel row ki reads input
// row i - ph + ki * dh, and those rows follow each other in both x and the column matrix, so the rows
// [a, e) of a band that lie inside the image are one contiguous run, the input shifted by `off`
// along the row. The few entries of the run that wrapped around a row edge (j < lo or j >= hi) are
// the padding: im2col clears them after one copy, and col2im clears them in its scratch column matrix
// before one accumulation. For 28x28 images this replaces a call per 28-element row by a call per
// plane.
//
// Strided convolutions get the same through phase planes. With stride s along a dimension, input
// position s * m + q belongs to phase q (0 <= q < s) at index m. A kernel tap with offset
// off = k * dilation - pad reads input position j * s + off = s * (j + m) + q for output j, where
// off = s * m + q (m rounded down): phase q at index j + m, a stride-1 read. So im2col first
// deinterleaves each input plane of the block into its phase planes, stored with rows as long as an
// output row (Wo), and then copies each tap as above. For a 3x3 stride-2 convolution this replaces
// nine element-by-element gathers of every output row by one pass over the input and nine copies per
// plane. The stride-1 case above is the one where the input plane is its own single phase (`direct`).
//
// The phase plane keeps only Wo entries of a row, so the path needs every tap's read to stay inside
// them: the last output column a tap reads inside the image, j = hi - 1, must have j + m < Wo.
// Geometries where a tap reads further right (no padding on the right, as 3x3 stride 2 with padding
// 0), and stride-1 geometries whose outputs are not as wide as the inputs, keep the row-by-row copy.
struct Phases {
  bool usable = false;
  bool direct = false;  // stride 1, Wo == W: the input plane is its own phase, read in place
  int64_t mh_min = 0, mh_max = 0;  // the range of m over the kernel rows
  // Phase and index offset of each kernel row (qh, mh) and column (qw, mw).
  std::vector<int64_t> qh, mh, qw, mw;
  std::vector<char> used;  // [sh * sw]: whether a tap reads phase (a, b) (a 1x1 kernel reads one)

  // Count of indices of phase q along a dimension of n positions with stride s.
  static int64_t phase_len(int64_t n, int64_t s, int64_t q) { return q < n ? (n - q + s - 1) / s : 0; }
  // off = s * m + q with 0 <= q < s.
  static void split(int64_t off, int64_t s, int64_t& q, int64_t& m) {
    m = off >= 0 ? off / s : -((-off + s - 1) / s);
    q = off - s * m;
  }
  // Output columns [lo, hi) whose read of phase q at j + m lies inside the phase (as valid_range).
  static void columns(const ConvGeom& g, int64_t q, int64_t m, int64_t& lo, int64_t& hi) {
    const int64_t len = phase_len(g.W, g.p.stride_w, q);
    lo = std::max<int64_t>(0, -m);
    hi = std::max(lo, std::min(g.Wo, len - m));
  }

  explicit Phases(const ConvGeom& g) {
    const Conv2dParams& p = g.p;
    direct = p.stride_h == 1 && p.stride_w == 1 && g.Wo == g.W;
    if (p.stride_h == 1 && p.stride_w == 1 && !direct) return;
    qh.resize(g.kh), mh.resize(g.kh), qw.resize(g.kw), mw.resize(g.kw);
    for (int64_t ki = 0; ki < g.kh; ++ki) split(ki * p.dilation_h - p.pad_h, p.stride_h, qh[ki], mh[ki]);
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      split(kj * p.dilation_w - p.pad_w, p.stride_w, qw[kj], mw[kj]);
      int64_t lo, hi;
      columns(g, qw[kj], mw[kj], lo, hi);
      if (lo < hi && hi + mw[kj] > g.Wo) return;  // reads past the kept Wo entries of a row
    }
    used.assign(p.stride_h * p.stride_w, 0);
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) used[qh[ki] * p.stride_w + qw[kj]] = 1;
    mh_min = *std::min_element(mh.begin(), mh.end());
    mh_max = *std::max_element(mh.begin(), mh.end());
    usable = true;
  }
  // The phase rows a plane holds for a band of output rows [i0, i1): the whole input plane when
  // direct, otherwise the rows built for the band, [i0 + mh_min, i1 + mh_max), of which only those
  // inside the phase are filled. first_row is the phase row of the plane's row 0.
  int64_t rows(const Block& blk, const ConvGeom& g) const { return direct ? g.H : blk.i1 - blk.i0 + mh_max - mh_min; }
  int64_t first_row(const Block& blk) const { return direct ? 0 : blk.i0 + mh_min; }
};

// Calls f(x_row, phase_row, len) for every row of every phase plane a tap reads that lies inside
// the phase, over the rows the band needs: x_row is the offset in the input plane of the row's
// first element (its others follow with stride sw), phase_row the offset of the row in the phase
// planes (phase (a, b) at (a * sw + b) * rows * Wo, rows = phases.rows(blk, g)), len the entries of the
// row that are kept (at most Wo).
template <class F>
void for_each_phase_row(const ConvGeom& g, const Phases& phases, const Block& blk, const F& f) {
  const int64_t sh = g.p.stride_h, sw = g.p.stride_w, rows = phases.rows(blk, g), t0 = phases.first_row(blk);
  for (int64_t a = 0; a < sh; ++a) {
    const int64_t len_h = Phases::phase_len(g.H, sh, a);
    const int64_t r0 = std::max<int64_t>(0, -t0), r1 = std::max(r0, std::min(rows, len_h - t0));
    for (int64_t b = 0; b < sw; ++b) {
      if (!phases.used[a * sw + b]) continue;
      const int64_t len = std::min(g.Wo, Phases::phase_len(g.W, sw, b));
      for (int64_t r = r0; r < r1; ++r) f(((t0 + r) * sh + a) * g.W + b, ((a * sw + b) * rows + r) * g.Wo, len);
    }
  }
}

// A tap's run: band rows [a, e) and output columns [lo, hi) read inside its phase (empty when
// a == e or lo >= hi); the band's entry at row a, column lo pairs with the phase planes' entry at
// `phase` (offsets as in for_each_phase_row; in the input plane when direct), and the entries after
// it in both follow one another.
struct TapRun {
  int64_t a, e, lo, hi, phase;
  bool empty() const { return a == e || lo >= hi; }
  int64_t length(int64_t Wo) const { return (e - a - 1) * Wo + hi - lo; }
};

// Calls f(k, run) for the taps k = ki * kw + kj of the kernel.
template <class F>
void for_each_tap(const ConvGeom& g, const Phases& phases, const Block& blk, const F& f) {
  const int64_t rows = blk.i1 - blk.i0, plane_size = phases.rows(blk, g) * g.Wo, t0 = phases.first_row(blk);
  for (int64_t ki = 0; ki < g.kh; ++ki) {
    const int64_t qh = phases.qh[ki], first = blk.i0 + phases.mh[ki];  // band row 0 reads phase row first
    const int64_t len_h = Phases::phase_len(g.H, g.p.stride_h, qh);
    const int64_t a = std::max<int64_t>(0, -first), e = std::max(a, std::min(rows, len_h - first));
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      const int64_t qw = phases.qw[kj], mw = phases.mw[kj];
      int64_t lo, hi;
      Phases::columns(g, qw, mw, lo, hi);
      const int64_t phase = (qh * g.p.stride_w + qw) * plane_size + (first + a - t0) * g.Wo + lo + mw;
      f(ki * g.kw + kj, TapRun{a, e, lo, hi, phase});
    }
  }
}

// Deinterleaves the rows the band needs of one input plane into the phase planes that a tap reads.
// Entries past the phase's end in a row are zero.
template <class T>
void build_phases(const T* plane, const ConvGeom& g, const Phases& phases, const Block& blk, T* ph) {
  const int64_t sw = g.p.stride_w;
  for_each_phase_row(g, phases, blk, [&](int64_t x_row, int64_t phase_row, int64_t len) {
    const T* src = plane + x_row;
    T* d = ph + phase_row;
    if (sw == 2) {
      for (int64_t m = 0; m < len; ++m) d[m] = src[2 * m];
    } else {
      for (int64_t m = 0; m < len; ++m) d[m] = src[m * sw];
    }
    std::fill(d + len, d + g.Wo, T(0));
  });
}

// im2col for a geometry with usable phases (see above).
template <class T>
void im2col_phases(const T* x, const ConvGeom& g, const Phases& phases, int64_t grp, const Block& blk, T* col) {
  const int64_t cols = blk.cols(g), rows = blk.i1 - blk.i0, per_image = rows * g.Wo;
  const int64_t scratch_size = phases.direct ? 0 : g.p.stride_h * g.p.stride_w * phases.rows(blk, g) * g.Wo;
  const int64_t work = std::max<int64_t>(1, blk.nb * g.kh * g.kw * per_image);
  parallel_for(0, g.Cg, std::max<int64_t>(1, 32768 / work), [&](int64_t c0, int64_t c1) {
    std::unique_ptr<T[]> scratch(scratch_size > 0 ? new T[scratch_size] : nullptr);
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t b = 0; b < blk.nb; ++b) {
        const T* plane = x + ((blk.n0 + b) * g.C + grp * g.Cg + c) * g.H * g.W;
        if (!phases.direct) {
          build_phases(plane, g, phases, blk, scratch.get());
          plane = scratch.get();
        }
        for_each_tap(g, phases, blk, [&](int64_t k, const TapRun& run) {
          T* band = col + (c * g.kh * g.kw + k) * cols + b * per_image;
          if (run.empty()) return std::fill(band, band + per_image, T(0));
          std::fill(band, band + run.a * g.Wo, T(0));
          std::fill(band + run.e * g.Wo, band + per_image, T(0));
          std::memcpy(band + run.a * g.Wo + run.lo, plane + run.phase, run.length(g.Wo) * sizeof(T));
          clear_wrapped(band, run.a, run.e, run.lo, run.hi, g.Wo);
        });
      }
    }
  });
}

// col [K, blk.cols()] for group grp of the block's images (formula at the top of the file).
template <class T>
void im2col(const T* x, const ConvGeom& g, const Phases& phases, int64_t grp, const Block& blk, T* col) {
  if (phases.usable) return im2col_phases(x, g, phases, grp, blk, col);
  const Conv2dParams& p = g.p;
  const int64_t cols = blk.cols(g), per_image = (blk.i1 - blk.i0) * g.Wo;
  parallel_for(0, g.K, std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
      const int64_t off = kj * p.dilation_w - p.pad_w;  // iw = j * sw + off
      int64_t lo, hi;
      valid_range(g.Wo, p.stride_w, off, g.W, lo, hi);
      for (int64_t b = 0; b < blk.nb; ++b) {
        const T* plane = x + ((blk.n0 + b) * g.C + grp * g.Cg + c) * g.H * g.W;
        for (int64_t i = blk.i0; i < blk.i1; ++i) {
          T* dst = col + r * cols + b * per_image + (i - blk.i0) * g.Wo;
          const int64_t ih = i * p.stride_h - p.pad_h + ki * p.dilation_h;
          if (ih < 0 || ih >= g.H) {
            std::fill(dst, dst + g.Wo, T(0));
            continue;
          }
          const T* src = plane + ih * g.W + off;
          clear_few(dst, lo);
          if (p.stride_w == 1) {
            std::memcpy(dst + lo, src + lo, (hi - lo) * sizeof(T));
          } else {
            for (int64_t j = lo; j < hi; ++j) dst[j] = src[j * p.stride_w];
          }
          clear_few(dst + hi, g.Wo - hi);
        }
      }
    }
  });
}

// col2im for a geometry with usable phases, the adjoint of im2col_phases: each tap's band is added
// onto its phase plane (one contiguous run, after its wrapped entries are cleared in col), and the
// phase planes are then added back onto the input plane, interleaved (when direct, the bands are
// added onto the input plane itself).
template <class T>
void col2im_phases(T* col, const ConvGeom& g, const Phases& phases, int64_t grp, const Block& blk, T* x) {
  const int64_t sw = g.p.stride_w;
  const int64_t cols = blk.cols(g), rows = blk.i1 - blk.i0, per_image = rows * g.Wo;
  const int64_t scratch_size = phases.direct ? 0 : g.p.stride_h * sw * phases.rows(blk, g) * g.Wo;
  const int64_t work = std::max<int64_t>(1, g.kh * g.kw * per_image);
  parallel_for(0, blk.nb * g.Cg, std::max<int64_t>(1, 32768 / work), [&](int64_t q0, int64_t q1) {
    std::unique_ptr<T[]> scratch(scratch_size > 0 ? new T[scratch_size] : nullptr);
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b = q / g.Cg, c = q % g.Cg;
      T* plane = x + ((blk.n0 + b) * g.C + grp * g.Cg + c) * g.H * g.W;
      T* target = phases.direct ? plane : scratch.get();
      std::fill(scratch.get(), scratch.get() + scratch_size, T(0));
      for_each_tap(g, phases, blk, [&](int64_t k, const TapRun& run) {
        if (run.empty()) return;
        T* band = col + (c * g.kh * g.kw + k) * cols + b * per_image;
        clear_wrapped(band, run.a, run.e, run.lo, run.hi, g.Wo);
        const T* src = band + run.a * g.Wo + run.lo;
        T* dst = target + run.phase;
        for (int64_t n = run.length(g.Wo), i = 0; i < n; ++i) dst[i] += src[i];
      });
      if (phases.direct) continue;
      for_each_phase_row(g, phases, blk, [&](int64_t x_row, int64_t phase_row, int64_t len) {
        T* xrow = plane + x_row;
        const T* prow = scratch.get() + phase_row;
        for (int64_t m = 0; m < len; ++m) xrow[m * sw] += prow[m];
      });
    }
  });
}

// The adjoint of im2col: x[n][c][ih][iw] += col[...] for every column entry that im2col read from
// (ih, iw). Input planes are independent, so they run in parallel. col is scratch: with usable
// phases its wrapped entries are cleared (see above).
template <class T>
void col2im(T* col, const ConvGeom& g, const Phases& phases, int64_t grp, const Block& blk, T* x) {
  if (phases.usable) return col2im_phases(col, g, phases, grp, blk, x);
  const Conv2dParams& p = g.p;
  const int64_t cols = blk.cols(g), per_image = (blk.i1 - blk.i0) * g.Wo;
  const int64_t plane_work = std::max<int64_t>(g.kh * g.kw * per_image, 1);
  parallel_for(0, blk.nb * g.Cg, std::max<int64_t>(1, 32768 / plane_work), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b = q / g.Cg, c = q % g.Cg;
      T* plane = x + ((blk.n0 + b) * g.C + grp * g.Cg + c) * g.H * g.W;
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const int64_t r = (c * g.kh + ki) * g.kw + kj;
          const int64_t off = kj * p.dilation_w - p.pad_w;
          int64_t lo, hi;
          valid_range(g.Wo, p.stride_w, off, g.W, lo, hi);
          for (int64_t i = blk.i0; i < blk.i1; ++i) {
            const int64_t ih = i * p.stride_h - p.pad_h + ki * p.dilation_h;
            if (ih < 0 || ih >= g.H) continue;
            const T* src = col + r * cols + b * per_image + (i - blk.i0) * g.Wo;
            T* dst = plane + ih * g.W + off;
            if (p.stride_w == 1) {
              for (int64_t j = lo; j < hi; ++j) dst[j] += src[j];
            } else {
              for (int64_t j = lo; j < hi; ++j) dst[j * p.stride_w] += src[j];
            }
          }
        }
      }
    }
  });
}

// Moves the output-channel rows of a multi-image block between y-shaped memory (image n, channels
// grp * Og ..., P positions each) and a staging matrix [Og, nb * P] (image b's at b * P).
template <class T>
void stage_in(const T* y, const ConvGeom& g, int64_t grp, const Block& blk, T* staged) {
  for (int64_t b = 0; b < blk.nb; ++b)
    for (int64_t o = 0; o < g.Og; ++o)
      std::memcpy(staged + o * blk.nb * g.P + b * g.P, y + ((blk.n0 + b) * g.O + grp * g.Og + o) * g.P,
                  g.P * sizeof(T));
}
template <class T>
void stage_out(const T* staged, const ConvGeom& g, int64_t grp, const Block& blk, T* y) {
  for (int64_t b = 0; b < blk.nb; ++b)
    for (int64_t o = 0; o < g.Og; ++o)
      std::memcpy(y + ((blk.n0 + b) * g.O + grp * g.Og + o) * g.P, staged + o * blk.nb * g.P + b * g.P,
                  g.P * sizeof(T));
}

// Splits the images of a batch over threads (see the threading note at the top).
struct ImageSplit {
  int nt = 1;           // threads that share the images, and workspaces needed
  int64_t n_split = 0;  // images [0, n_split) are split evenly over the threads
  int64_t N = 0;

  // Small convolutions (under about a million multiply-adds) stay on one thread: a parallel region
  // costs more than it saves there, and far more when another process occupies a core.
  explicit ImageSplit(const ConvGeom& g) : N(g.N) {
    const int threads = omp_in_parallel() ? 1 : num_threads();
    const int64_t macs = g.N * g.O * g.K * g.P;
    if (threads > 1 && N >= threads && macs >= (int64_t(1) << 20)) {
      nt = threads;
      n_split = N / nt * nt;
    }
  }
  // The most images one call of body gets.
  int64_t max_images() const { return n_split > 0 ? std::max(n_split / nt, N - n_split) : N; }

  // Calls body(n_begin, n_end, t, fresh) for ranges of images, where t < nt names the workspace of
  // the thread that runs it and `fresh` says that no earlier range used that workspace. Returns
  // the number of workspaces used (OpenMP may grant fewer threads than asked for).
  template <class F>
  int run(const F& body) const {
    int used = 1;
    if (n_split > 0) {
#pragma omp parallel num_threads(nt)
      {
        const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
        body(n_split * t / T, n_split * (t + 1) / T, static_cast<int>(t), true);
#pragma omp single
        used = static_cast<int>(T);
      }
    }
    if (n_split < N) body(n_split, N, 0, n_split == 0);
    return used;
  }
};

// An uninitialized buffer of `count` per-workspace blocks of `size` elements each.
template <class T>
struct Workspace {
  std::unique_ptr<T[]> data;
  int64_t size = 0;
  Workspace(int count, int64_t block) : data(block > 0 ? new T[count * block] : nullptr), size(block) {}
  T* at(int t) const { return data.get() + t * size; }
};

// ---------------------------------------------------------------------------- im2col + GEMM

template <class T>
void forward_gemm(const T* x, const T* w, T* y, const ConvGeom& g) {
  const Phases phases(g);
  const ImageSplit split(g);
  const Tiling tiling(g, split.max_images());
  const int64_t mc = tiling.max_cols(g);
  const bool direct = g.pointwise() && tiling.images == 1;  // input planes are the columns
  const Workspace<T> cols(split.nt, direct ? 0 : g.K * mc);
  const Workspace<T> staged(split.nt, tiling.images > 1 ? g.Og * mc : 0);
  split.run([&](int64_t n_begin, int64_t n_end, int t, bool) {
    tiling.each(g, n_begin, n_end, [&](const Block& blk) {
      const int64_t nc = blk.cols(g);
      for (int64_t grp = 0; grp < g.G; ++grp) {
        const T* wg = w + grp * g.Og * g.K;
        T* yg = y + (blk.n0 * g.O + grp * g.Og) * g.P + blk.i0 * g.Wo;
        const T* B = x + (blk.n0 * g.C + grp * g.Cg) * g.H * g.W;
        if (!direct) {
          im2col(x, g, phases, grp, blk, cols.at(t));
          B = cols.at(t);
        }
        if (blk.single()) {
          gemm<T>(false, false, g.Og, nc, g.K, wg, g.K, B, nc, T(0), yg, g.P);
        } else {
          gemm<T>(false, false, g.Og, nc, g.K, wg, g.K, B, nc, T(0), staged.at(t), nc);
          stage_out(staged.at(t), g, grp, blk, y);
        }
      }
    });
  });
}

template <class T>
void backward_input_gemm(const T* gy, const T* w, T* gx, const ConvGeom& g) {
  const Phases phases(g);
  const ImageSplit split(g);
  const Tiling tiling(g, split.max_images());
  const int64_t mc = tiling.max_cols(g);
  const bool direct = g.pointwise() && tiling.images == 1;  // dx_g = w_g^T dy_g in place
  const Workspace<T> cols(split.nt, direct ? 0 : g.K * mc);
  const Workspace<T> staged(split.nt, tiling.images > 1 ? g.Og * mc : 0);
  split.run([&](int64_t n_begin, int64_t n_end, int t, bool) {
    tiling.each(g, n_begin, n_end, [&](const Block& blk) {
      const int64_t nc = blk.cols(g);
      for (int64_t grp = 0; grp < g.G; ++grp) {
        const T* wg = w + grp * g.Og * g.K;
        const T* A = gy + (blk.n0 * g.O + grp * g.Og) * g.P + blk.i0 * g.Wo;
        int64_t lda = g.P;
        if (!blk.single()) {
          stage_in(gy, g, grp, blk, staged.at(t));
          A = staged.at(t);
          lda = nc;
        }
        if (direct) {
          gemm<T>(true, false, g.K, nc, g.Og, wg, g.K, A, lda, T(0),
                  gx + (blk.n0 * g.C + grp * g.Cg) * g.H * g.W, g.P);
          continue;
        }
        if (blk.i0 == 0) {  // first band of these images: clear their planes of this group
          for (int64_t b = 0; b < blk.nb; ++b) {
            T* plane = gx + ((blk.n0 + b) * g.C + grp * g.Cg) * g.H * g.W;
            std::fill(plane, plane + g.Cg * g.H * g.W, T(0));
          }
        }
        gemm<T>(true, false, g.K, nc, g.Og, wg, g.K, A, lda, T(0), cols.at(t), nc);
        col2im(cols.at(t), g, phases, grp, blk, gx);
      }
    });
  });
}

template <class T>
void backward_weight_gemm(const T* x, const T* gy, T* gw, const ConvGeom& g) {
  const Phases phases(g);
  const ImageSplit split(g);
  const Tiling tiling(g, split.max_images());
  const int64_t mc = tiling.max_cols(g);
  const bool direct = g.pointwise() && tiling.images == 1;
  const int64_t wsize = g.O * g.K;
  const Workspace<T> cols(split.nt, direct ? 0 : g.K * mc);
  const Workspace<T> staged(split.nt, tiling.images > 1 ? g.Og * mc : 0);
  // Workspace 0 accumulates straight into gw, the others into partial sums added at the end.
  const Workspace<T> partial(split.nt - 1, wsize);
  const int used = split.run([&](int64_t n_begin, int64_t n_end, int t, bool fresh) {
    T* acc = t == 0 ? gw : partial.at(t - 1);
    bool first = fresh;  // the first block of a fresh workspace overwrites the accumulator
    tiling.each(g, n_begin, n_end, [&](const Block& blk) {
      const int64_t nc = blk.cols(g);
      for (int64_t grp = 0; grp < g.G; ++grp) {
        const T* A = gy + (blk.n0 * g.O + grp * g.Og) * g.P + blk.i0 * g.Wo;
        int64_t lda = g.P;
        if (!blk.single()) {
          stage_in(gy, g, grp, blk, staged.at(t));
          A = staged.at(t);
          lda = nc;
        }
        const T* B = x + (blk.n0 * g.C + grp * g.Cg) * g.H * g.W;
        if (!direct) {
          im2col(x, g, phases, grp, blk, cols.at(t));
          B = cols.at(t);
        }
        gemm<T>(false, true, g.Og, g.K, nc, A, lda, B, nc, first ? T(0) : T(1),
                acc + grp * g.Og * g.K, g.K);
      }
      first = false;
    });
  });
  for (int t = 1; t < used; ++t) {
    const T* src = partial.at(t - 1);
    for (int64_t i = 0; i < wsize; ++i) gw[i] += src[i];
  }
}

// ---------------------------------------------------------------------------- depthwise (direct)
// Group grp has the single input channel grp and the Og output channels grp * Og + m.

template <class T>
void forward_depthwise(const T* x, const T* w, T* y, const ConvGeom& g) {
  const Conv2dParams& p = g.p;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(g.kh * g.kw * g.P, 1));
  parallel_for(0, g.N * g.O, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n = b / g.O, o = b % g.O;
      const T* xp = x + (n * g.C + o / g.Og) * g.H * g.W;
      const T* wp = w + o * g.kh * g.kw;
      T* yp = y + b * g.P;
      for (int64_t i = 0; i < g.Ho; ++i) {
        T* yrow = yp + i * g.Wo;
        std::fill(yrow, yrow + g.Wo, T(0));
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t ih = i * p.stride_h - p.pad_h + ki * p.dilation_h;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const int64_t off = kj * p.dilation_w - p.pad_w;
            int64_t lo, hi;
            valid_range(g.Wo, p.stride_w, off, g.W, lo, hi);
            const T wv = wp[ki * g.kw + kj];
            const T* xrow = xp + ih * g.W + off;
            if (p.stride_w == 1) {
              for (int64_t j = lo; j < hi; ++j) yrow[j] += wv * xrow[j];
            } else {
              for (int64_t j = lo; j < hi; ++j) yrow[j] += wv * xrow[j * p.stride_w];
            }
          }
        }
      }
    }
  });
}

template <class T>
void backward_input_depthwise(const T* gy, const T* w, T* gx, const ConvGeom& g) {
  const Conv2dParams& p = g.p;
  // One input plane per task: all Og output channels of its group scatter into it.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(g.Og * g.kh * g.kw * g.P, 1));
  parallel_for(0, g.N * g.C, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n = b / g.C, c = b % g.C;
      T* gxp = gx + b * g.H * g.W;
      std::fill(gxp, gxp + g.H * g.W, T(0));
      for (int64_t m = 0; m < g.Og; ++m) {
        const int64_t o = c * g.Og + m;
        const T* gyp = gy + (n * g.O + o) * g.P;
        const T* wp = w + o * g.kh * g.kw;
        for (int64_t i = 0; i < g.Ho; ++i) {
          const T* gyrow = gyp + i * g.Wo;
          for (int64_t ki = 0; ki < g.kh; ++ki) {
            const int64_t ih = i * p.stride_h - p.pad_h + ki * p.dilation_h;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kj = 0; kj < g.kw; ++kj) {
              const int64_t off = kj * p.dilation_w - p.pad_w;
              int64_t lo, hi;
              valid_range(g.Wo, p.stride_w, off, g.W, lo, hi);
              const T wv = wp[ki * g.kw + kj];
              T* gxrow = gxp + ih * g.W + off;
              if (p.stride_w == 1) {
                for (int64_t j = lo; j < hi; ++j) gxrow[j] += wv * gyrow[j];
              } else {
                for (int64_t j = lo; j < hi; ++j) gxrow[j * p.stride_w] += wv * gyrow[j];
              }
            }
          }
        }
      }
    }
  });
}

template <class T>
void backward_weight_depthwise(const T* x, const T* gy, T* gw, const ConvGeom& g) {
  const Conv2dParams& p = g.p;
  const int64_t kk = g.kh * g.kw;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(g.N * kk * g.P, 1));
  parallel_for(0, g.O, grain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      T* gwp = gw + o * kk;
      std::fill(gwp, gwp + kk, T(0));
      for (int64_t n = 0; n < g.N; ++n) {
        const T* xp = x + (n * g.C + o / g.Og) * g.H * g.W;
        const T* gyp = gy + (n * g.O + o) * g.P;
        for (int64_t i = 0; i < g.Ho; ++i) {
          const T* gyrow = gyp + i * g.Wo;
          for (int64_t ki = 0; ki < g.kh; ++ki) {
            const int64_t ih = i * p.stride_h - p.pad_h + ki * p.dilation_h;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kj = 0; kj < g.kw; ++kj) {
              const int64_t off = kj * p.dilation_w - p.pad_w;
              int64_t lo, hi;
              valid_range(g.Wo, p.stride_w, off, g.W, lo, hi);
              const T* xrow = xp + ih * g.W + off;
              T s = 0;
              if (p.stride_w == 1) {
                for (int64_t j = lo; j < hi; ++j) s += gyrow[j] * xrow[j];
              } else {
                for (int64_t j = lo; j < hi; ++j) s += gyrow[j] * xrow[j * p.stride_w];
              }
              gwp[ki * g.kw + kj] += s;
            }
          }
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Conv2dParams& p, const Tensor& out) {
  const ConvGeom g = geometry(x.shape(), w.shape(), out.shape(), p);
  if (out.numel() == 0) return;
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* wp = static_cast<const T*>(w.raw_data());
    T* yp = static_cast<T*>(out.raw_data());
    if (g.K == 0) return std::fill(yp, yp + out.numel(), T(0));
    if (g.depthwise()) return forward_depthwise(xp, wp, yp, g);
    forward_gemm(xp, wp, yp, g);
  });
}

void CpuBackend::conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p,
                                       const Tensor& gx) {
  const ConvGeom g = geometry(gx.shape(), w.shape(), gy.shape(), p);
  if (gx.numel() == 0) return;
  dispatch_float(gy.dtype(), "conv2d_backward_input", [&](auto tag) {
    using T = decltype(tag);
    const T* gyp = static_cast<const T*>(gy.raw_data());
    const T* wp = static_cast<const T*>(w.raw_data());
    T* gxp = static_cast<T*>(gx.raw_data());
    if (g.O == 0 || g.P == 0) return std::fill(gxp, gxp + gx.numel(), T(0));
    if (g.depthwise()) return backward_input_depthwise(gyp, wp, gxp, g);
    backward_input_gemm(gyp, wp, gxp, g);
  });
}

void CpuBackend::conv2d_backward_weight(const Tensor& x, const Tensor& gy, const Conv2dParams& p,
                                        const Tensor& gw) {
  const ConvGeom g = geometry(x.shape(), gw.shape(), gy.shape(), p);
  if (gw.numel() == 0) return;
  dispatch_float(x.dtype(), "conv2d_backward_weight", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* gyp = static_cast<const T*>(gy.raw_data());
    T* gwp = static_cast<T*>(gw.raw_data());
    if (g.N == 0 || g.P == 0) return std::fill(gwp, gwp + gw.numel(), T(0));
    if (g.depthwise()) return backward_weight_depthwise(xp, gyp, gwp, g);
    backward_weight_gemm(xp, gyp, gwp, g);
  });
}

}  // namespace orbit::cpu

// Reductions (sum, max, min over any set of dims), arg-max/min along one dim, and softmax /
// log-softmax with their gradient, for the CUDA backend. The results are those of the CPU backend
// (engine/cpu/cpu_backend.cpp); the kernels follow the rules of common.h (one work item per index,
// no shared memory, reductions in passes through scratch memory).
//
// reduce
//   The dims of x split into kept dims (those of out) and reduced dims. Output m (row-major over the
//   kept dims) combines the R elements of its reduced block, numbered r = 0 .. R-1 row-major over the
//   reduced dims taken from the largest stride to the smallest (so that neighbouring r are neighbours
//   in memory when x is transposed; contiguous dims then merge into one and the offset of r is one
//   multiplication).
//   - Many outputs (or short blocks): one work item per output walks its whole block.
//   - Few outputs with long blocks (1 x 100000, say), where that would leave most of a GPU idle:
//     two passes. Pass 1 has P lanes per output; lane p of output m combines elements p, p + P,
//     p + 2P, ... of m's block into scratch[m, p]. Pass 2 has one work item per output that combines
//     its P partial results in the order p = 0, 1, ..., P-1. The grouping and order depend only on
//     the shapes, so the result is deterministic (bit-identical from run to run), but the summation
//     order is not the CPU's: float sums agree with it to rounding, not bit for bit.
//     The work items are numbered so that neighbouring items (threads of a warp) read neighbouring
//     memory: lane-major (item = p * M + m) when the kept dims hold x's smallest stride (reducing
//     dim 0 of [N, C], neighbouring m are neighbours in memory), output-major (item = m * P + p)
//     otherwise (neighbouring lanes read neighbouring r).
//   Accumulation as on the CPU: float32 and float64 sums in double, int64 sums in int64. Max / min
//   give NaN if any element is NaN (a float32/64 quiet NaN, as the CPU). An empty reduced block gives
//   0 for Sum and NaN (0 for int64) for Max / Min.
//   Known limits: with very long blocks and a single output the second pass is one work item reading
//   up to kMaxLanes partials (a third pass would lift that); the sign of a zero maximum (+0 vs -0
//   tied) may differ from the CPU's first-occurrence pick in the two-pass path.
//
// arg_reduce, softmax, softmax_backward
//   x is contiguous and viewed as [outer, n, inner] around dim. One work item per row (o, i) loops
//   over the n elements of the row: rows along a dim are usually short (class logits, a few channels),
//   and with inner > 1 neighbouring items read neighbouring memory. A long row with few rows would
//   want the two-pass scheme of reduce; that is not done here.
#pragma once

#include <algorithm>
#include <numeric>

#include "engine/cuda/kernels/common.h"

namespace orbit::cuda::kernels {

// ---------------------------------------------------------------------------- reduce
template <class T> struct SumAccum { using type = double; };       // float32 / float64 sums in double
template <> struct SumAccum<int64_t> { using type = int64_t; };    // int64 sums exact

// How the elements of one block are combined: first(v) starts from one element, step(a, v) adds the
// next, combine(a, b) joins two partial results (b's elements come after a's), finish(a) is the output.
template <class T, ReduceOp OP>
struct Fold {
  using Acc = std::conditional_t<OP == ReduceOp::Sum, typename SumAccum<T>::type, T>;

  static ORBIT_HD Acc nan_or_zero() {
    if constexpr (std::is_floating_point<T>::value) return k_nan<T>();
    return Acc(0);
  }
  static ORBIT_HD Acc first(T v) {
    if constexpr (OP == ReduceOp::Sum) return Acc(0) + static_cast<Acc>(v);  // 0 + v, as the CPU (-0 -> +0)
    else return k_isnan(v) ? nan_or_zero() : v;
  }
  static ORBIT_HD Acc combine(Acc a, Acc b) {
    if constexpr (OP == ReduceOp::Sum) {
      return a + b;
    } else {
      if (k_isnan(a) || k_isnan(b)) return nan_or_zero();  // NaN propagates (never taken for int64)
      return (OP == ReduceOp::Max ? b > a : b < a) ? b : a;  // ties keep the earlier element
    }
  }
  static ORBIT_HD Acc step(Acc a, T v) { return combine(a, first(v)); }
  static ORBIT_HD T finish(Acc a) { return static_cast<T>(a); }
};

// Offset in x of element r of a reduced block (the fast case: one merged reduced dim).
ORBIT_HD inline int64_t block_offset(const Indexer<1>& red, int64_t r) {
  if (red.ndim == 1) return r * red.strides[0][0];
  int64_t o[1];
  red.offsets(r, o);
  return o[0];
}

// Combines elements start, start + step, ... (< count) of the block at base; start < count.
template <class T, ReduceOp OP>
ORBIT_HD inline typename Fold<T, OP>::Acc fold_block(const T* base, const Indexer<1>& red, int64_t start,
                                                      int64_t count, int64_t step) {
  using F = Fold<T, OP>;
  typename F::Acc a = F::first(base[block_offset(red, start)]);
  for (int64_t r = start + step; r < count; r += step) a = F::step(a, base[block_offset(red, r)]);
  return a;
}

// One pass: work item m reduces the whole block of output m.
template <class T, ReduceOp OP>
struct ReduceKernel {
  Indexer<2> kept;  // over the kept dims; operand 0: out, 1: x
  Indexer<1> red;   // over the reduced dims, strides of x
  int64_t count;    // R, the elements per block (> 0)
  const T* x;
  T* out;
  ORBIT_HD void operator()(int64_t m) const {
    int64_t o[2];
    kept.offsets(m, o);
    out[o[0]] = Fold<T, OP>::finish(fold_block<T, OP>(x + o[1], red, 0, count, 1));
  }
};

// Where the partial result of (output m, lane p) lives, and which work item computes it.
struct LaneLayout {
  int64_t outputs, lanes;  // M, P
  bool lane_major;
  ORBIT_HD int64_t item(int64_t m, int64_t p) const { return lane_major ? p * outputs + m : m * lanes + p; }
  ORBIT_HD int64_t output_of(int64_t i) const { return lane_major ? i % outputs : i / lanes; }
  ORBIT_HD int64_t lane_of(int64_t i) const { return lane_major ? i / outputs : i % lanes; }
};

// Pass 1: work item i = (m, p) combines elements p, p + P, ... of block m into part[i].
template <class T, ReduceOp OP>
struct ReducePartialKernel {
  Indexer<2> kept;
  Indexer<1> red;
  int64_t count;
  LaneLayout layout;
  const T* x;
  typename Fold<T, OP>::Acc* part;
  ORBIT_HD void operator()(int64_t i) const {
    int64_t o[2];
    kept.offsets(layout.output_of(i), o);
    part[i] = fold_block<T, OP>(x + o[1], red, layout.lane_of(i), count, layout.lanes);
  }
};

// Pass 2: work item m combines its P partial results in lane order.
template <class T, ReduceOp OP>
struct ReduceCombineKernel {
  Indexer<2> kept;
  LaneLayout layout;
  const typename Fold<T, OP>::Acc* part;
  T* out;
  ORBIT_HD void operator()(int64_t m) const {
    using F = Fold<T, OP>;
    typename F::Acc a = part[layout.item(m, 0)];
    for (int64_t p = 1; p < layout.lanes; ++p) a = F::combine(a, part[layout.item(m, p)]);
    int64_t o[2];
    kept.offsets(m, o);
    out[o[0]] = F::finish(a);
  }
};

// An empty block: 0 for Sum, NaN (0 for int64) for Max / Min.
template <class T>
struct EmptyReduceKernel {
  Indexer<2> kept;
  T* out;
  T value;
  ORBIT_HD void operator()(int64_t m) const {
    int64_t o[2];
    kept.offsets(m, o);
    out[o[0]] = value;
  }
};

// The two-pass path is taken when it gives at least 2 lanes of at least kMinPerLane elements each;
// lanes are limited so that there are about kTargetItems work items in pass 1 (enough to fill a GPU)
// and pass 2 stays short (at most kMaxLanes partials per output).
constexpr int64_t kMinPerLane = 32;
constexpr int64_t kTargetItems = int64_t(1) << 16;
constexpr int64_t kMaxLanes = 4096;

template <class T, ReduceOp OP, class Exec>
void reduce_typed(const Exec& ex, const Indexer<2>& kept, const Indexer<1>& red, int64_t M, int64_t R,
                  bool kept_inner, const Tensor& x, const Tensor& out) {
  const T* xp = ptr<const T>(x);
  T* op = ptr<T>(out);
  int64_t lanes = std::min({R / kMinPerLane, kTargetItems / M, kMaxLanes});
  if (lanes >= 64) lanes -= lanes % 32;  // whole warps per output in the output-major layout
  if (lanes < 2) {
    ex.launch(M, ReduceKernel<T, OP>{kept, red, R, xp, op});
    return;
  }
  using Acc = typename Fold<T, OP>::Acc;
  const LaneLayout layout{M, lanes, kept_inner};
  auto buf = ex.scratch(static_cast<size_t>(M * lanes) * sizeof(Acc));
  Acc* part = static_cast<Acc*>(buf.data());
  ex.launch(M * lanes, ReducePartialKernel<T, OP>{kept, red, R, layout, xp, part});
  ex.launch(M, ReduceCombineKernel<T, OP>{kept, layout, part, op});
}

template <class Exec>
void reduce(const Exec& ex, ReduceOp op, const Tensor& x, const std::vector<bool>& red, const Tensor& out) {
  ORBIT_ASSERT(static_cast<int64_t>(red.size()) == x.dim() && out.dim() == x.dim());
  // Kept dims in their order (that is out's row-major order); reduced dims by decreasing stride.
  Shape kshape, kout, kx;
  std::vector<std::pair<int64_t, int64_t>> rdims;  // (size, x stride)
  int64_t kept_min_stride = -1, red_min_stride = -1;
  auto note_min = [](int64_t& m, int64_t stride) {
    const int64_t s = stride < 0 ? -stride : stride;
    if (m < 0 || s < m) m = s;
  };
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t size = x.shape()[d], stride = x.strides()[d];
    if (red[d]) {
      rdims.emplace_back(size, stride);
      if (size > 1) note_min(red_min_stride, stride);
    } else {
      kshape.push_back(size);
      kout.push_back(out.strides()[d]);
      kx.push_back(stride);
      if (size > 1) note_min(kept_min_stride, stride);
    }
  }
  std::stable_sort(rdims.begin(), rdims.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  Shape rshape, rx;
  for (const auto& [size, stride] : rdims) {
    rshape.push_back(size);
    rx.push_back(stride);
  }
  const int64_t M = shape_numel(kshape), R = shape_numel(rshape);
  if (M == 0) return;
  const auto kept = make_indexer<2>(kshape, {kout, kx});
  const auto redg = make_indexer<1>(rshape, {rx});
  // Lane-major numbering when the kept dims hold x's smallest stride (see the top of the file).
  const bool kept_inner = kept_min_stride >= 0 && (red_min_stride < 0 || kept_min_stride < red_min_stride);

  dispatch_all(x.dtype(), "reduce", [&](auto tag) {
    using T = decltype(tag);
    if (R == 0) {
      T value = T(0);
      if constexpr (std::is_floating_point<T>::value)
        if (op != ReduceOp::Sum) value = k_nan<T>();
      ex.launch(M, EmptyReduceKernel<T>{kept, ptr<T>(out), value});
      return;
    }
    switch (op) {
      case ReduceOp::Sum: return reduce_typed<T, ReduceOp::Sum>(ex, kept, redg, M, R, kept_inner, x, out);
      case ReduceOp::Max: return reduce_typed<T, ReduceOp::Max>(ex, kept, redg, M, R, kept_inner, x, out);
      case ReduceOp::Min: return reduce_typed<T, ReduceOp::Min>(ex, kept, redg, M, R, kept_inner, x, out);
    }
  });
}

// ---------------------------------------------------------------------------- rows around a dim
// A contiguous tensor viewed as [outer, n, inner] around dim; row k = (k / inner, k % inner) starts at
// (k / inner) * n * inner + k % inner and has stride inner.
struct Rows {
  int64_t outer = 1, n = 1, inner = 1;
  ORBIT_HD int64_t start(int64_t k) const { return (k / inner) * n * inner + k % inner; }
};

inline Rows rows_around(const Shape& s, int64_t dim) {
  Rows g;
  for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
    if (d < dim) g.outer *= s[d];
    else if (d == dim) g.n = s[d];
    else g.inner *= s[d];
  }
  return g;
}

// ---------------------------------------------------------------------------- arg_reduce
// One work item per row: the first extreme, where a NaN is the extreme (its first occurrence).
template <class T>
struct ArgReduceKernel {
  Rows g;
  bool is_max;
  const T* x;
  T* values;
  int64_t* indices;
  ORBIT_HD void operator()(int64_t k) const {
    const T* p = x + g.start(k);
    T best = p[0];
    int64_t bi = 0;
    for (int64_t j = 1; j < g.n; ++j) {
      if (k_isnan(best)) break;
      const T v = p[j * g.inner];
      if (k_isnan(v) || (is_max ? v > best : v < best)) {
        best = v;
        bi = j;
      }
    }
    values[k] = best;
    indices[k] = bi;
  }
};

template <class Exec>
void arg_reduce(const Exec& ex, bool is_max, const Tensor& x, int64_t dim, const Tensor& values,
                const Tensor& indices) {
  ORBIT_ASSERT(x.is_contiguous() && values.is_contiguous() && indices.is_contiguous());
  const Rows g = rows_around(x.shape(), dim);
  if (g.outer * g.inner == 0) return;
  ORBIT_ASSERT(g.n > 0, "arg_reduce over an empty dim");
  dispatch_all(x.dtype(), "max/min", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(g.outer * g.inner, ArgReduceKernel<T>{g, is_max, ptr<const T>(x), ptr<T>(values), ptr<int64_t>(indices)});
  });
}

// ---------------------------------------------------------------------------- softmax
// One work item per row: m = max (a NaN does not become the max, as std::max(m, v) on the CPU; the
// row then is NaN anyway), s = sum exp(x - m) in double, then
//   softmax      y = exp(x - m) / s           (in double, rounded once)
//   log-softmax  y = (x - m) - log(s)         (not x - (m + log s), which loses log s's digits when |m| is large)
template <class T>
struct SoftmaxKernel {
  Rows g;
  bool log;
  const T* x;
  T* y;
  ORBIT_HD void operator()(int64_t k) const {
    const int64_t base = g.start(k);
    const T* p = x + base;
    T* q = y + base;
    T m = -k_inf<T>();
    for (int64_t j = 0; j < g.n; ++j) {
      const T v = p[j * g.inner];
      m = m < v ? v : m;
    }
    double s = 0;
    for (int64_t j = 0; j < g.n; ++j) s += k_exp(static_cast<double>(p[j * g.inner] - m));
    if (log) {
      const T log_s = static_cast<T>(k_log(s));
      for (int64_t j = 0; j < g.n; ++j) q[j * g.inner] = (p[j * g.inner] - m) - log_s;
    } else {
      const double inv = 1.0 / s;
      for (int64_t j = 0; j < g.n; ++j) q[j * g.inner] = static_cast<T>(k_exp(static_cast<double>(p[j * g.inner] - m)) * inv);
    }
  }
};

template <class Exec>
void softmax(const Exec& ex, const Tensor& x, int64_t dim, bool log, const Tensor& out) {
  ORBIT_ASSERT(x.is_contiguous() && out.is_contiguous());
  const Rows g = rows_around(x.shape(), dim);
  dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(g.outer * g.inner, SoftmaxKernel<T>{g, log, ptr<const T>(x), ptr<T>(out)});
  });
}

// One work item per row, sums in double:
//   y = log-softmax: gx = gy - exp(y) * sum(gy)
//   y = softmax:     gx = y * (gy - sum(gy * y))
template <class T>
struct SoftmaxBackwardKernel {
  Rows g;
  bool log;
  const T* y;
  const T* gy;
  T* gx;
  ORBIT_HD void operator()(int64_t k) const {
    const int64_t base = g.start(k);
    double s = 0;
    if (log) {
      for (int64_t j = 0; j < g.n; ++j) s += gy[base + j * g.inner];
      for (int64_t j = 0; j < g.n; ++j) {
        const int64_t t = base + j * g.inner;
        gx[t] = static_cast<T>(gy[t] - k_exp(static_cast<double>(y[t])) * s);
      }
    } else {
      for (int64_t j = 0; j < g.n; ++j) s += static_cast<double>(gy[base + j * g.inner]) * y[base + j * g.inner];
      for (int64_t j = 0; j < g.n; ++j) {
        const int64_t t = base + j * g.inner;
        gx[t] = static_cast<T>(y[t] * (gy[t] - s));
      }
    }
  }
};

template <class Exec>
void softmax_backward(const Exec& ex, const Tensor& y, const Tensor& gy, int64_t dim, bool log, const Tensor& gx) {
  ORBIT_ASSERT(y.is_contiguous() && gy.is_contiguous() && gx.is_contiguous());
  const Rows g = rows_around(y.shape(), dim);
  dispatch_float(y.dtype(), "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    ex.launch(g.outer * g.inner, SoftmaxBackwardKernel<T>{g, log, ptr<const T>(y), ptr<const T>(gy), ptr<T>(gx)});
  });
}

}  // namespace orbit::cuda::kernels

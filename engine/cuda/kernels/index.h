// Indexing kernels of the CUDA backend: gather / scatter_add (an int64 index tensor of the operand's
// rank) and index_select / index_add (a 1-D int64 index along one dim). Semantics as the CPU backend
// (engine/cpu/cpu_index.cpp); index values were range-checked by the ops, so nothing is checked here.
//
// The design, in plain words:
//   - All four are one of two kernels. A "read" kernel (GatherKernel) has one work item per output
//     element and writes it once: out[e] = x[base(e) + index(e) * x.stride(dim)]. A "write" kernel
//     (ScatterAddKernel) has one work item per source element and adds it into the output:
//     out[base(e) + index(e) * out.stride(dim)] += src[e].
//   - base(e) is the offset of element e's coordinates in the indexed operand with the `dim`
//     coordinate left out: an Indexer (common.h) over the iteration shape whose indexed operand has
//     stride 0 at dim. The index value then supplies the `dim` coordinate.
//   - gather / scatter_add read the index at e itself (the index has the iteration shape);
//     index_select / index_add read it at the `dim` coordinate of e only: the 1-D index is seen as an
//     operand with its stride at dim and stride 0 in every other dim. So index_select is a gather and
//     index_add a scatter-add, with a broadcast index.
//   - Several source elements may hit the same output element (repeated index values), so the write
//     kernel adds with atomic_add. On the GPU the order of those additions is then unspecified, and
//     float sums that collide are not bit-reproducible from run to run (the CPU adds in ascending
//     index order; the host executor here happens to add in that same order).
//   - Every operand may be strided (the ops pass contiguous ones; the CPU backend requires a
//     contiguous index and src, and these kernels do not need either).
#pragma once

#include "engine/cuda/kernels/common.h"

namespace orbit::cuda::kernels {

// out[o0] = x[o2 + index[o1] * x_dim_stride]; operands of the Indexer: 0 out, 1 index, 2 x (stride 0
// at dim).
template <class T>
struct GatherKernel {
  Indexer<3> g;
  const T* x;
  const int64_t* index;
  T* out;
  int64_t x_dim_stride;
  ORBIT_HD void operator()(int64_t i) const {
    int64_t o[3];
    g.offsets(i, o);
    out[o[0]] = x[o[2] + index[o[1]] * x_dim_stride];
  }
};

// out[o2 + index[o1] * out_dim_stride] += src[o0]; operands of the Indexer: 0 src, 1 index, 2 out
// (stride 0 at dim). Colliding additions are atomic (their order on the GPU is unspecified).
template <class T>
struct ScatterAddKernel {
  Indexer<3> g;
  const T* src;
  const int64_t* index;
  T* out;
  int64_t out_dim_stride;
  ORBIT_HD void operator()(int64_t i) const {
    int64_t o[3];
    g.offsets(i, o);
    atomic_add(out + o[2] + index[o[1]] * out_dim_stride, src[o[0]]);
  }
};

static_assert(std::is_trivially_copyable<GatherKernel<float>>::value, "kernels are passed by value");
static_assert(std::is_trivially_copyable<ScatterAddKernel<double>>::value, "kernels are passed by value");

namespace index_detail {

// The strides of `t` with the one at `dim` set to 0: the offset of everything but the dim coordinate.
inline Shape without_dim(const Tensor& t, int64_t dim) {
  Shape s = t.strides();
  s[static_cast<size_t>(dim)] = 0;
  return s;
}

// A 1-D index seen as an operand of rank `ndim`: its stride at dim, 0 elsewhere (a broadcast).
inline Shape index_along(const Tensor& index, int64_t ndim, int64_t dim) {
  ORBIT_ASSERT(index.dim() == 1);
  Shape s(static_cast<size_t>(ndim), 0);
  s[static_cast<size_t>(dim)] = index.strides()[0];
  return s;
}

template <class Exec>
void launch_gather(const Exec& ex, const Tensor& x, int64_t dim, const Tensor& index, const Shape& index_strides,
                   const Tensor& out, const char* what) {
  ORBIT_ASSERT(index.dtype() == DType::I64 && x.dtype() == out.dtype() && x.dim() == out.dim());
  if (out.numel() == 0) return;
  const auto g = make_indexer<3>(out.shape(), {out.strides(), index_strides, without_dim(x, dim)});
  const int64_t xs = x.strides()[static_cast<size_t>(dim)];
  dispatch_all(x.dtype(), what, [&](auto tag) {
    using T = decltype(tag);
    ex.launch(out.numel(), GatherKernel<T>{g, ptr<const T>(x), ptr<const int64_t>(index), ptr<T>(out), xs});
  });
}

template <class Exec>
void launch_scatter_add(const Exec& ex, const Tensor& src, int64_t dim, const Tensor& index,
                        const Shape& index_strides, const Tensor& out, const char* what) {
  ORBIT_ASSERT(index.dtype() == DType::I64 && src.dtype() == out.dtype() && src.dim() == out.dim());
  if (src.numel() == 0) return;
  const auto g = make_indexer<3>(src.shape(), {src.strides(), index_strides, without_dim(out, dim)});
  const int64_t os = out.strides()[static_cast<size_t>(dim)];
  dispatch_all(src.dtype(), what, [&](auto tag) {
    using T = decltype(tag);
    ex.launch(src.numel(), ScatterAddKernel<T>{g, ptr<const T>(src), ptr<const int64_t>(index), ptr<T>(out), os});
  });
}

}  // namespace index_detail

// out[i][j][k] = x[i][index[i][j][k]][k] (for dim = 1); index and out of the same shape, x at least as
// large in every dim but dim. One work item per output element.
template <class Exec>
void gather(const Exec& ex, const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(index.shape() == out.shape() && index.dim() == x.dim());
  index_detail::launch_gather(ex, x, dim, index, index.strides(), out, "gather");
}

// out[i][index[i][j][k]][k] += src[i][j][k] (for dim = 1); out is accumulated into. One work item per
// src element, added atomically.
template <class Exec>
void scatter_add(const Exec& ex, const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(index.shape() == src.shape() && index.dim() == out.dim());
  index_detail::launch_scatter_add(ex, src, dim, index, index.strides(), out, "scatter_add");
}

// out = x.index_select(dim, index): out has x's shape with index.numel() at dim. One work item per
// output element.
template <class Exec>
void index_select(const Exec& ex, const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(out.shape()[static_cast<size_t>(dim)] == index.numel());
  index_detail::launch_gather(ex, x, dim, index, index_detail::index_along(index, out.dim(), dim), out,
                              "index_select");
}

// out.index_add_(dim, index, src): src has out's shape with index.numel() at dim; out is accumulated
// into. One work item per src element, added atomically.
template <class Exec>
void index_add(const Exec& ex, const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(src.shape()[static_cast<size_t>(dim)] == index.numel());
  index_detail::launch_scatter_add(ex, src, dim, index, index_detail::index_along(index, src.dim(), dim), out,
                                   "index_add");
}

}  // namespace orbit::cuda::kernels

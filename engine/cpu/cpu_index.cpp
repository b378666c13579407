// CPU kernels for indexing: gather / scatter_add (an index tensor of the operand's rank) and
// index_select / index_add (a 1-D index along one dim).
//
// Index values were range-checked by the ops (engine/ops_index.cpp); the kernels assert nothing
// per element. Accumulating kernels parallelize only over positions that cannot collide, and add in
// ascending index order, so results are deterministic.
#include "engine/cpu/cpu_backend.h"

#include <vector>

#include "engine/parallel.h"

namespace orbit::cpu {

namespace {

// Sizes of a shape split around `dim`: [outer, shape[dim], inner] (row-major).
struct Split3 {
  int64_t outer = 1, mid = 1, inner = 1;
};
Split3 split_at(const Shape& shape, int64_t dim) {
  Split3 s;
  for (int64_t d = 0; d < dim; ++d) s.outer *= shape[d];
  s.mid = shape[dim];
  for (size_t d = dim + 1; d < shape.size(); ++d) s.inner *= shape[d];
  return s;
}

// For the index tensor of gather / scatter_add (contiguous, shape `ishape`), the offset into the
// strided operand `other_strides` of every position with the `dim` coordinate set to 0:
//   base[e] = sum_{d != dim} coord_d(e) * other_strides[d]
// The full operand offset of element e is then base[e] + index[e] * other_strides[dim].
std::vector<int64_t> operand_bases(const Shape& ishape, const Shape& other_strides, int64_t dim) {
  const int64_t n = shape_numel(ishape), nd = static_cast<int64_t>(ishape.size());
  std::vector<int64_t> base(n);
  std::vector<int64_t> coord(nd, 0);
  int64_t off = 0;
  for (int64_t e = 0; e < n; ++e) {
    base[e] = off;
    for (int64_t d = nd - 1; d >= 0; --d) {  // odometer increment of the multi-index
      const int64_t st = d == dim ? 0 : other_strides[d];
      ++coord[d];
      off += st;
      if (coord[d] < ishape[d]) break;
      off -= coord[d] * st;
      coord[d] = 0;
    }
  }
  return base;
}

}  // namespace

void CpuBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(index.shape() == out.shape() && index.dim() == x.dim() && index.is_contiguous());
  // out[e] = x[base(e) + index[e] * x.stride(dim)]; x may be strided (and larger than index).
  const std::vector<int64_t> base = operand_bases(index.shape(), x.strides(), dim);
  const int64_t xs = x.strides()[dim];
  const int64_t* idx = index.data<int64_t>();
  dispatch_all(x.dtype(), "gather", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    parallel_for(0, out.numel(), 32768, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) op[i] = xp[base[i] + idx[i] * xs];
    });
  });
}

void CpuBackend::scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(index.shape() == src.shape() && index.dim() == out.dim() && index.is_contiguous() &&
               src.is_contiguous());
  // out[base(e) + index[e] * out.stride(dim)] += src[e]. Two positions of the index can only hit
  // the same output element when they differ in the `dim` coordinate alone, so the work is split
  // over (outer, inner) columns and each column walks `dim` in order.
  const std::vector<int64_t> base = operand_bases(index.shape(), out.strides(), dim);
  const int64_t os = out.strides()[dim];
  const Split3 s = split_at(index.shape(), dim);
  const int64_t* idx = index.data<int64_t>();
  dispatch_all(src.dtype(), "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    const T* sp = static_cast<const T*>(src.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(s.mid, 1));
    parallel_for(0, s.outer * s.inner, grain, [&](int64_t b, int64_t e) {
      for (int64_t col = b; col < e; ++col) {
        const int64_t o = col / s.inner, in = col % s.inner;
        for (int64_t j = 0; j < s.mid; ++j) {
          const int64_t el = (o * s.mid + j) * s.inner + in;
          op[base[el] + idx[el] * os] += sp[el];
        }
      }
    });
  });
}

void CpuBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(x.is_contiguous() && out.is_contiguous() && index.dim() == 1);
  // Viewed as [outer, n, inner] -> [outer, L, inner]: row (o, l) of out is row (o, index[l]) of x.
  const Split3 xs = split_at(x.shape(), dim);
  const int64_t L = index.numel();
  const int64_t* idx = index.data<int64_t>();
  dispatch_all(x.dtype(), "index_select", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(xs.inner, 1));
    parallel_for(0, xs.outer * L, grain, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / L, l = r % L;
        const T* from = xp + (o * xs.mid + idx[l]) * xs.inner;
        T* to = op + r * xs.inner;
        for (int64_t i = 0; i < xs.inner; ++i) to[i] = from[i];
      }
    });
  });
}

void CpuBackend::index_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  ORBIT_ASSERT(src.is_contiguous() && out.is_contiguous() && index.dim() == 1);
  // Row (o, index[l]) of out [outer, n, inner] += row (o, l) of src [outer, L, inner]. Repeated
  // index values collide only within one (outer, inner) column, so the split is over those columns
  // (flattened o * inner + i, so that each chunk still reads contiguous runs of a row).
  const Split3 os = split_at(out.shape(), dim);
  const int64_t L = index.numel();
  const int64_t* idx = index.data<int64_t>();
  dispatch_all(src.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    const T* sp = static_cast<const T*>(src.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(L, 1));
    parallel_for(0, os.outer * os.inner, grain, [&](int64_t b, int64_t e) {
      int64_t col = b;
      while (col < e) {
        const int64_t o = col / os.inner, i0 = col % os.inner;
        const int64_t i1 = std::min(os.inner, i0 + (e - col));  // this chunk's part of row o
        for (int64_t l = 0; l < L; ++l) {
          const T* from = sp + (o * L + l) * os.inner;
          T* to = op + (o * os.mid + idx[l]) * os.inner;
          for (int64_t i = i0; i < i1; ++i) to[i] += from[i];
        }
        col += i1 - i0;
      }
    });
  });
}

}  // namespace orbit::cpu

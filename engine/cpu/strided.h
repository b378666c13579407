// Iteration over strided tensors for the CPU kernels.
//
// A loop over k operands of the same logical shape is first simplified: size-1 dims are dropped and
// neighbouring dims that are contiguous in every operand are merged, so that a contiguous tensor is
// one flat row. The kernel then receives rows: for each row, the element offset of every operand and
// the row length, with the per-operand inner strides fixed for the whole loop.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "engine/parallel.h"
#include "engine/tensor.h"

namespace orbit::cpu {

template <size_t K>
struct Geometry {
  Shape sizes;                      // outer ... inner; at least one dim
  std::array<Shape, K> strides;     // per operand, same length as sizes
  int64_t inner() const { return sizes.back(); }
  int64_t inner_stride(size_t k) const { return strides[k].back(); }
  int64_t rows() const {
    int64_t r = 1;
    for (size_t i = 0; i + 1 < sizes.size(); ++i) r *= sizes[i];
    return r;
  }
};

template <size_t K>
Geometry<K> coalesce(const Shape& shape, const std::array<Shape, K>& strides) {
  Geometry<K> g;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!g.sizes.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < K; ++k)
        if (g.strides[k].back() != strides[k][d] * shape[d]) mergeable = false;
      if (mergeable) {
        g.sizes.back() *= shape[d];
        for (size_t k = 0; k < K; ++k) g.strides[k].back() = strides[k][d];
        continue;
      }
    }
    g.sizes.push_back(shape[d]);
    for (size_t k = 0; k < K; ++k) g.strides[k].push_back(strides[k][d]);
  }
  if (g.sizes.empty()) {  // a single element
    g.sizes.push_back(1);
    for (size_t k = 0; k < K; ++k) g.strides[k].push_back(0);
  }
  return g;
}

// Calls row(offsets, length) for every row of the geometry, where offsets[k] is the element offset of
// operand k at the row start. Rows are distributed over threads when `parallel` and the work is big;
// then long rows (a contiguous tensor is a single row) are also cut into pieces of at least
// kRowPiece elements, each handed to `row` as a row of its own, so `row` must treat its elements
// independently (elementwise kernels, the kept dims of a reduction). Serial loops see whole rows.
constexpr int64_t kRowPiece = 16384;

template <size_t K, class F>
void for_each_row(const Geometry<K>& g, const F& row, bool parallel = true) {
  const int64_t rows = g.rows(), inner = g.inner();
  const int64_t ndim = static_cast<int64_t>(g.sizes.size());
  // Offsets of row r over the outer dims.
  auto row_start = [&](int64_t r, std::vector<int64_t>& idx) {
    std::array<int64_t, K> off{};
    for (int64_t d = ndim - 2; d >= 0; --d) {
      idx[d] = r % g.sizes[d];
      r /= g.sizes[d];
      for (size_t k = 0; k < K; ++k) off[k] += idx[d] * g.strides[k][d];
    }
    return off;
  };
  if (parallel && inner >= 2 * kRowPiece) {
    const int64_t pieces = inner / kRowPiece;
    parallel_for(0, rows * pieces, 1, [&](int64_t u0, int64_t u1) {
      std::vector<int64_t> idx(ndim, 0);
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r = u / pieces, p = u % pieces;
        const int64_t begin = inner * p / pieces, end = inner * (p + 1) / pieces;
        std::array<int64_t, K> off = row_start(r, idx);
        for (size_t k = 0; k < K; ++k) off[k] += begin * g.strides[k].back();
        row(off, end - begin);
      }
    });
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(inner, 1));
  auto run = [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(ndim, 0);
    std::array<int64_t, K> off = row_start(r0, idx);
    for (int64_t rr = r0; rr < r1; ++rr) {
      row(off, inner);
      for (int64_t d = ndim - 2; d >= 0; --d) {
        ++idx[d];
        for (size_t k = 0; k < K; ++k) off[k] += g.strides[k][d];
        if (idx[d] < g.sizes[d]) break;
        for (size_t k = 0; k < K; ++k) off[k] -= idx[d] * g.strides[k][d];
        idx[d] = 0;
      }
    }
  };
  if (parallel)
    parallel_for(0, rows, grain, run);
  else
    run(0, rows);
}

}  // namespace orbit::cpu

// Matrix products: matmul (torch.matmul semantics) and linear.
#include "engine/op_utils.h"

namespace orbit {

using namespace detail;

namespace {

// How a [batch, rows, cols] view is handed to GEMM: without copy when one of its two matrix dims is
// unit-stride (a transposed matrix is passed with the trans flag), else made contiguous first.
struct MatrixOperand {
  Tensor t;  // the tensor whose memory GEMM reads
  bool trans = false;
  int64_t ld = 0, batch_stride = 0;
};

MatrixOperand as_operand(const Tensor& x3) {
  const int64_t rows = x3.shape()[1], cols = x3.shape()[2];
  const int64_t sb = x3.strides()[0], sr = x3.strides()[1], sc = x3.strides()[2];
  // Row-major: element (r, c) at r * ld + c.
  const int64_t ld_rows = rows == 1 ? cols : sr;
  if ((sc == 1 || cols == 1) && ld_rows >= cols) return {x3, false, ld_rows, sb};
  // Column-major (a transposed row-major matrix): element (r, c) at c * ld + r.
  const int64_t ld_cols = cols == 1 ? rows : sc;
  if ((sr == 1 || rows == 1) && ld_cols >= rows) return {x3, true, ld_cols, sb};
  Tensor c = contiguous_data(x3);
  return {c, false, cols, rows * cols};
}

// C[b] = A[b] @ B[b] for a [Bt, M, K] and b [Bt, K, N] (batch stride 0 allowed), no autograd.
Tensor bmm_raw(const Tensor& a3, const Tensor& b3) {
  const int64_t batch = a3.shape()[0], M = a3.shape()[1], K = a3.shape()[2], N = b3.shape()[2];
  Tensor out = empty_like(a3, {batch, M, N});
  if (out.numel() == 0) return out;
  if (K == 0) {
    out.detach().fill_(0.0);
    return out;
  }
  const MatrixOperand A = as_operand(a3), B = as_operand(b3);
  GemmArgs args;
  args.trans_a = A.trans;
  args.trans_b = B.trans;
  args.batch = batch;
  args.M = M;
  args.N = N;
  args.K = K;
  args.A = A.t.raw_data();
  args.lda = A.ld;
  args.stride_a = batch == 1 ? 0 : A.batch_stride;
  args.B = B.t.raw_data();
  args.ldb = B.ld;
  args.stride_b = batch == 1 ? 0 : B.batch_stride;
  args.C = out.raw_data();
  args.ldc = N;
  args.stride_c = M * N;
  args.dtype = a3.dtype();
  backend_of(a3).gemm(args);
  return out;
}

// Collapses the batch dims of an expanded [..., R, C] view to one dim, copying only when they
// cannot be addressed with a single stride.
Tensor as_batched3(const Tensor& x, const Shape& batch) {
  const int64_t R = x.shape()[x.dim() - 2], C = x.shape()[x.dim() - 1];
  Shape full = batch;
  full.push_back(R);
  full.push_back(C);
  Tensor e = x.detach().expand(full);
  return e.reshape({shape_numel(batch), R, C});
}

// The batched product of two tensors of rank >= 2 with broadcast batch dims (recorded).
Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  const int64_t M = a.shape()[a.dim() - 2], K = a.shape()[a.dim() - 1];
  const int64_t K2 = b.shape()[b.dim() - 2], N = b.shape()[b.dim() - 1];
  ORBIT_CHECK(K == K2, "matmul: inner dimensions differ: ", shape_str(a.shape()), " @ ",
              shape_str(b.shape()), " (", K, " vs ", K2, ")");
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb, "matmul (batch dims)");
  Tensor out3 = bmm_raw(as_batched3(a, batch), as_batched3(b, batch));
  Shape oshape = batch;
  oshape.push_back(M);
  oshape.push_back(N);
  Tensor out = out3.view(oshape);
  SavedTensor sa(a, "matmul"), sb(b, "matmul");
  record("matmul", out, {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
    const Tensor a = sa.get(), b = sb.get();
    const Tensor ga = matmul_nd(g, b.transpose(-1, -2));
    const Tensor gb = matmul_nd(a.transpose(-1, -2), g);
    return {sum_to(ga, a.shape()), sum_to(gb, b.shape())};
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_same(a, b, "matmul");
  check_floating(a, "matmul");
  ORBIT_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least one dim, got ",
              shape_str(a.shape()), " and ", shape_str(b.shape()));
  if (a.dim() == 1 && b.dim() == 1) {
    ORBIT_CHECK(a.shape()[0] == b.shape()[0], "matmul: vectors of different lengths ",
                shape_str(a.shape()), " and ", shape_str(b.shape()));
    return matmul_nd(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  }
  if (a.dim() == 1) return matmul_nd(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul_nd(a, b.unsqueeze(1)).squeeze(-1);
  return matmul_nd(a, b);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  check_same(x, w, "linear");
  ORBIT_CHECK(w.dim() == 2, "linear: weight must be 2-D [out_features, in_features], got ",
              shape_str(w.shape()));
  ORBIT_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ", shape_str(x.shape()),
              " does not end in in_features = ", w.size(1), " (weight ", shape_str(w.shape()), ")");
  Tensor y = matmul(x, w.t());
  if (b.defined()) {
    check_same(x, b, "linear");
    ORBIT_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear: bias must be [", w.size(0),
                "], got ", shape_str(b.shape()));
    y = add(y, b);
  }
  return y;
}

}  // namespace orbit

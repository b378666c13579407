// GEMM and batched GEMM on the GPU through cuBLAS, and the backend's TF32 switch.
//
// Row-major through a column-major library. The engine's matrices are row-major (GemmArgs,
// engine/backend.h); cuBLAS is column-major. A row-major M x N matrix with row stride ld occupies
// exactly the same memory as its transpose, an N x M column-major matrix with leading dimension ld.
// So instead of C = op(A) op(B) we ask cuBLAS for C^T = op(B)^T op(A)^T: the operands are swapped
// (cuBLAS's "A" is our B and its "B" is our A), M and N are swapped, the transpose flags stay with
// their operand, and lda/ldb/ldc (our row strides) are passed unchanged as cuBLAS's leading
// dimensions. No data is moved or transposed. Batches go through cublas{S,D}gemmStridedBatched,
// whose batch strides may be 0 for A and B (a broadcast operand); outputs of different batches must
// not overlap (a stride_c of 0 would have every batch write the same C concurrently), which is
// refused with an error.
//
// Precision. cuBLAS runs in CUBLAS_DEFAULT_MATH: float32 products are computed in full float32
// (tensor cores only where they keep float32 precision), so results are comparable with the CPU
// backend. set_allow_tf32(true) (or ORBIT_CUDA_TF32=1) switches float32 to CUBLAS_TF32_TENSOR_OP_MATH,
// faster on Ampere and newer but with ~1e-3 relative error. float64 is unaffected either way.
//
// The cuBLAS handle is created on the first GEMM, bound to the backend's stream (launch.cuh), and
// kept for the life of the process (like the stream; destroying it at exit could run after the CUDA
// runtime is torn down). Calls are serialized by a mutex, since the handle's stream and math mode are
// shared state; cuBLAS calls only enqueue work, so the lock is held briefly.
#include <algorithm>
#include <cctype>
#include <climits>
#include <mutex>
#include <string>
#include <type_traits>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/libraries.h"

namespace orbit::cuda {

// ---------------------------------------------------------------------------- TF32 switch

namespace {

EnvSetting g_tf32("ORBIT_CUDA_TF32");  // 0: off, 1: on

bool tf32_from_environment(const char* v) {
  if (!v) return false;
  std::string s(v);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s == "1" || s == "true" || s == "on" || s == "yes";
}

}  // namespace

void set_allow_tf32(bool on) { g_tf32.set(on ? 1 : 0); }

bool allow_tf32() {
  return g_tf32.get([](const char* v) { return tf32_from_environment(v) ? 1 : 0; }) == 1;
}

// ---------------------------------------------------------------------------- GEMM

namespace {

struct CublasState {
  std::mutex mutex;
  cublasHandle_t handle = nullptr;
  cudaStream_t bound_stream = nullptr;
  bool stream_set = false;
  int math = -1;  // the cublasMath_t last set on the handle
};

CublasState& cublas_state() {
  static CublasState* s = new CublasState();  // never destroyed (see the top of the file)
  return *s;
}

// The handle, created if needed, bound to the backend's stream and set to `math`. Caller holds the mutex.
cublasHandle_t ready_handle(CublasState& s, cublasMath_t math) {
  if (!s.handle) {
    cublasHandle_t h = nullptr;
    ORBIT_CUBLAS_CHECK(cublasCreate(&h));
    s.handle = h;
    s.stream_set = false;
    s.math = -1;
  }
  const cudaStream_t st = stream();
  if (!s.stream_set || s.bound_stream != st) {
    ORBIT_CUBLAS_CHECK(cublasSetStream(s.handle, st));
    s.bound_stream = st;
    s.stream_set = true;
  }
  if (s.math != static_cast<int>(math)) {
    ORBIT_CUBLAS_CHECK(cublasSetMathMode(s.handle, math));
    s.math = static_cast<int>(math);
  }
  return s.handle;
}

int to_int(const char* what, int64_t v) {
  ORBIT_CHECK(v >= 0 && v <= INT_MAX, "cuda gemm: ", what, " = ", v, " is outside the range cuBLAS accepts [0, ",
              INT_MAX, "]");
  return static_cast<int>(v);
}

// The leading dimension cuBLAS gets for a stored row-major rows x cols matrix with row stride ld: cuBLAS
// requires ld >= max(1, cols). When the row stride is never used (one row, or no columns) any value is
// fine for us, so it is raised to the minimum; otherwise a smaller one is an error, as on the CPU.
int64_t leading_dim(const char* what, int64_t ld, int64_t rows, int64_t cols) {
  const int64_t need = std::max<int64_t>(1, cols);
  if (ld >= need) return ld;
  ORBIT_CHECK(rows <= 1 || cols == 0, "cuda gemm: ", what, " = ", ld, " is smaller than the ", cols,
              " columns of the stored ", rows, " x ", cols, " row-major matrix (expected >= ", need, ")");
  return need;
}

// C_b = beta * C_b for K == 0 (an empty product), with BLAS's rule that beta == 0 writes zeros
// without reading C. One work item per element of the batch of M x N outputs.
template <class T>
struct ScaleOutputs {
  T* C;
  int64_t M, N, ldc, stride_c;
  T beta;
  ORBIT_HD void operator()(int64_t i) const {
    const int64_t per = M * N;
    const int64_t b = i / per, r = (i - b * per) / N, c = i - b * per - r * N;
    T& x = C[b * stride_c + r * ldc + c];
    x = beta == T(0) ? T(0) : beta * x;
  }
};

template <class T>
void gemm_typed(const GemmArgs& a) {
  ORBIT_CHECK(a.batch >= 0 && a.M >= 0 && a.N >= 0 && a.K >= 0, "cuda gemm: negative size (batch ", a.batch,
              ", M ", a.M, ", N ", a.N, ", K ", a.K, ")");
  if (a.batch == 0 || a.M == 0 || a.N == 0) return;

  // Row strides of the stored row-major matrices: A is M x K (K x M when trans_a), B is K x N (N x K
  // when trans_b), C is M x N.
  const int64_t lda = leading_dim("lda", a.lda, a.trans_a ? a.K : a.M, a.trans_a ? a.M : a.K);
  const int64_t ldb = leading_dim("ldb", a.ldb, a.trans_b ? a.N : a.K, a.trans_b ? a.K : a.N);
  const int64_t ldc = leading_dim("ldc", a.ldc, a.M, a.N);
  if (a.batch > 1) {
    const int64_t extent = (a.M - 1) * ldc + a.N;  // elements one output C_b spans
    ORBIT_CHECK(a.stride_c >= extent, "cuda gemm: the ", a.batch, " outputs overlap (stride_c = ", a.stride_c,
                ", one ", a.M, " x ", a.N, " output with ldc = ", ldc, " spans ", extent,
                " elements); batches would write the same memory concurrently");
  }
  ORBIT_CHECK(a.C != nullptr, "cuda gemm: C is null");

  if (a.K == 0) {  // no products to sum: C = beta * C (cuBLAS is not asked about an empty inner dim)
    GpuExec{}.launch(a.batch * a.M * a.N, ScaleOutputs<T>{static_cast<T*>(a.C), a.M, a.N, ldc,
                                                          a.batch > 1 ? a.stride_c : 0, static_cast<T>(a.beta)});
    return;
  }
  ORBIT_CHECK(a.A != nullptr && a.B != nullptr, "cuda gemm: A or B is null");

  // cuBLAS (column-major) computes C^T [N x M] = op(B)^T [N x K] * op(A)^T [K x M].
  const cublasOperation_t op_first = a.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;   // applied to our B
  const cublasOperation_t op_second = a.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // applied to our A
  const int m = to_int("N", a.N), n = to_int("M", a.M), k = to_int("K", a.K);
  const int ld_first = to_int("ldb", ldb), ld_second = to_int("lda", lda), ld_out = to_int("ldc", ldc);
  const T alpha = static_cast<T>(a.alpha), beta = static_cast<T>(a.beta);

  const cublasMath_t math =
      std::is_same_v<T, float> && allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
  CublasState& s = cublas_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  const cublasHandle_t h = ready_handle(s, math);

  // batchCount is an int: more batches than that go in chunks.
  for (int64_t b0 = 0; b0 < a.batch; b0 += INT_MAX) {
    const int count = static_cast<int>(std::min<int64_t>(a.batch - b0, INT_MAX));
    const T* A = static_cast<const T*>(a.A) + b0 * a.stride_a;
    const T* B = static_cast<const T*>(a.B) + b0 * a.stride_b;
    T* C = static_cast<T*>(a.C) + b0 * a.stride_c;
    const long long sa = a.stride_a, sb = a.stride_b, sc = count > 1 ? a.stride_c : 0;
    if constexpr (std::is_same_v<T, float>) {
      ORBIT_CUBLAS_CHECK(cublasSgemmStridedBatched(h, op_first, op_second, m, n, k, &alpha, B, ld_first, sb, A,
                                                   ld_second, sa, &beta, C, ld_out, sc, count));
    } else {
      ORBIT_CUBLAS_CHECK(cublasDgemmStridedBatched(h, op_first, op_second, m, n, k, &alpha, B, ld_first, sb, A,
                                                   ld_second, sa, &beta, C, ld_out, sc, count));
    }
  }
}

}  // namespace

void CudaBackend::gemm(const GemmArgs& a) {
  switch (a.dtype) {
    case DType::F32: gemm_typed<float>(a); break;
    case DType::F64: gemm_typed<double>(a); break;
    default:
      throw Error(str_cat("cuda gemm: dtype ", dtype_name(a.dtype), " is not supported (float32 or float64)"));
  }
}

}  // namespace orbit::cuda

// Orbit CPU GEMM: single- and double-precision matrix multiply on row-major matrices.
//
//   C = alpha * op(A) * op(B) + beta * C,   op(A) is M x K, op(B) is K x N, C is M x N.
//
// All matrices are row-major. lda/ldb/ldc are row strides (leading dimensions) in elements of
// the matrices as they are stored: A is stored M x K (lda >= K) when !trans_a and K x M
// (lda >= M) when trans_a; B is stored K x N (ldb >= N) when !trans_b and N x K (ldb >= K)
// when trans_b; C is M x N (ldc >= N).
//
// beta == 0 means C is written without being read (NaN or Inf in C does not propagate).
// M, N or K may be 0; with K == 0 (or alpha == 0) the result is C = beta * C.
// Invalid arguments (negative sizes, leading dimensions smaller than required) throw
// std::invalid_argument naming the function, the argument, the value received and the
// value expected. Null pointers are rejected only for operands that would be read or written.
//
// Threads: sgemm/dgemm use up to omp_get_max_threads() OpenMP threads, and run single-threaded
// when called inside an active OpenMP parallel region. Work is split statically and each
// element of C is always accumulated in the same order, so results are bit-for-bit
// reproducible for the same inputs (independently of the thread count, in fact).
#pragma once

#include <cstdint>

namespace orbit::cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Same contract in double precision. A clear cache-blocked implementation (used for float64
// gradient checks, not tuned for speed).
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
           const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// Which micro-kernel sgemm uses on this CPU: "avx512", "avx2" or "generic".
const char* sgemm_kernel_name();

namespace detail {
// Testing hooks: run sgemm with a named micro-kernel ("avx512", "avx2" or "generic") so that
// every kernel this CPU supports can be checked, not only the one sgemm picks.
bool sgemm_kernel_supported(const char* kernel);
void sgemm_with_kernel(const char* kernel, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
}  // namespace detail

// The plain triple-loop reference that the fast paths are tested against. No argument
// checking; same storage conventions and the same beta == 0 rule as sgemm.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                    const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      T sum = T(0);
      for (int64_t k = 0; k < K; ++k) {
        const T a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
      }
      T& c = C[i * ldc + j];
      c = (beta == T(0)) ? alpha * sum : alpha * sum + beta * c;
    }
  }
}

}  // namespace orbit::cpu

// Orbit CPU GEMM (see gemm.h for the contract).
//
// ============================================================================================
// Blocking scheme (BLIS / GotoBLAS style)
// ============================================================================================
//
// C (M x N) is computed as a sum over K slices of products of packed panels. For one thread's
// rectangle of C (see "Threading" below):
//
//   for jc step NC                               -- column block of C and B
//     for pc in [0, K) step KC                   -- K slice
//       pack B[pc:pc+KC, jc:jc+NC] into Bp       -- KC x NC, 2-8 MiB: lives in L2/L3
//       for ic step MC                           -- row block of C and A
//         pack A[ic:ic+MC, pc:pc+KC] into Ap     -- MC x KC = 384 KiB: lives in L2
//         for jr step NR                         -- one micro-panel of Bp (KC x NR, 32 KiB)
//           for ir step MR                       -- one micro-panel of Ap (MR x KC)
//             micro-kernel: C[MR x NR] (+)= alpha * Ap_panel * Bp_panel
//
// Packed layouts. Ap is a sequence of micro-panels of MR rows; inside one, element (i, k) is at
// k * MR + i, so the kernel finds the MR values of A for one k side by side. Bp is a sequence
// of micro-panels of NR columns; inside one, element (k, j) is at k * NR + j, so the kernel
// loads NR values of B (one vector register) per k. Panels are zero-padded up to MR / NR: the
// micro-kernel always computes a full tile and only its stores are clipped to the valid part
// of C. Transposition of A or B is absorbed entirely by the packing routines.
//
// Reading in place instead of packing. When a thread's rows fit in one MC block, each element
// of B is used by a few micro-tiles in a row only, and packing it would be a separate,
// memory-bound pass over B (20% of the time for conv-like 64 x 3136 x 576). If B is not
// transposed its micro-panels are then read where they are (NR contiguous values per k, rows
// ldb apart): the kernel's loads overlap with its FMAs. Likewise, when a thread's columns are
// only a few micro-panels wide and A is transposed, A's micro-panels are read in place. Edge
// panels (fewer than MR rows / NR columns) are always packed, with zero padding.
//
// The micro-kernel keeps the MR x NR tile of C in registers for a whole K slice: per k it loads
// one vector of B per 16 (or 8) columns, broadcasts MR values of A and issues the FMAs. alpha
// is applied when the tile is stored; beta only for the first K slice (later slices accumulate
// with beta = 1). beta == 0 never reads C.
//
// Micro-kernels (chosen once at run time with __builtin_cpu_supports; the library is not
// compiled with -march=native, so each kernel carries its own target attribute):
//   avx512   MR = 16, NR = 16: 16 zmm accumulators, 1 B vector, A broadcast straight from
//            memory into each FMA ({1to16} operand). Tiles with at most 8 valid columns use a
//            16 x 8 ymm variant (half the work on Zen 4, where a zmm FMA takes both 256-bit
//            FMA pipes), e.g. the last column of N = 49.
//   avx2     MR = 6,  NR = 16: 12 ymm accumulators + 2 B vectors + 1 broadcast (15 of 16 ymm).
//   generic  MR = 4,  NR = 16: plain C++, auto-vectorised for whatever the build targets.
// Measured on the 2-core Zen 4 (one thread, CPU time, GFLOP/s for square n = 256..2048; oneDNN
// 109-114): 16x16 zmm 105-112, 6x16 ymm 98-108, 14x32 zmm 100-106, and 8x32 / 6x64 / 12x32 zmm
// within the same few percent. Zen 4 executes 512-bit FMAs as two 256-bit halves, so all reach
// about the same peak; 16x16 was kept because it was as fast or faster on the square and the
// conv-like shapes, wastes nothing when M and N are multiples of 16 (channel counts), and
// needs only 16-wide packing (one AVX-512 16 x 16 transpose serves both A and B).
//
// Block sizes for the AVX-512 kernel, from sweeps of KC in {256, 384, 512, 640, 768}, MC in
// {96 .. 384}, NC in {1536, 3072, 4096} (differences within ~3%): KC = 512, MC = 192,
// NC = 4096. Blocks are evened out (K = 576 gives two slices of 288, not 512 + 64).
//
// Threading (OpenMP, static, deterministic). Threads form a tm x tn grid chosen per call to
// minimise the busiest thread's padded tile work plus packing: square problems split rows,
// short wide ones (conv: M = Cout small, N = H*W large) split columns. Each thread computes its
// own rectangle of C (whole micro-tiles) from start to finish with its own packing buffers, so
// there is no barrier inside a call; the price is that threads sharing rows (or columns) pack
// the same part of A (or B), which is cheap next to the arithmetic for the shapes that get
// that split. (A first version shared one packed B between threads, with two barriers per
// K slice; on a busy 2-core machine each barrier could wait for an OS time slice, and it fell
// far behind oneDNN there.) Packing buffers are thread_local and grow to at most
// (MC + NC) * KC floats, about 8.4 MB per thread. Every C element is accumulated by one thread, over the same K slices in the same
// order, so results do not depend on the thread count and are bit-for-bit reproducible.
// Problems under 64^3 multiply-adds run on the calling thread.
//
// dgemm uses the same driver and packing with a plain C++ 4 x 8 micro-kernel.
// ============================================================================================

#include "engine/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ORBIT_GEMM_X86 1
#else
#define ORBIT_GEMM_X86 0
#endif

namespace orbit::cpu {
namespace {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// --------------------------------------------------------------------------------------------
// Argument checking
// --------------------------------------------------------------------------------------------

[[noreturn]] void throw_bad_arg(const char* fn, const char* arg, int64_t got, const std::string& expected) {
  throw std::invalid_argument(std::string(fn) + ": invalid argument " + arg + " = " + std::to_string(got) +
                              " (expected " + expected + ")");
}

template <class T>
void check_args(const char* fn, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A,
                int64_t lda, const T* B, int64_t ldb, const T* C, int64_t ldc) {
  if (M < 0) throw_bad_arg(fn, "M", M, ">= 0");
  if (N < 0) throw_bad_arg(fn, "N", N, ">= 0");
  if (K < 0) throw_bad_arg(fn, "K", K, ">= 0");
  // Row-major storage: a leading dimension must cover one stored row.
  const int64_t a_cols = trans_a ? M : K;
  const int64_t b_cols = trans_b ? K : N;
  if (lda < a_cols)
    throw_bad_arg(fn, "lda", lda,
                  ">= " + std::to_string(a_cols) + (trans_a ? " (M; A is stored K x M)" : " (K; A is stored M x K)"));
  if (ldb < b_cols)
    throw_bad_arg(fn, "ldb", ldb,
                  ">= " + std::to_string(b_cols) + (trans_b ? " (K; B is stored N x K)" : " (N; B is stored K x N)"));
  if (ldc < N) throw_bad_arg(fn, "ldc", ldc, ">= " + std::to_string(N) + " (N)");
  if (M > 0 && K > 0 && A == nullptr) throw_bad_arg(fn, "A", 0, "a non-null pointer, since A is not empty");
  if (N > 0 && K > 0 && B == nullptr) throw_bad_arg(fn, "B", 0, "a non-null pointer, since B is not empty");
  if (M > 0 && N > 0 && C == nullptr) throw_bad_arg(fn, "C", 0, "a non-null pointer, since C is not empty");
}

// --------------------------------------------------------------------------------------------
// Packing buffers: 64-byte aligned, grow-only, one pair per thread (thread_local), so calls in
// steady state allocate nothing.
// --------------------------------------------------------------------------------------------

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  // Returns at least `bytes` bytes; previous contents are not preserved.
  void* get(size_t bytes) {
    if (bytes > size_) {
      std::free(data_);
      data_ = nullptr;
      size_ = 0;
      const size_t rounded = (bytes + 4095) / 4096 * 4096;
      data_ = std::aligned_alloc(64, rounded);
      if (data_ == nullptr) throw std::bad_alloc();
      size_ = rounded;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

AlignedBuffer& thread_a_buffer() {
  static thread_local AlignedBuffer buf;
  return buf;
}
AlignedBuffer& thread_b_buffer() {
  static thread_local AlignedBuffer buf;
  return buf;
}

// --------------------------------------------------------------------------------------------
// Packing
//
// Both operands are packed into micro-panels of W lines (W = MR for A, W = NR for B): for each
// k in [0, kc) the panel holds W consecutive values (lines 0 .. W-1), zero-padded past the
// matrix edge. Depending on the storage, a panel is filled in one of two ways:
//
//   copy:      the W values of one k are contiguous in memory (A transposed, B not
//              transposed). Source rows are read in chunks of kChunk rows, cut into panels.
//   transpose: each line is contiguous in k (A not transposed, B transposed). Lines are read
//              in chunks of kChunk values and scattered into the panel.
//
// `src` points at element (line 0, k 0) of the block, `ld` is the source row stride and
// `lines` the number of valid lines in the block. Panels [p_begin, p_end) are written to
// dst + p * W * kc.
// --------------------------------------------------------------------------------------------

constexpr int64_t kChunk = 16;

template <class T, int W>
void pack_copy(const T* src, int64_t ld, int64_t kc, int64_t lines, int64_t p_begin, int64_t p_end, T* dst) {
  const int64_t full_end = std::min(p_end, lines / W);  // panels with all W lines valid
  for (int64_t k0 = 0; k0 < kc; k0 += kChunk) {
    const int64_t kn = std::min(kChunk, kc - k0);
    for (int64_t p = p_begin; p < full_end; ++p) {
      const T* s = src + k0 * ld + p * W;
      T* d = dst + p * W * kc + k0 * W;
      // Fixed-size memcpy compiles to a few vector moves (a plain loop is not vectorised,
      // since the compiler cannot rule out that d and s overlap).
      for (int64_t k = 0; k < kn; ++k) std::memcpy(d + k * W, s + k * ld, sizeof(T) * W);
    }
    for (int64_t p = std::max(p_begin, full_end); p < p_end; ++p) {  // the partial last panel
      const int64_t valid = lines - p * W;
      for (int64_t k = k0; k < k0 + kn; ++k) {
        const T* s = src + k * ld + p * W;
        T* d = dst + p * W * kc + k * W;
        for (int64_t j = 0; j < valid; ++j) d[j] = s[j];
        for (int64_t j = valid; j < W; ++j) d[j] = T(0);
      }
    }
  }
}

template <class T, int W>
void pack_transpose(const T* src, int64_t ld, int64_t kc, int64_t lines, int64_t p_begin, int64_t p_end, T* dst) {
  for (int64_t p = p_begin; p < p_end; ++p) {
    const int64_t valid = std::min<int64_t>(W, lines - p * W);
    T* panel = dst + p * W * kc;
    for (int64_t k0 = 0; k0 < kc; k0 += kChunk) {
      const int64_t kn = std::min(kChunk, kc - k0);
      T* d = panel + k0 * W;
      for (int64_t j = 0; j < valid; ++j) {
        const T* s = src + (p * W + j) * ld + k0;
        for (int64_t k = 0; k < kn; ++k) d[k * W + j] = s[k];
      }
      for (int64_t j = valid; j < W; ++j)
        for (int64_t k = 0; k < kn; ++k) d[k * W + j] = T(0);
    }
  }
}

// Packs micro-panels [p_begin, p_end) of op(A)[0:mc, 0:kc] (a points at its element (0, 0)).
template <class T, int MR>
void pack_a(bool trans_a, const T* a, int64_t lda, int64_t mc, int64_t kc, int64_t p_begin, int64_t p_end, T* dst) {
  if (trans_a)
    pack_copy<T, MR>(a, lda, kc, mc, p_begin, p_end, dst);
  else
    pack_transpose<T, MR>(a, lda, kc, mc, p_begin, p_end, dst);
}

// Packs micro-panels [p_begin, p_end) of op(B)[0:kc, 0:nc] (b points at its element (0, 0)).
template <class T, int NR>
void pack_b(bool trans_b, const T* b, int64_t ldb, int64_t kc, int64_t nc, int64_t p_begin, int64_t p_end, T* dst) {
  if (trans_b)
    pack_transpose<T, NR>(b, ldb, kc, nc, p_begin, p_end, dst);
  else
    pack_copy<T, NR>(b, ldb, kc, nc, p_begin, p_end, dst);
}

// --------------------------------------------------------------------------------------------
// Micro-kernels
//
// Every micro-kernel computes one MR x NR tile:
//   C[i][j] = alpha * sum_k a[k * a_step + i] * b[k * b_step + j] + beta * C[i][j]
// for i < m, j < n (the valid part of the tile), where beta == 0 means C is not read.
// a_step / b_step are MR / NR for packed micro-panels, lda / ldb when read in place.
// --------------------------------------------------------------------------------------------

template <class T>
using MicroKernel = void (*)(int64_t kc, const T* a, int64_t a_step, const T* b, int64_t b_step, T* c, int64_t ldc,
                             T alpha, T beta, int64_t m, int64_t n);

// Stores an MR x NR tile held in `acc` (row stride nr) into C, clipped to m x n.
template <class T>
void store_tile_scalar(const T* acc, int nr, T* c, int64_t ldc, T alpha, T beta, int64_t m, int64_t n) {
  for (int64_t i = 0; i < m; ++i) {
    T* crow = c + i * ldc;
    const T* arow = acc + i * nr;
    if (beta == T(0)) {
      for (int64_t j = 0; j < n; ++j) crow[j] = alpha * arow[j];
    } else {
      for (int64_t j = 0; j < n; ++j) crow[j] = alpha * arow[j] + beta * crow[j];
    }
  }
}

// Portable kernel: plain loops over a local accumulator tile.
template <class T, int MR, int NR>
void micro_generic(int64_t kc, const T* a, int64_t a_step, const T* b, int64_t b_step, T* c, int64_t ldc, T alpha,
                   T beta, int64_t m, int64_t n) {
  T acc[MR * NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i];
      for (int j = 0; j < NR; ++j) acc[i * NR + j] += ai * b[j];
    }
    a += a_step;
    b += b_step;
  }
  store_tile_scalar(acc, NR, c, ldc, alpha, beta, m, n);
}

#if ORBIT_GEMM_X86

#define ORBIT_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define ORBIT_TARGET_AVX2 __attribute__((target("avx2,fma")))

// AVX-512, 16 x 16: one zmm accumulator per row of the tile. Partial tiles use masked loads
// and stores (rows past m are simply not stored).
ORBIT_TARGET_AVX512 void micro_avx512_16x16(int64_t kc, const float* a, int64_t a_step, const float* b,
                                            int64_t b_step, float* c, int64_t ldc, float alpha, float beta, int64_t m,
                                            int64_t n) {
  __m512 acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    const __m512 bv = _mm512_loadu_ps(b);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), bv, acc[i]);
    a += a_step;
    b += b_step;
  }

  const __mmask16 mask = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
  const __m512 valpha = _mm512_set1_ps(alpha);
  const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    if (i < m) {
      float* crow = c + i * ldc;
      __m512 r = _mm512_mul_ps(valpha, acc[i]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mask, crow), r);
      _mm512_mask_storeu_ps(crow, mask, r);
    }
  }
}

// AVX-512VL, 16 x 8: the same on ymm registers, for tiles with at most 8 valid columns. It
// reads the first 8 values of each 16-wide B row (b_step stays that of the 16-wide panel).
ORBIT_TARGET_AVX512 void micro_avx512_16x8(int64_t kc, const float* a, int64_t a_step, const float* b,
                                           int64_t b_step, float* c, int64_t ldc, float alpha, float beta, int64_t m,
                                           int64_t n) {
  __m256 acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) acc[i] = _mm256_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    const __m256 bv = _mm256_loadu_ps(b);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(a[i]), bv, acc[i]);
    a += a_step;
    b += b_step;
  }

  const __mmask8 mask = n >= 8 ? __mmask8(0xFF) : __mmask8((1u << n) - 1u);
  const __m256 valpha = _mm256_set1_ps(alpha);
  const __m256 vbeta = _mm256_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    if (i < m) {
      float* crow = c + i * ldc;
      __m256 r = _mm256_mul_ps(valpha, acc[i]);
      if (beta != 0.0f) r = _mm256_fmadd_ps(vbeta, _mm256_maskz_loadu_ps(mask, crow), r);
      _mm256_mask_storeu_ps(crow, mask, r);
    }
  }
}

// AVX2, 6 x 16: two ymm accumulators per row. Partial tiles go through a small temporary tile
// (AVX2 has no masked stores at float granularity that are cheaper than that).
ORBIT_TARGET_AVX2 void micro_avx2_6x16(int64_t kc, const float* a, int64_t a_step, const float* b, int64_t b_step,
                                       float* c, int64_t ldc, float alpha, float beta, int64_t m, int64_t n) {
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += a_step;
    b += b_step;
  }

  if (m == 6 && n == 16) {
    const __m256 valpha = _mm256_set1_ps(alpha);
    const __m256 vbeta = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      float* crow = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(valpha, acc[i][0]);
      __m256 r1 = _mm256_mul_ps(valpha, acc[i][1]);
      if (beta != 0.0f) {
        r0 = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(crow), r0);
        r1 = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(crow + 8), r1);
      }
      _mm256_storeu_ps(crow, r0);
      _mm256_storeu_ps(crow + 8, r1);
    }
  } else {
    alignas(32) float tile[6 * 16];
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      _mm256_store_ps(tile + i * 16, acc[i][0]);
      _mm256_store_ps(tile + i * 16 + 8, acc[i][1]);
    }
    store_tile_scalar(tile, 16, c, ldc, alpha, beta, m, n);
  }
}

// 16-wide packing vectorised with AVX-512, used with the 16 x 16 kernel (MR = NR = 16, so one
// routine serves A and B). In the "transpose" case, full 16 x 16 blocks (16 lines x 16 k) are
// loaded as 16 rows, transposed in registers and stored as 16 k-rows of the panel; partial
// blocks (matrix edge, kc not a multiple of 16) use the scalar code.
//
// (GCC 12 reports a false -Wmaybe-uninitialized inside its own shuffle intrinsics, which pass
// _mm512_undefined_ps() as the unused merge operand; it is silenced for this function only.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
ORBIT_TARGET_AVX512 inline void transpose_16x16(__m512 r[16]) {
  __m512 t[16];
  // Stage 1: interleave row pairs. In each 128-bit lane L, t[2i] holds elements 4L, 4L+1 of
  // rows 2i and 2i+1, and t[2i+1] elements 4L+2, 4L+3.
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Stage 2: lane L of r[4i + c] = column 4L + c of rows 4i .. 4i+3.
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // Stages 3 and 4: collect the four 128-bit pieces of each column (0x88 takes lanes 0 and 2
  // of each source, 0xDD lanes 1 and 3).
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

ORBIT_TARGET_AVX512 void pack_transpose_16_avx512(const float* src, int64_t ld, int64_t kc, int64_t lines,
                                                  int64_t p_begin, int64_t p_end, float* dst) {
  for (int64_t p = p_begin; p < p_end; ++p) {
    if (lines - p * 16 < 16) {  // edge panel: scalar, with zero padding
      pack_transpose<float, 16>(src, ld, kc, lines, p, p + 1, dst);
      continue;
    }
    const float* s = src + p * 16 * ld;
    float* panel = dst + p * 16 * kc;
    const int64_t k_full = kc / 16 * 16;
    for (int64_t k0 = 0; k0 < k_full; k0 += 16) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(s + j * ld + k0);
      transpose_16x16(r);
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) _mm512_store_ps(panel + (k0 + k) * 16, r[k]);
    }
    for (int64_t k = k_full; k < kc; ++k)
      for (int j = 0; j < 16; ++j) panel[k * 16 + j] = s[j * ld + k];
  }
}

ORBIT_TARGET_AVX512 void pack_a_avx512(bool trans_a, const float* a, int64_t lda, int64_t mc, int64_t kc,
                                       int64_t p_begin, int64_t p_end, float* dst) {
  if (trans_a)
    pack_copy<float, 16>(a, lda, kc, mc, p_begin, p_end, dst);
  else
    pack_transpose_16_avx512(a, lda, kc, mc, p_begin, p_end, dst);
}

ORBIT_TARGET_AVX512 void pack_b_avx512(bool trans_b, const float* b, int64_t ldb, int64_t kc, int64_t nc,
                                       int64_t p_begin, int64_t p_end, float* dst) {
  if (trans_b)
    pack_transpose_16_avx512(b, ldb, kc, nc, p_begin, p_end, dst);
  else
    pack_copy<float, 16>(b, ldb, kc, nc, p_begin, p_end, dst);
}

#undef ORBIT_TARGET_AVX512
#undef ORBIT_TARGET_AVX2

#endif  // ORBIT_GEMM_X86

// --------------------------------------------------------------------------------------------
// Kernel descriptors and selection
// --------------------------------------------------------------------------------------------

template <class T>
using PackA = void (*)(bool trans_a, const T* a, int64_t lda, int64_t mc, int64_t kc, int64_t p_begin, int64_t p_end,
                       T* dst);
template <class T>
using PackB = void (*)(bool trans_b, const T* b, int64_t ldb, int64_t kc, int64_t nc, int64_t p_begin, int64_t p_end,
                       T* dst);

template <class T>
struct GemmKernel {
  const char* name;
  int mr, nr;                 // micro-tile
  int64_t mc, kc, nc;         // cache blocks (upper bounds; mc a multiple of mr, nc of nr)
  MicroKernel<T> micro;       // the mr x nr kernel
  MicroKernel<T> micro_half;  // optional mr x (nr / 2) kernel for narrow edge tiles, or null
  PackA<T> pack_a;            // packs mr-row micro-panels
  PackB<T> pack_b;            // packs nr-column micro-panels
};

const GemmKernel<float> kGenericFloat{
    "generic", 4, 16, 128, 256, 2048, &micro_generic<float, 4, 16>, nullptr, &pack_a<float, 4>, &pack_b<float, 16>};
const GemmKernel<double> kGenericDouble{
    "generic", 4, 8, 128, 256, 2048, &micro_generic<double, 4, 8>, nullptr, &pack_a<double, 4>, &pack_b<double, 8>};
#if ORBIT_GEMM_X86
const GemmKernel<float> kAvx512Float{"avx512", 16, 16, 192, 512, 4096, &micro_avx512_16x16, &micro_avx512_16x8,
                                     &pack_a_avx512, &pack_b_avx512};
const GemmKernel<float> kAvx2Float{
    "avx2", 6, 16, 144, 384, 3072, &micro_avx2_6x16, nullptr, &pack_a<float, 6>, &pack_b<float, 16>};
#endif

bool cpu_has(const char* kernel) {
#if ORBIT_GEMM_X86
  __builtin_cpu_init();
  if (std::strcmp(kernel, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  if (std::strcmp(kernel, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return std::strcmp(kernel, "generic") == 0;
}

const GemmKernel<float>* find_float_kernel(const char* name) {
#if ORBIT_GEMM_X86
  if (std::strcmp(name, "avx512") == 0) return &kAvx512Float;
  if (std::strcmp(name, "avx2") == 0) return &kAvx2Float;
#endif
  if (std::strcmp(name, "generic") == 0) return &kGenericFloat;
  return nullptr;
}

const GemmKernel<float>& best_float_kernel() {
  static const GemmKernel<float>* const chosen = [] {
    for (const char* name : {"avx512", "avx2"})
      if (cpu_has(name)) return find_float_kernel(name);
    return &kGenericFloat;
  }();
  return *chosen;
}

// --------------------------------------------------------------------------------------------
// Driver
// --------------------------------------------------------------------------------------------

// C = beta * C, for the cases without a product (K == 0 or alpha == 0).
template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* row = C + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + N, T(0));
    } else if (beta != T(1)) {
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

// Splits `total` into the fewest blocks of at most `max_block`, of (nearly) equal size rounded
// up to a multiple of `unit` (so that no block is a thin leftover). Returns the block size.
int64_t even_block(int64_t total, int64_t max_block, int64_t unit) {
  const int64_t blocks = ceil_div(total, max_block);
  return std::min(max_block, ceil_div(ceil_div(total, blocks), unit) * unit);
}

// A is read in place (when transposed) if the thread's columns are at most this many
// micro-panels: each A micro-panel is then reused only a few times, right after one another.
constexpr int64_t kDirectAMaxPanels = 4;

// Single-threaded blocked product for the rectangle C[m_begin:m_end, n_begin:n_end] (the loop
// nest described at the top), with the calling thread's own packing buffers.
template <class T>
void gemm_block(const GemmKernel<T>& kern, bool trans_a, bool trans_b, int64_t m_begin, int64_t m_end,
                int64_t n_begin, int64_t n_end, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
                T beta, T* C, int64_t ldc) {
  const int mr = kern.mr, nr = kern.nr;
  // The K slices depend on K only, so every C element sees the same summation order whatever
  // the thread partition.
  const int64_t kc_step = even_block(K, kern.kc, 1);
  const int64_t mc_step = even_block(m_end - m_begin, kern.mc, mr);
  const int64_t nc_step = even_block(n_end - n_begin, kern.nc, nr);
  const bool direct_b = !trans_b && (m_end - m_begin) <= mc_step;  // one MC block of rows
  const bool direct_a = trans_a && (n_end - n_begin) <= kDirectAMaxPanels * nr;
  T* ap = static_cast<T*>(thread_a_buffer().get(sizeof(T) * size_t(mc_step) * size_t(kc_step)));
  T* bp = static_cast<T*>(thread_b_buffer().get(sizeof(T) * size_t(nc_step) * size_t(kc_step)));

  for (int64_t jc = n_begin; jc < n_end; jc += nc_step) {
    const int64_t nc = std::min(nc_step, n_end - jc);
    const int64_t b_panels = ceil_div(nc, nr);
    const int64_t b_full = direct_b ? nc / nr : 0;  // panels [0, b_full) are read in place
    for (int64_t pc = 0; pc < K; pc += kc_step) {
      const int64_t kc = std::min(kc_step, K - pc);
      const T beta_eff = (pc == 0) ? beta : T(1);  // later K slices accumulate
      const T* b_block = trans_b ? B + jc * ldb + pc : B + pc * ldb + jc;
      kern.pack_b(trans_b, b_block, ldb, kc, nc, b_full, b_panels, bp);

      for (int64_t ic = m_begin; ic < m_end; ic += mc_step) {
        const int64_t mc = std::min(mc_step, m_end - ic);
        const int64_t a_panels = ceil_div(mc, mr);
        const int64_t a_full = direct_a ? mc / mr : 0;  // panels [0, a_full) are read in place
        const T* a_block = trans_a ? A + pc * lda + ic : A + ic * lda + pc;
        kern.pack_a(trans_a, a_block, lda, mc, kc, a_full, a_panels, ap);

        for (int64_t jp = 0; jp < b_panels; ++jp) {
          const int64_t j0 = jp * nr;
          const int64_t n = std::min<int64_t>(nr, nc - j0);
          const T* b_panel = jp < b_full ? b_block + j0 : bp + j0 * kc;
          const int64_t b_step = jp < b_full ? ldb : nr;
          const MicroKernel<T> micro = (kern.micro_half != nullptr && 2 * n <= nr) ? kern.micro_half : kern.micro;
          for (int64_t ip = 0; ip < a_panels; ++ip) {
            const int64_t i0 = ip * mr;
            const int64_t m = std::min<int64_t>(mr, mc - i0);
            const T* a_panel = ip < a_full ? a_block + i0 : ap + i0 * kc;
            const int64_t a_step = ip < a_full ? lda : mr;
            micro(kc, a_panel, a_step, b_panel, b_step, C + (ic + i0) * ldc + jc + j0, ldc, alpha, beta_eff, m, n);
          }
        }
      }
    }
  }
}

struct ThreadGrid {
  int tm = 1, tn = 1;
};

// Arranges up to `nt` threads as a tm x tn grid over C, minimising the estimated time of the
// busiest thread: its padded micro-tile work plus its packing (its rows of A once per NC block
// of its columns, and its columns of B).
ThreadGrid choose_grid(int nt, int64_t M, int64_t N, int64_t K, int mr, int nr, int64_t nc) {
  const int64_t row_tiles = ceil_div(M, mr);
  const int64_t col_tiles = ceil_div(N, nr);
  ThreadGrid best;
  double best_cost = -1.0;
  for (int tm = 1; tm <= nt; ++tm) {
    for (int tn = 1; tm * tn <= nt; ++tn) {
      if (tm > row_tiles || tn > col_tiles) continue;
      const int64_t rows = ceil_div(row_tiles, tm) * mr;
      const int64_t cols = ceil_div(col_tiles, tn) * nr;
      // The micro-kernel does about 16 multiply-adds per cycle; packing moves about one
      // element per cycle.
      const double compute = double(rows) * double(cols) * double(K) / 16.0;
      const double packing = double(rows) * double(K) * double(ceil_div(cols, nc)) + double(cols) * double(K);
      const double cost = compute + packing;
      if (best_cost < 0.0 || cost < best_cost * 0.999) {  // on ties, keep fewer threads
        best_cost = cost;
        best.tm = tm;
        best.tn = tn;
      }
    }
  }
  return best;
}

// Problems below this many multiply-adds run on the calling thread: the fork/join would cost
// more than it saves.
constexpr double kMinParallelFmas = 64.0 * 64.0 * 64.0;

template <class T>
void gemm_driver(const GemmKernel<T>& kern, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                 const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) {
    scale_c(M, N, beta, C, ldc);
    return;
  }

  int nt = 1;
  if (!omp_in_parallel() && double(M) * double(N) * double(K) >= kMinParallelFmas) nt = omp_get_max_threads();
  const ThreadGrid grid = choose_grid(nt, M, N, K, kern.mr, kern.nr, kern.nc);
  if (grid.tm * grid.tn == 1) {
    gemm_block(kern, trans_a, trans_b, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }

  // Each thread computes its own rectangle of C, made of whole micro-tiles, from start to end:
  // there is no barrier inside the call (a thread descheduled by the OS delays only the join).
#pragma omp parallel num_threads(grid.tm * grid.tn)
  {
    const int team = omp_get_num_threads();
    // The runtime may give fewer threads than asked; every thread then derives the same
    // smaller plan.
    const ThreadGrid g = (team == grid.tm * grid.tn) ? grid : choose_grid(team, M, N, K, kern.mr, kern.nr, kern.nc);
    const int tid = omp_get_thread_num();
    if (tid < g.tm * g.tn) {
      const int ti = tid / g.tn, tj = tid % g.tn;
      const int64_t row_tiles = ceil_div(M, kern.mr), col_tiles = ceil_div(N, kern.nr);
      const int64_t m_begin = std::min(M, row_tiles * ti / g.tm * kern.mr);
      const int64_t m_end = std::min(M, row_tiles * (ti + 1) / g.tm * kern.mr);
      const int64_t n_begin = std::min(N, col_tiles * tj / g.tn * kern.nr);
      const int64_t n_end = std::min(N, col_tiles * (tj + 1) / g.tn * kern.nr);
      if (m_begin < m_end && n_begin < n_end)
        gemm_block(kern, trans_a, trans_b, m_begin, m_end, n_begin, n_end, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
  }
}

}  // namespace

// --------------------------------------------------------------------------------------------
// Public entry points
// --------------------------------------------------------------------------------------------

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_args("sgemm", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  gemm_driver(best_float_kernel(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  check_args("dgemm", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  gemm_driver(kGenericDouble, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* sgemm_kernel_name() { return best_float_kernel().name; }

namespace detail {

bool sgemm_kernel_supported(const char* kernel) {
  return kernel != nullptr && find_float_kernel(kernel) != nullptr && cpu_has(kernel);
}

void sgemm_with_kernel(const char* kernel, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!sgemm_kernel_supported(kernel))
    throw std::invalid_argument(std::string("sgemm_with_kernel: kernel '") + (kernel ? kernel : "(null)") +
                                "' is unknown or not supported by this CPU");
  check_args("sgemm", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  gemm_driver(*find_float_kernel(kernel), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace detail

}  // namespace orbit::cpu

// Tests for orbit::cpu::sgemm / dgemm against the triple-loop gemm_reference.
//
// Tolerance. Each C entry is a dot product of length K. Computed in a different order (the
// fast path uses FMA, K blocking and vector lanes; the reference a plain sequential sum), two
// float results differ by at most about 2 * K * u * sum_k |a_ik| |b_kj| (standard forward
// error bound for recursive summation, u = 2^-24 for float, 2^-53 for double), plus the
// rounding of the alpha/beta update, which is covered by u * (|alpha| S + |beta| |C_old|) terms.
// The tests therefore check, per entry,
//     |C_fast - C_ref| <= tol_factor * (K + 2) * u * (|alpha| * S + |beta| * |C_old|) + tiny
// with S = sum_k |a_ik| |b_kj| and tol_factor = 2. This is the worst-case bound, not a fudge:
// a bug (wrong element, wrong stride, missing K slice) produces errors of order S itself.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu/gemm.h"

namespace {

using orbit::cpu::dgemm;
using orbit::cpu::gemm_reference;
using orbit::cpu::sgemm;

// Restores the OpenMP thread count when a test ends.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  int64_t pad = 0;  // extra elements per row in lda/ldb/ldc
  double alpha = 1.0, beta = 0.0;
};

std::string describe(const Case& c) {
  return std::string("ta=") + (c.ta ? "1" : "0") + " tb=" + (c.tb ? "1" : "0") + " M=" + std::to_string(c.M) +
         " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " pad=" + std::to_string(c.pad) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta);
}

// Runs `gemm` (a callable with the sgemm/dgemm signature) on random data and compares with
// gemm_reference<T> in the same precision using the bound described at the top.
template <class T, class Gemm>
void check_case(const Case& c, Gemm gemm, uint32_t seed = 1234) {
  SCOPED_TRACE(describe(c));
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;

  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  // +1 so that empty matrices still have a valid pointer.
  std::vector<T> A(size_t(a_rows * lda + 1)), B(size_t(b_rows * ldb + 1)), C0(size_t(c.M * ldc + 1));
  for (T& x : A) x = T(dist(rng));
  for (T& x : B) x = T(dist(rng));
  const bool nan_c = (c.beta == 0.0);  // beta == 0: C must be written without being read
  for (T& x : C0) x = nan_c ? std::numeric_limits<T>::quiet_NaN() : T(dist(rng));

  std::vector<T> C = C0, Cref = C0;
  const T alpha = T(c.alpha), beta = T(c.beta);
  gemm(c.ta, c.tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  gemm_reference<T>(c.ta, c.tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, Cref.data(), ldc);

  const double u = std::numeric_limits<T>::epsilon() / 2;  // unit roundoff
  int reported = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t idx = size_t(i * ldc + j);
      if (j >= c.N) {  // padding of C must be untouched
        if (nan_c)
          ASSERT_TRUE(std::isnan(C[idx])) << "padding C(" << i << "," << j << ") was written";
        else
          ASSERT_EQ(C[idx], C0[idx]) << "padding C(" << i << "," << j << ") was written";
        continue;
      }
      double s = 0.0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a = c.ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)];
        const double b = c.tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)];
        s += std::fabs(a * b);
      }
      const double cold = nan_c ? 0.0 : std::fabs(double(C0[idx]));
      const double tol =
          2.0 * double(c.K + 2) * u * (std::fabs(c.alpha) * s + std::fabs(c.beta) * cold) + 1e-30;
      const double got = double(C[idx]), want = double(Cref[idx]);
      ASSERT_FALSE(std::isnan(got)) << "NaN at (" << i << "," << j << ")";
      if (std::fabs(got - want) > tol && reported++ < 5)
        ADD_FAILURE() << "C(" << i << "," << j << ") = " << got << ", reference " << want << ", |diff| "
                      << std::fabs(got - want) << " > tol " << tol;
    }
  }
  ASSERT_EQ(reported, 0);
}

auto sgemm_fn = [](bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
};
auto dgemm_fn = [](bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                   const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
};

// The size grid: sizes around the micro-tile edges (tiles are 16 wide, with a separate kernel
// for edge tiles of at most 8 columns) and the block edges, with K = 0 and K = 1.
std::vector<Case> size_grid() {
  const int64_t sizes[] = {1, 3, 8, 9, 17, 24, 33, 41, 65, 127, 257};
  std::vector<Case> cases;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    for (int64_t m : sizes)
      for (int64_t n : sizes) {
        // All (M, N) pairs, each with one K from the same list (all pairs x all K would be slow).
        const int64_t k = sizes[(m * 7 + n * 3) % 11];
        cases.push_back({ta, tb, m, n, k});
      }
    cases.push_back({ta, tb, 17, 33, 0});
    cases.push_back({ta, tb, 65, 3, 1});
    cases.push_back({ta, tb, 1, 257, 1});
    cases.push_back({ta, tb, 257, 1, 127});
  }
  return cases;
}

// Shapes that cross the cache blocks (K > KC, M > MC) and convolution-like shapes.
std::vector<Case> large_cases() {
  std::vector<Case> cases;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    cases.push_back({ta, tb, 300, 301, 777, 3, 1.0, 0.0});
    cases.push_back({ta, tb, 64, 784, 576, 0, 1.0, 0.0});
    cases.push_back({ta, tb, 515, 49, 1000, 1, 0.5, 1.0});
    cases.push_back({ta, tb, 33, 3100, 65, 0, -1.0, 0.25});
    cases.push_back({ta, tb, 1000, 24, 600, 2, 1.0, 0.0});
  }
  return cases;
}

void run_grid(const std::vector<Case>& cases, int threads, bool dbl) {
  ThreadCount tc(threads);
  for (const Case& c : cases) {
    if (dbl)
      check_case<double>(c, dgemm_fn);
    else
      check_case<float>(c, sgemm_fn);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(Gemm, KernelNameIsKnown) {
  const std::string name = orbit::cpu::sgemm_kernel_name();
  EXPECT_TRUE(name == "avx512" || name == "avx2" || name == "generic") << name;
  EXPECT_TRUE(orbit::cpu::detail::sgemm_kernel_supported(name.c_str()));
  EXPECT_TRUE(orbit::cpu::detail::sgemm_kernel_supported("generic"));
  EXPECT_FALSE(orbit::cpu::detail::sgemm_kernel_supported("sse9"));
}

TEST(Gemm, SgemmSizeGridOneThread) { run_grid(size_grid(), 1, false); }
TEST(Gemm, SgemmSizeGridTwoThreads) { run_grid(size_grid(), 2, false); }
TEST(Gemm, SgemmLargeOneThread) { run_grid(large_cases(), 1, false); }
TEST(Gemm, SgemmLargeTwoThreads) { run_grid(large_cases(), 2, false); }
TEST(Gemm, DgemmSizeGridOneThread) { run_grid(size_grid(), 1, true); }
TEST(Gemm, DgemmSizeGridTwoThreads) { run_grid(size_grid(), 2, true); }
TEST(Gemm, DgemmLargeTwoThreads) { run_grid(large_cases(), 2, true); }

// Leading dimensions larger than needed, and alpha/beta variants, on every trans combination.
TEST(Gemm, StridesAlphaBeta) {
  ThreadCount tc(2);
  const double alphas[] = {1.0, -0.5, 2.0};
  const double betas[] = {0.0, 1.0, -1.5};
  for (int t = 0; t < 4; ++t)
    for (double alpha : alphas)
      for (double beta : betas) {
        const Case c{bool(t & 1), bool(t & 2), 37, 40, 129, 7, alpha, beta};
        check_case<float>(c, sgemm_fn);
        check_case<double>(c, dgemm_fn);
        if (HasFatalFailure()) return;
      }
}

// Every micro-kernel this CPU supports (not only the one sgemm picks), including the portable
// generic one, on edge-heavy shapes.
TEST(Gemm, EveryKernel) {
  for (const char* kernel : {"avx512", "avx2", "generic"}) {
    if (!orbit::cpu::detail::sgemm_kernel_supported(kernel)) continue;
    SCOPED_TRACE(kernel);
    auto fn = [kernel](bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
      orbit::cpu::detail::sgemm_with_kernel(kernel, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    };
    for (int threads : {1, 2}) {
      ThreadCount tc(threads);
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        for (const Case& c : {Case{ta, tb, 1, 1, 1}, Case{ta, tb, 13, 31, 5, 2}, Case{ta, tb, 65, 17, 33, 0, 1.0, 1.0},
                              Case{ta, tb, 127, 129, 400, 1, -2.0, 0.5}, Case{ta, tb, 5, 700, 70}})
          check_case<float>(c, fn);
        if (HasFatalFailure()) return;
      }
    }
  }
  EXPECT_THROW(orbit::cpu::detail::sgemm_with_kernel("nope", false, false, 1, 1, 1, 1.f, nullptr, 1, nullptr, 1, 0.f,
                                                     nullptr, 1),
               std::invalid_argument);
}

// K == 0 (or alpha == 0): C = beta * C; beta == 0 overwrites NaN with zeros.
TEST(Gemm, KZeroScalesC) {
  std::vector<float> C = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  float dummy = 0.f;
  sgemm(false, false, 2, 3, 0, 1.f, &dummy, 0, &dummy, 3, 2.f, C.data(), 3);
  EXPECT_EQ(C, (std::vector<float>{2.f, 4.f, 6.f, 8.f, 10.f, 12.f}));
  std::vector<float> Cn(6, std::numeric_limits<float>::quiet_NaN());
  sgemm(false, false, 2, 3, 0, 1.f, nullptr, 0, nullptr, 3, 0.f, Cn.data(), 3);
  EXPECT_EQ(Cn, std::vector<float>(6, 0.f));
  std::vector<double> Cd = {1.0, -1.0};
  dgemm(true, true, 1, 2, 0, 1.0, nullptr, 1, nullptr, 0, -1.0, Cd.data(), 2);
  EXPECT_EQ(Cd, (std::vector<double>{-1.0, 1.0}));
}

TEST(Gemm, EmptyMOrNIsNoOp) {
  std::vector<float> A(10, 1.f), B(10, 1.f), C(10, 7.f);
  sgemm(false, false, 0, 5, 2, 1.f, A.data(), 2, B.data(), 5, 0.f, C.data(), 5);
  sgemm(false, false, 2, 0, 5, 1.f, A.data(), 5, B.data(), 0, 0.f, C.data(), 0);
  EXPECT_EQ(C, std::vector<float>(10, 7.f));
}

// A small exact case written out by hand, so the reference itself is checked too.
TEST(Gemm, HandComputed) {
  // A = [1 2 3; 4 5 6] (2x3), B = [7 8; 9 10; 11 12] (3x2): A*B = [58 64; 139 154].
  const float A[] = {1, 2, 3, 4, 5, 6}, B[] = {7, 8, 9, 10, 11, 12};
  const float At[] = {1, 4, 2, 5, 3, 6}, Bt[] = {7, 9, 11, 8, 10, 12};
  const float want[] = {58, 64, 139, 154};
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    float C[4] = {1, 1, 1, 1}, Cr[4] = {1, 1, 1, 1};
    sgemm(ta, tb, 2, 2, 3, 1.f, ta ? At : A, ta ? 2 : 3, tb ? Bt : B, tb ? 3 : 2, 0.f, C, 2);
    gemm_reference<float>(ta, tb, 2, 2, 3, 1.f, ta ? At : A, ta ? 2 : 3, tb ? Bt : B, tb ? 3 : 2, 0.f, Cr, 2);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(C[i], want[i]) << "t=" << t << " i=" << i;
      EXPECT_EQ(Cr[i], want[i]) << "t=" << t << " i=" << i;
    }
    // alpha = 2, beta = 1 on top of the previous result: 3 * want.
    sgemm(ta, tb, 2, 2, 3, 2.f, ta ? At : A, ta ? 2 : 3, tb ? Bt : B, tb ? 3 : 2, 1.f, C, 2);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(C[i], 3 * want[i]);
  }
}

// Same inputs and thread count give the same bits; the result does not depend on the thread
// count either (every C element is accumulated by one thread in a fixed order).
TEST(Gemm, DeterministicBitForBit) {
  const int64_t M = 300, N = 500, K = 700;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> A(size_t(M * K)), B(size_t(K * N));
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    std::vector<float> C1(size_t(M * N)), C2(size_t(M * N)), C3(size_t(M * N));
    {
      ThreadCount tc(2);
      sgemm(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C1.data(), N);
      sgemm(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C2.data(), N);
    }
    {
      ThreadCount tc(1);
      sgemm(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C3.data(), N);
    }
    EXPECT_EQ(0, std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float))) << "t=" << t;
    EXPECT_EQ(0, std::memcmp(C1.data(), C3.data(), C1.size() * sizeof(float))) << "t=" << t;
  }
}

// Called from inside a parallel region, sgemm runs single-threaded on each caller's data.
TEST(Gemm, InsideParallelRegion) {
  const int64_t n = 96;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> A(size_t(n * n)), B(size_t(n * n));
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  std::vector<float> want(size_t(n * n));
  sgemm(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, want.data(), n);
  std::vector<std::vector<float>> got(4, std::vector<float>(size_t(n * n)));
  ThreadCount tc(2);
#pragma omp parallel for num_threads(2)
  for (int r = 0; r < 4; ++r)
    sgemm(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, got[size_t(r)].data(), n);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(got[size_t(r)], want) << r;
}

// Invalid arguments throw std::invalid_argument naming the function, the argument, the value
// received and the value expected.
void expect_invalid(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(Gemm, BadArgumentsThrow) {
  std::vector<float> f(100, 0.f);
  std::vector<double> d(100, 0.0);
  const float* a = f.data();
  float* c = f.data();
  expect_invalid([&] { sgemm(false, false, -1, 2, 2, 1.f, a, 2, a, 2, 0.f, c, 2); }, {"sgemm", "M", "-1", ">= 0"});
  expect_invalid([&] { sgemm(false, false, 2, -3, 2, 1.f, a, 2, a, 2, 0.f, c, 2); }, {"sgemm", "N", "-3"});
  expect_invalid([&] { sgemm(false, false, 2, 2, -4, 1.f, a, 2, a, 2, 0.f, c, 2); }, {"sgemm", "K", "-4"});
  // !trans_a: A is M x K, lda >= K.
  expect_invalid([&] { sgemm(false, false, 3, 4, 5, 1.f, a, 4, a, 4, 0.f, c, 4); }, {"sgemm", "lda", "4", ">= 5"});
  // trans_a: A is K x M, lda >= M.
  expect_invalid([&] { sgemm(true, false, 3, 4, 5, 1.f, a, 2, a, 4, 0.f, c, 4); }, {"sgemm", "lda", "2", ">= 3"});
  // !trans_b: B is K x N, ldb >= N.
  expect_invalid([&] { sgemm(false, false, 3, 4, 5, 1.f, a, 5, a, 3, 0.f, c, 4); }, {"sgemm", "ldb", "3", ">= 4"});
  // trans_b: B is N x K, ldb >= K.
  expect_invalid([&] { sgemm(false, true, 3, 4, 5, 1.f, a, 5, a, 4, 0.f, c, 4); }, {"sgemm", "ldb", "4", ">= 5"});
  expect_invalid([&] { sgemm(false, false, 3, 4, 5, 1.f, a, 5, a, 4, 0.f, c, 3); }, {"sgemm", "ldc", "3", ">= 4"});
  expect_invalid([&] { sgemm(false, false, 3, 4, 5, 1.f, nullptr, 5, a, 4, 0.f, c, 4); }, {"sgemm", "A"});
  expect_invalid([&] { sgemm(false, false, 3, 4, 5, 1.f, a, 5, a, 4, 0.f, nullptr, 4); }, {"sgemm", "C"});
  expect_invalid([&] { dgemm(false, false, 3, 4, 5, 1.0, d.data(), 5, d.data(), 4, 0.0, d.data(), 2); },
                 {"dgemm", "ldc", "2", ">= 4"});
  expect_invalid([&] { dgemm(true, true, 3, -1, 5, 1.0, d.data(), 5, d.data(), 4, 0.0, d.data(), 2); },
                 {"dgemm", "N", "-1"});
}

}  // namespace

// orbit_bench_gemm: Orbit sgemm vs oneDNN's dnnl_sgemm (the performance peer), same run,
// same thread count.
//
//   orbit_bench_gemm [--threads N] [--reps R] [--json PATH] [--kernel avx512|avx2|generic]
//                    [--cpu-time] [--quick]
//
// For each shape: warm-up, then the best (minimum) time of R samples, each running the GEMM
// enough times to last >= ~5 ms (short samples and the minimum over many keep the numbers
// stable on a machine that is not quite idle), reported as GFLOP/s = 2*M*N*K / time.
// --kernel forces an Orbit micro-kernel (default: the one sgemm picks on this CPU).
// --cpu-time measures process CPU time instead of wall time: with --threads 1 this ignores
// time the process spent preempted by other work on a busy machine (with more threads it
// also counts OpenMP spin-waiting, so it is only meaningful for one thread).
// Built without oneDNN (ORBIT_HAVE_DNNL undefined), it prints Orbit's numbers only.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/gemm.h"
#include "bench_util.h"

#ifdef ORBIT_HAVE_DNNL
#include <dnnl.h>
#endif

namespace {

struct Shape {
  const char* label;
  bool ta, tb;
  int64_t M, N, K;
};

struct Result {
  Shape s;
  double orbit_gflops = 0.0;
  double peer_gflops = 0.0;  // 0 when the peer is missing
  double max_rel_diff = 0.0;
};

bool g_cpu_time = false;

double now_seconds() {
  if (g_cpu_time) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
double best_seconds(F&& f, int reps) {
  f();  // warm-up (also brings packing buffers and thread pool up)
  f();
  // Inner repetition count so one timed sample lasts >= ~5 ms.
  const double t0 = now_seconds();
  f();
  const double once = now_seconds() - t0;
  const int inner = std::max(1, int(0.005 / std::max(once, 1e-7)));
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double a = now_seconds();
    for (int i = 0; i < inner; ++i) f();
    const double t = (now_seconds() - a) / inner;
    best = std::min(best, t);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 15;
  std::string json_arg, kernel_arg;
  bool quick = false;
  orbit::bench::Options("orbit_bench_gemm")
      .integer("--threads", threads, 1)
      .integer("--reps", reps, 1)
      .text("--json", json_arg, {}, "PATH")
      .text("--kernel", kernel_arg, {}, "avx512|avx2|generic")
      .flag("--cpu-time", g_cpu_time)
      .flag("--quick", quick)
      .parse_or_exit(argc, argv);
  const char* json_path = json_arg.empty() ? nullptr : json_arg.c_str();
  const char* kernel = kernel_arg.empty() ? nullptr : kernel_arg.c_str();
  if (kernel && !orbit::cpu::detail::sgemm_kernel_supported(kernel)) {
    std::fprintf(stderr, "kernel '%s' is not supported on this CPU\n", kernel);
    return 2;
  }
  omp_set_num_threads(threads);
  const char* kname = kernel ? kernel : orbit::cpu::sgemm_kernel_name();

  std::vector<Shape> shapes = {
      {"square", false, false, 256, 256, 256},
      {"square", false, false, 512, 512, 512},
      {"square", false, false, 1024, 1024, 1024},
      {"square", false, false, 1536, 1536, 1536},
      {"square", false, false, 2048, 2048, 2048},
      // Convolution as GEMM (im2col), ResNet-like layers: W[Cout x Cin*k*k] * col[Cin*k*k x H*W].
      {"conv3x3 64@56 fwd", false, false, 64, 3136, 576},
      {"conv1x1 256->64@56 fwd", false, false, 64, 3136, 256},
      {"conv3x3 128@28 fwd", false, false, 128, 784, 1152},
      {"conv3x3 256@14 fwd", false, false, 256, 196, 2304},
      {"conv3x3 512@7 fwd", false, false, 512, 49, 4608},
      // Backward data: dcol = W^T * dY (A^T * B).
      {"conv3x3 64@56 bwd-data", true, false, 576, 3136, 64},
      {"conv3x3 512@7 bwd-data", true, false, 4608, 49, 512},
      // Backward weights: dW = dY * col^T (A * B^T).
      {"conv3x3 64@56 bwd-weight", false, true, 64, 576, 3136},
      {"conv3x3 512@7 bwd-weight", false, true, 512, 4608, 49},
  };
  if (quick) shapes.resize(3);

  std::printf("Orbit sgemm (kernel %s), %d thread(s), best of %d samples (%s)\n", kname, threads, reps,
              g_cpu_time ? "CPU time" : "wall time");
#ifdef ORBIT_HAVE_DNNL
  std::printf("Peer: oneDNN dnnl_sgemm, same thread count. max rdiff = max|C_orbit - C_onednn| / max|C_onednn|.\n");
#else
  std::printf("Peer missing: built without oneDNN (install libdnnl-dev and rebuild); Orbit numbers only.\n");
#endif
  std::printf("%-26s %2s %6s %6s %6s %12s %12s %7s %10s\n", "shape", "op", "M", "N", "K", "orbit GF/s", "onednn GF/s",
              "ratio", "max rdiff");

  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<Result> results;
  for (const Shape& s : shapes) {
    const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
    std::vector<float> A(size_t(s.M * s.K)), B(size_t(s.K * s.N)), C(size_t(s.M * s.N), 0.0f);
    for (float& x : A) x = dist(rng);
    for (float& x : B) x = dist(rng);
    const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
    Result r;
    r.s = s;

    auto run_orbit = [&] {
      if (kernel)
        orbit::cpu::detail::sgemm_with_kernel(kernel, s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb,
                                              0.0f, C.data(), ldc);
      else
        orbit::cpu::sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), ldc);
    };
    r.orbit_gflops = flops / best_seconds(run_orbit, reps) * 1e-9;

#ifdef ORBIT_HAVE_DNNL
    std::vector<float> Cp(C.size(), 0.0f);
    auto run_peer = [&] {
      dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                 Cp.data(), ldc);
    };
    r.peer_gflops = flops / best_seconds(run_peer, reps) * 1e-9;
    // Sanity check: the two results agree to float rounding (relative to the largest |C|).
    double maxc = 0.0, maxd = 0.0;
    for (size_t i = 0; i < C.size(); ++i) {
      maxc = std::max(maxc, double(std::fabs(Cp[i])));
      maxd = std::max(maxd, double(std::fabs(C[i] - Cp[i])));
    }
    r.max_rel_diff = maxc > 0.0 ? maxd / maxc : maxd;
    std::printf("%-26s %c%c %6lld %6lld %6lld %12.1f %12.1f %7.2f %10.1e\n", s.label, s.ta ? 'T' : 'N',
                s.tb ? 'T' : 'N', (long long)s.M, (long long)s.N, (long long)s.K, r.orbit_gflops, r.peer_gflops,
                r.orbit_gflops / r.peer_gflops, r.max_rel_diff);
#else
    std::printf("%-26s %c%c %6lld %6lld %6lld %12.1f %12s %7s %10s\n", s.label, s.ta ? 'T' : 'N', s.tb ? 'T' : 'N',
                (long long)s.M, (long long)s.N, (long long)s.K, r.orbit_gflops, "-", "-", "-");
#endif
    std::fflush(stdout);
    results.push_back(r);
  }

#ifdef ORBIT_HAVE_DNNL
  // Summary over the square sizes (the headline comparison).
  double min_ratio = 1e30, log_sum = 0.0;
  int squares = 0;
  for (const Result& r : results) {
    if (std::strcmp(r.s.label, "square") != 0) continue;
    const double ratio = r.orbit_gflops / r.peer_gflops;
    min_ratio = std::min(min_ratio, ratio);
    log_sum += std::log(ratio);
    ++squares;
  }
  if (squares > 0)
    std::printf("square sizes: Orbit / oneDNN min %.2f, geometric mean %.2f\n", min_ratio,
                std::exp(log_sum / squares));
#endif

  if (json_path) {
    FILE* f = std::fopen(json_path, "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path);
      return 1;
    }
    std::fprintf(f, "{\n  \"benchmark\": \"sgemm\",\n  \"kernel\": \"%s\",\n  \"threads\": %d,\n  \"reps\": %d,\n", kname,
                 threads, reps);
    std::fprintf(f, "  \"timing\": \"%s\",\n", g_cpu_time ? "cpu" : "wall");
#ifdef ORBIT_HAVE_DNNL
    std::fprintf(f, "  \"peer\": \"oneDNN dnnl_sgemm\",\n");
#else
    std::fprintf(f, "  \"peer\": null,\n");
#endif
    std::fprintf(f, "  \"results\": [\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(f,
                   "    {\"shape\": \"%s\", \"trans_a\": %s, \"trans_b\": %s, \"M\": %lld, \"N\": %lld, \"K\": %lld, "
                   "\"orbit_gflops\": %.2f",
                   r.s.label, r.s.ta ? "true" : "false", r.s.tb ? "true" : "false", (long long)r.s.M,
                   (long long)r.s.N, (long long)r.s.K, r.orbit_gflops);
      if (r.peer_gflops > 0.0)
        std::fprintf(f, ", \"peer_gflops\": %.2f, \"ratio\": %.3f, \"max_rel_diff\": %.3g", r.peer_gflops,
                     r.orbit_gflops / r.peer_gflops, r.max_rel_diff);
      else
        std::fprintf(f, ", \"peer_gflops\": null, \"ratio\": null");
      std::fprintf(f, "}%s\n", i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
  return 0;
}

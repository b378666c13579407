// ResNet-50 on the GPU (torchvision's architecture, models/): training-step images/s (forward,
// cross-entropy, backward, SGD with momentum) and inference images/s at batch 64, 224x224, float32
// with TF32 off, against PyTorch eager on the same GPU measured in the same run (peer_torch_cuda.py,
// TF32 off as well), and the peak GPU memory of each side (Orbit: its caching allocator's peak of
// live tensors; PyTorch: torch.cuda.max_memory_allocated). Each side runs in a process of its own.
// Without a GPU (or without the CUDA backend in the build) it says so and exits 0.
//
//   orbit_bench_cuda [--reps R] [--batch B] [--size S] [--model NAME] [--python PATH] [--json OUT] [--tf32 1]
//                    [--cudnn LAYERS] (LAYERS: none, all, or a list of bn, pool, softmax: those layers
//                                      through cuDNN instead of Orbit's own kernels)
//                    [--conv POLICY]  (how cuDNN's convolution algorithms are chosen: deterministic,
//                                      heuristic or search; with search, PyTorch runs with
//                                      torch.backends.cudnn.benchmark = True, its equivalent)
//                    [--profile 1]    (one more training step on each side: Orbit's inside
//                                      cudaProfilerStart / cudaProfilerStop, the range a profiler started
//                                      with capture off records; PyTorch's under torch.profiler, its GPU
//                                      time per kernel printed. With --child 1 Orbit's measuring process
//                                      runs alone and prints its JSON, so `ncu --profile-from-start off
//                                      ... orbit_bench_cuda --child 1 --reps 1 --profile 1` records one
//                                      training step: .ci/gpu_checks, tests/bench/ncu_summary.py)
//
// Ratios are PyTorch time / Orbit time (> 1: Orbit is faster).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "models/registry.h"
#include "train/optim.h"
#include "bench_util.h"
#ifdef ORBIT_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

using namespace orbit;
using bench::run_json;

namespace {

#ifdef ORBIT_WITH_CUDA
template <class F>
double median_seconds(F&& fn, int reps) {
  fn();  // warm-up (also chooses and caches the cuDNN algorithms)
  cuda::synchronize();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    cuda::synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

nlohmann::json measure(const std::string& name, int64_t batch, int64_t size, int reps, bool profile) {
  const Device gpu = Device::cuda(0);
  Generator gen(0);
  ModelOptions mo;
  mo.in_channels = 3;
  mo.num_classes = 1000;
  mo.gen = &gen;
  auto m = create_model(name, mo);
  m->to(gpu);
  const Tensor x = Tensor::randn({batch, 3, size, size}, &gen).to(gpu);
  std::vector<int64_t> lab(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) lab[static_cast<size_t>(i)] = i % 1000;
  const Tensor y = Tensor::from_vector(lab, {batch}).to(gpu);
  SGDOptions so(0.01);
  so.momentum = 0.9;
  SGD opt(m->parameters(), so);
  m->eval();
  cuda::reset_peak_memory();
  const double infer_s = median_seconds([&] {
    NoGradGuard ng;
    (*m)(x);
  }, reps);
  m->train();
  cuda::reset_peak_memory();
  auto train_step = [&] {
    opt.zero_grad(true);
    cross_entropy((*m)(x), y).backward();
    opt.step();
  };
  const double train_s = median_seconds(train_step, reps);
  // The GPU's own time for one more training step (CUDA events on the stream): the wall-clock step
  // minus this is time the GPU waited for the host.
  cuda::EventTimer timer;
  timer.start();
  train_step();
  const double train_gpu_s = timer.stop_ms() / 1000.0;
  if (profile) {
    cuda::profiler_start();
    train_step();
    cuda::profiler_stop();
  }
  return {{"infer_s", infer_s}, {"train_s", train_s}, {"train_gpu_s", train_gpu_s},
          {"peak_mb", static_cast<double>(cuda::memory_stats().peak_allocated) / (1 << 20)}};
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int reps = 10;
  int64_t batch = 64, size = 224;
  std::string tf32_arg = "0", child_arg = "0", profile_arg = "0";
  std::string cudnn = "none", conv = "deterministic";
  std::string model = "resnet50", python = "/usr/bin/python3", json_out;
  bench::Options("orbit_bench_cuda")
      .integer("--reps", reps, 1)
      .integer("--batch", batch, 1)
      .integer("--size", size, 32)
      .text("--model", model, {}, "NAME")
      .text("--python", python, {}, "PATH")
      .text("--json", json_out, {}, "OUT")
      .text("--tf32", tf32_arg, {"0", "1"})
      .text("--cudnn", cudnn, {}, "none|all|bn,pool,softmax")
      .text("--conv", conv, {"deterministic", "heuristic", "search"})
      .text("--profile", profile_arg, {"0", "1"})
      .text("--child", child_arg, {"0", "1"})
      .parse_or_exit(argc, argv);
  const bool tf32 = tf32_arg == "1", child = child_arg == "1", profile = profile_arg == "1";
#ifndef ORBIT_WITH_CUDA
  std::printf("orbit_bench_cuda: this build has no CUDA backend (build with CUDA=1 on a machine with the CUDA toolkit); skipped\n");
  return 0;
#else
  try {
    cuda::set_cudnn_layers(cuda::parse_cudnn_layers(cudnn));
    cuda::set_conv_algo_policy(cuda::parse_conv_algo_policy(conv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orbit_bench_cuda: %s\n", e.what());
    return 2;
  }
  if (cuda::device_count() == 0) {
    std::printf("orbit_bench_cuda: no CUDA device; skipped\n");
    return 0;
  }
  cuda::set_allow_tf32(tf32);
  if (child) {
    std::printf("%s\n", measure(model, batch, size, reps, profile).dump().c_str());
    return 0;
  }
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return 1;
  self[len] = 0;
  const std::string args = " --reps " + std::to_string(reps) + " --batch " + std::to_string(batch) + " --size " +
                           std::to_string(size) + " --model " + model + " --tf32 " + (tf32 ? "1" : "0") +
                           " --cudnn " + cudnn + " --conv " + conv + " --profile " + profile_arg;
  const nlohmann::json o = run_json(std::string(self) + args + " --child 1");
  if (o.is_null()) return 1;
  // The peer script from the source tree this was built from, or, when the binary was carried to
  // another machine, from the repository it runs in (the current directory).
  std::string peer = std::string(ORBIT_SOURCE_DIR) + "/tests/bench/peer_torch_cuda.py";
  if (access(peer.c_str(), R_OK) != 0) peer = "tests/bench/peer_torch_cuda.py";
  const bool have_torch = std::system((python + " -c 'import torch, torchvision; assert torch.cuda.is_available()' > /dev/null 2>&1").c_str()) == 0;
  nlohmann::json t = nullptr;
  if (have_torch)
    t = run_json(python + " " + peer + " " + model + " " + std::to_string(batch) + " " + std::to_string(size) + " " +
                 std::to_string(reps) + " " + (tf32 ? "1" : "0") + " " + (conv == "search" ? "1" : "0") + " " + profile_arg);
  else
    std::printf("(no PyTorch peer: %s cannot import torch and torchvision with CUDA)\n", python.c_str());
  std::printf("%s on the GPU, batch %lld of 3x%lldx%lld, float32, TF32 %s, through cuDNN: convolutions (algorithms: %s) and %s, median of %d steps after a warm-up; ratio = PyTorch time / Orbit time\n",
              model.c_str(), static_cast<long long>(batch), static_cast<long long>(size), static_cast<long long>(size),
              tf32 ? "on" : "off", conv.c_str(),
              cudnn == "none" ? "nothing else (the rest by Orbit's kernels)" : cudnn.c_str(), reps);
  std::printf("%-12s %10s %10s %8s\n", "", "Orbit", "PyTorch", "ratio");
  const double b = static_cast<double>(batch);
  auto row = [&](const char* what, const char* key) {
    const double ov = b / o[key].get<double>();
    if (t.is_null()) {
      std::printf("%-12s %10.1f %10s %8s\n", what, ov, "-", "-");
    } else {
      const double tv = b / t[key].get<double>();
      std::printf("%-12s %10.1f %10.1f %7.2fx\n", what, ov, tv, ov / tv);
    }
  };
  row("train img/s", "train_s");
  row("infer img/s", "infer_s");
  std::printf("%-12s %10.1f %10s   (one step timed by CUDA events: the GPU's busy time)\n", "train GPU img/s",
              b / o["train_gpu_s"].get<double>(), "-");
  std::printf("%-12s %10.0f %10s\n", "peak MB", o["peak_mb"].get<double>(),
              t.is_null() ? "-" : std::to_string(static_cast<long long>(t["peak_mb"].get<double>())).c_str());
  if (!json_out.empty()) std::ofstream(json_out) << nlohmann::json({{"orbit", o}, {"torch", t}, {"cudnn_layers", cudnn}, {"conv_algo", conv}, {"tf32", tf32}}).dump(2) << "\n";
  return 0;
#endif
}

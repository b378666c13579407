// ResNet-50 and EfficientNet-B0 (torchvision's architectures, models/) at batch 8, 224x224: inference
// images/s and training-step images/s (forward, cross-entropy, backward, SGD with momentum), each
// against PyTorch CPU (torchvision's same model) measured in the same run, on the same machine and
// thread count, and the peak resident memory of each side. Every measurement runs in a process of
// its own, so the peak memory is that model's.
//
//   orbit_bench_models [--threads N] [--reps R] [--batch B] [--size S] [--models a,b] [--python PATH] [--json OUT]
//
// Ratios are PyTorch time / Orbit time (> 1: Orbit is faster).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/parallel.h"
#include "engine/random.h"
#include "models/registry.h"
#include "train/optim.h"
#include "bench_util.h"

using namespace orbit;
using bench::run_json;

namespace {

template <class F>
double median_seconds(F&& fn, int reps) {
  fn();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The measurement of one model, in this (child) process: JSON on stdout.
int measure(const std::string& name, int64_t batch, int64_t size, int reps) {
  Generator gen(0);
  ModelOptions mo;
  mo.in_channels = 3;
  mo.num_classes = 1000;
  mo.gen = &gen;
  auto m = create_model(name, mo);
  const Tensor x = Tensor::randn({batch, 3, size, size}, &gen);
  std::vector<int64_t> lab(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) lab[static_cast<size_t>(i)] = i % 1000;
  const Tensor y = Tensor::from_vector(lab, {batch});
  SGDOptions so(0.01);
  so.momentum = 0.9;
  SGD opt(m->parameters(), so);
  m->eval();
  const double infer_s = median_seconds([&] {
    NoGradGuard ng;
    (*m)(x);
  }, reps);
  m->train();
  const double train_s = median_seconds([&] {
    opt.zero_grad(true);
    cross_entropy((*m)(x), y).backward();
    opt.step();
  }, reps);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("%s\n", nlohmann::json({{"infer_s", infer_s}, {"train_s", train_s}, {"peak_rss_mb", ru.ru_maxrss / 1024.0}}).dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5;
  int64_t batch = 8, size = 224;
  std::string models = "resnet50,efficientnet_b0", python = "/usr/bin/python3", json_out, child;
  bench::Options("orbit_bench_models")
      .integer("--threads", threads, 1)
      .integer("--reps", reps, 1)
      .integer("--batch", batch, 1)
      .integer("--size", size, 32)
      .text("--models", models, {}, "a,b")
      .text("--python", python, {}, "PATH")
      .text("--json", json_out, {}, "OUT")
      .text("--child", child, {}, "NAME")
      .parse_or_exit(argc, argv);
  set_num_threads(threads);
  if (!child.empty()) return measure(child, batch, size, reps);

  std::vector<std::string> names;
  for (size_t i = 0; i <= models.size();) {
    const size_t j = std::min(models.find(',', i), models.size());
    if (j > i) names.push_back(models.substr(i, j - i));
    i = j + 1;
  }
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return 1;
  self[len] = 0;
  const std::string peer = std::string(ORBIT_SOURCE_DIR) + "/tests/bench/peer_torch_models.py";
  const bool have_torch = std::system((python + " -c 'import torch, torchvision' > /dev/null 2>&1").c_str()) == 0;
  std::printf("batch %lld of 3x%lldx%lld, %d threads, median of %d steps after a warm-up; ratio = PyTorch time / Orbit time\n",
              static_cast<long long>(batch), static_cast<long long>(size), static_cast<long long>(size), threads, reps);
  if (!have_torch) std::printf("(no PyTorch peer: %s cannot import torch and torchvision; install python3-torch python3-torchvision)\n", python.c_str());
  std::printf("%-16s %26s %26s %22s\n", "model", "inference img/s", "training img/s", "peak RSS MB");
  std::printf("%-16s %8s %8s %8s %8s %8s %8s %10s %10s\n", "", "Orbit", "PyTorch", "ratio", "Orbit", "PyTorch", "ratio", "Orbit", "PyTorch");
  nlohmann::json all = nlohmann::json::array();
  for (const auto& name : names) {
    const std::string args = " --threads " + std::to_string(threads) + " --reps " + std::to_string(reps) + " --batch " +
                             std::to_string(batch) + " --size " + std::to_string(size);
    const nlohmann::json o = run_json(std::string(self) + args + " --child " + name);
    if (o.is_null()) return 1;
    nlohmann::json t = nullptr;
    if (have_torch)
      t = run_json(python + " " + peer + " " + name + " " + std::to_string(batch) + " " + std::to_string(size) + " " +
                   std::to_string(threads) + " " + std::to_string(reps));
    const double b = static_cast<double>(batch);
    const double oi = b / o["infer_s"].get<double>(), ot = b / o["train_s"].get<double>();
    if (t.is_null()) {
      std::printf("%-16s %8.2f %8s %8s %8.2f %8s %8s %10.0f %10s\n", name.c_str(), oi, "-", "-", ot, "-", "-",
                  o["peak_rss_mb"].get<double>(), "-");
    } else {
      const double ti = b / t["infer_s"].get<double>(), tt = b / t["train_s"].get<double>();
      std::printf("%-16s %8.2f %8.2f %7.2fx %8.2f %8.2f %7.2fx %10.0f %10.0f\n", name.c_str(), oi, ti, oi / ti, ot, tt, ot / tt,
                  o["peak_rss_mb"].get<double>(), t["peak_rss_mb"].get<double>());
    }
    all.push_back({{"model", name}, {"orbit", o}, {"torch", t}});
    std::fflush(stdout);
  }
  if (!json_out.empty()) std::ofstream(json_out) << all.dump(2) << "\n";
  return 0;
}

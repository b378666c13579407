// conv2d forward + backward (input and weight gradients) on the convolution shapes of ResNet-50 at
// batch 8 (or of resnet_small on 28x28 images, the equivariant fine-tuning study's model, with --net),
// against PyTorch CPU measured in the same run on the same machine and thread count.
//
//   orbit_bench_conv [--threads N] [--reps R] [--batch B] [--net resnet50|resnet_small] [--python PATH] [--json OUT]
//
// Prints one row per shape: Orbit ms, PyTorch ms, ratio = PyTorch time / Orbit time (> 1: Orbit is
// faster), and the totals weighted by how often each shape occurs in ResNet-50.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/cpu/gemm.h"
#include "engine/ops.h"
#include "engine/parallel.h"
#include "engine/random.h"
#include "bench_util.h"

using namespace orbit;

namespace {

struct ConvShape {
  const char* where;
  int64_t cin, cout, h, w, k, stride, pad;
  int count;  // occurrences in the network
};

// torchvision resnet50 (stride on the 3x3 conv of the first bottleneck of layers 2-4), 224x224 input.
const std::vector<ConvShape> kShapes50 = {
    {"conv1 7x7/2", 3, 64, 224, 224, 7, 2, 3, 1},
    {"layer1 1x1 64->64", 64, 64, 56, 56, 1, 1, 0, 1},
    {"layer1 3x3 64", 64, 64, 56, 56, 3, 1, 1, 3},
    {"layer1 1x1 64->256", 64, 256, 56, 56, 1, 1, 0, 4},
    {"layer1 1x1 256->64", 256, 64, 56, 56, 1, 1, 0, 2},
    {"layer2 1x1 256->128", 256, 128, 56, 56, 1, 1, 0, 1},
    {"layer2 3x3/2 128", 128, 128, 56, 56, 3, 2, 1, 1},
    {"layer2 1x1 128->512", 128, 512, 28, 28, 1, 1, 0, 4},
    {"layer2 down 256->512/2", 256, 512, 56, 56, 1, 2, 0, 1},
    {"layer2 1x1 512->128", 512, 128, 28, 28, 1, 1, 0, 3},
    {"layer2 3x3 128", 128, 128, 28, 28, 3, 1, 1, 3},
    {"layer3 1x1 512->256", 512, 256, 28, 28, 1, 1, 0, 1},
    {"layer3 3x3/2 256", 256, 256, 28, 28, 3, 2, 1, 1},
    {"layer3 1x1 256->1024", 256, 1024, 14, 14, 1, 1, 0, 6},
    {"layer3 down 512->1024/2", 512, 1024, 28, 28, 1, 2, 0, 1},
    {"layer3 1x1 1024->256", 1024, 256, 14, 14, 1, 1, 0, 5},
    {"layer3 3x3 256", 256, 256, 14, 14, 3, 1, 1, 5},
    {"layer4 1x1 1024->512", 1024, 512, 14, 14, 1, 1, 0, 1},
    {"layer4 3x3/2 512", 512, 512, 14, 14, 3, 2, 1, 1},
    {"layer4 1x1 512->2048", 512, 2048, 7, 7, 1, 1, 0, 3},
    {"layer4 down 1024->2048/2", 1024, 2048, 14, 14, 1, 2, 0, 1},
    {"layer4 1x1 2048->512", 2048, 512, 7, 7, 1, 1, 0, 2},
    {"layer4 3x3 512", 512, 512, 7, 7, 3, 1, 1, 2},
};

// models/resnet_small.h (widths 16-32-64-128, 3x3 stride-1 stem, no max pool) on 1x28x28 images.
const std::vector<ConvShape> kSmallShapes = {
    {"conv1 3x3 1->16", 1, 16, 28, 28, 3, 1, 1, 1},
    {"layer1 3x3 16", 16, 16, 28, 28, 3, 1, 1, 4},
    {"layer2 3x3/2 16->32", 16, 32, 28, 28, 3, 2, 1, 1},
    {"layer2 down 16->32/2", 16, 32, 28, 28, 1, 2, 0, 1},
    {"layer2 3x3 32", 32, 32, 14, 14, 3, 1, 1, 3},
    {"layer3 3x3/2 32->64", 32, 64, 14, 14, 3, 2, 1, 1},
    {"layer3 down 32->64/2", 32, 64, 14, 14, 1, 2, 0, 1},
    {"layer3 3x3 64", 64, 64, 7, 7, 3, 1, 1, 3},
    {"layer4 3x3/2 64->128", 64, 128, 7, 7, 3, 2, 1, 1},
    {"layer4 down 64->128/2", 64, 128, 7, 7, 1, 2, 0, 1},
    {"layer4 3x3 128", 128, 128, 4, 4, 3, 1, 1, 3},
};

double orbit_time(const ConvShape& s, int64_t batch, int reps) {
  Generator g(0);
  Tensor x = Tensor::randn({batch, s.cin, s.h, s.w}, &g).requires_grad_();
  Tensor w = Tensor::randn({s.cout, s.cin, s.k, s.k}, &g).requires_grad_();
  Tensor gy;
  auto step = [&] {
    x.zero_grad();
    w.zero_grad();
    Tensor y = conv2d(x, w, Tensor(), s.stride, s.pad);
    if (!gy.defined()) gy = Tensor::randn(y.shape(), &g);
    y.backward(gy);
  };
  step();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<double> torch_times(const std::vector<ConvShape>& conv_shapes, const std::string& python, int64_t batch, int threads, int reps,
                                std::string* version) {
  nlohmann::json shapes = nlohmann::json::array();
  for (const auto& s : conv_shapes)
    shapes.push_back({{"n", batch}, {"cin", s.cin}, {"cout", s.cout}, {"h", s.h}, {"w", s.w},
                      {"k", s.k}, {"stride", s.stride}, {"pad", s.pad}});
  const std::string path = "/tmp/orbit_bench_conv_shapes.json";
  std::ofstream(path) << shapes.dump();
  const std::string cmd = python + " " + ORBIT_SOURCE_DIR + "/tests/bench/peer_torch_conv.py " + path + " " +
                          std::to_string(threads) + " " + std::to_string(reps) + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (pclose(p) != 0 || out.empty()) return {};
  auto j = nlohmann::json::parse(out);
  *version = j["torch"].get<std::string>();
  return j["times"].get<std::vector<double>>();
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5;
  int64_t batch = 0;  // 0: the net's default
  std::string python = "/usr/bin/python3", json_out, net = "resnet50";
  bench::Options("orbit_bench_conv")
      .integer("--threads", threads, 1)
      .integer("--reps", reps, 1)
      .integer("--batch", batch, 1)
      .text("--net", net, {"resnet50", "resnet_small"})
      .text("--python", python, {}, "PATH")
      .text("--json", json_out, {}, "OUT")
      .parse_or_exit(argc, argv);
  const bool small = net == "resnet_small";
  const std::vector<ConvShape>& conv_shapes = small ? kSmallShapes : kShapes50;
  if (batch == 0) batch = small ? 64 : 8;
  set_num_threads(threads);
  std::printf("conv2d forward+backward, %s shapes, batch %lld, %d threads, median of %d (sgemm kernel: %s)\n",
              small ? "resnet_small (28x28)" : "ResNet-50", static_cast<long long>(batch), threads, reps,
              cpu::sgemm_kernel_name());
  std::string version;
  std::vector<double> peer = torch_times(conv_shapes, python, batch, threads, reps, &version);
  if (peer.empty())
    std::printf("PyTorch peer unavailable (%s with torch not found): Orbit times only\n", python.c_str());
  else
    std::printf("peer: PyTorch %s (CPU) via %s\n", version.c_str(), python.c_str());
  std::printf("%-26s %5s %10s %10s %8s\n", "shape", "count", "orbit ms", "torch ms", "ratio");
  double tot_o = 0, tot_t = 0;
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < conv_shapes.size(); ++i) {
    const auto& s = conv_shapes[i];
    const double o = orbit_time(s, batch, reps);
    tot_o += o * s.count;
    if (!peer.empty()) {
      tot_t += peer[i] * s.count;
      std::printf("%-26s %5d %10.2f %10.2f %8.2f\n", s.where, s.count, o * 1e3, peer[i] * 1e3, peer[i] / o);
    } else {
      std::printf("%-26s %5d %10.2f %10s %8s\n", s.where, s.count, o * 1e3, "-", "-");
    }
    rows.push_back({{"shape", s.where}, {"count", s.count}, {"orbit_s", o}, {"torch_s", peer.empty() ? 0.0 : peer[i]}});
  }
  if (!peer.empty())
    std::printf("%-26s %5s %10.1f %10.1f %8.2f   (all %s convolutions, weighted by count)\n", "TOTAL", "",
                tot_o * 1e3, tot_t * 1e3, tot_t / tot_o, net.c_str());
  if (!json_out.empty())
    std::ofstream(json_out) << nlohmann::json{{"net", net}, {"threads", threads}, {"batch", batch}, {"rows", rows},
                                              {"total_orbit_s", tot_o}, {"total_torch_s", tot_t}}.dump(2);
  return 0;
}

// The cost of the equivariance regularizer: one training step (forward, cross-entropy, backward, Adam)
// of resnet_small on a batch of 28x28 images, plain and with the regularizer (C4, KL from a
// stop-gradient upright branch, 1 sampled element per image), as a ratio to the plain step measured
// in the same run. Shown for comparison: the regularizer on half of each batch (reg_fraction 0.5), over
// C8 (bilinear 45° rotations) on all or half of each batch, equi-tuning over C4 (4 forward passes per image) and
// canonicalization over C4 (4 passes of a small scorer and 1 of the model, plus the scorer's prior).
// The peer: the same steps of the same model in PyTorch CPU (tests/bench/peer_torch_regularizer.py), run
// after Orbit's in the same process tree, each side's kinds as ratios to its own plain step; for
// resnet_small only, and only when the Python interpreter can import torch and torchvision.
//
// --device cuda runs the same steps on the GPU (a build with the CUDA backend and a CUDA device; each
// step ends with a synchronization, so its time is the GPU's whole step), and the peer on the same GPU;
// canonicalization is left out there.
//
//   orbit_bench_regularizer [--threads N] [--reps R] [--batch B] [--model NAME] [--python PATH] [--device cpu|cuda]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/parallel.h"
#include "groups/canonicalize.h"
#include "groups/equivariance.h"
#include "groups/regularizer.h"
#include "models/registry.h"
#include "train/optim.h"
#include "bench_util.h"
#ifdef ORBIT_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

using namespace orbit;

int main(int argc, char** argv) {
  int threads = 2, reps = 15;
  int64_t batch = 64;
  std::string model_name = "resnet_small", python = "/usr/bin/python3", device_name = "cpu";
  bench::Options("orbit_bench_regularizer")
      .integer("--threads", threads, 1)
      .integer("--reps", reps, 1)
      .integer("--batch", batch, 2)
      .text("--model", model_name, {}, "NAME")
      .text("--python", python, {}, "PATH")
      .text("--device", device_name, {"cpu", "cuda"})
      .parse_or_exit(argc, argv);
  const bool on_gpu = device_name == "cuda";
#ifdef ORBIT_WITH_CUDA
  if (on_gpu && cuda::device_count() == 0) {
    std::printf("orbit_bench_regularizer: no CUDA device; skipped\n");
    return 0;
  }
  auto synchronize = [&] {
    if (on_gpu) cuda::synchronize();
  };
#else
  if (on_gpu) {
    std::printf("orbit_bench_regularizer: this build has no CUDA backend (build with CUDA=1); skipped\n");
    return 0;
  }
  auto synchronize = [] {};
#endif
  const Device device = on_gpu ? Device::cuda(0) : Device::cpu();
  set_num_threads(threads);
  Generator gen(1);
  ModelOptions mo;
  mo.num_classes = 5;
  mo.gen = &gen;
  auto model = create_model(model_name, mo);
  model->to(device);
  Adam opt(model->parameters(), AdamOptions{});
  const Tensor x = Tensor::rand({batch, 1, 28, 28}, &gen).to(device);
  std::vector<int64_t> lab(batch);
  for (int64_t i = 0; i < batch; ++i) lab[i] = i % 5;
  const Tensor y = Tensor::from_vector(lab, {batch}).to(device);
  const groups::Group G = groups::Group::parse("C4");
  const groups::Group G8 = groups::Group::parse("C8");
  auto averaged = std::make_shared<groups::GroupAveraged>(model, G);
  // Canonicalization on the host only (its scorer is not moved to the GPU here).
  std::shared_ptr<groups::Canonicalized> canon;
  std::unique_ptr<Adam> canon_opt;
  if (!on_gpu) {
    canon = std::make_shared<groups::Canonicalized>(model, groups::Canonicalized::make_scorer(1, &gen), G);
    canon_opt = std::make_unique<Adam>(canon->parameters(), AdamOptions{});
  }
  auto f = [&](const Tensor& t) { return (*model)(t); };

  // kind 0: plain; 1-4: the regularizer over C4 or C8, on every image or on half of them; 5: equi-tuning;
  // 6: canonicalization.
  auto step = [&](int kind) {
    Tensor logits, penalty;
    if (kind >= 1 && kind <= 4) {
      groups::RegularizerOptions ro;
      ro.samples = 1;
      ro.item_fraction = kind % 2 == 0 ? 0.5 : 1.0;
      auto r = groups::regularized_forward(f, model.get(), kind >= 3 ? G8 : G, x, ro, gen);
      logits = r.output;
      penalty = r.penalty;
    } else if (kind == 6) {
      logits = (*canon)(x);
      penalty = groups::Canonicalized::prior_loss(canon->last_scores());
    } else {
      logits = kind == 5 ? (*averaged)(x) : f(x);
    }
    Tensor loss = cross_entropy(logits, y);
    if (penalty.defined()) loss = add(loss, mul(penalty, 3.0));
    Adam& o = kind == 6 ? *canon_opt : opt;
    o.zero_grad();
    loss.backward();
    o.step();
    synchronize();
  };
  const char* names[] = {"plain step",
                         "regularizer, every image",
                         "regularizer, half of the images (reg_fraction 0.5)",
                         "regularizer over C8, every image",
                         "regularizer over C8, half of the images",
                         "equi-tuning over C4",
                         "canonicalization over C4"};
  const int kinds = on_gpu ? 6 : 7;
  std::vector<std::vector<double>> times(kinds);
  for (int k = 0; k < kinds; ++k) step(k);  // warm-up
  // Interleave the kinds so that machine noise hits them alike.
  for (int r = 0; r < reps; ++r)
    for (int k = 0; k < kinds; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      step(k);
      times[k].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  // The peer, measured after Orbit's steps so that the two never share the cores.
  nlohmann::json peer = nullptr;
  const char* peer_keys[] = {"plain", "reg_c4", "reg_c4_half", "reg_c8", "reg_c8_half", "equitune_c4", nullptr};
  std::string no_peer;
  if (model_name != "resnet_small")
    no_peer = "the PyTorch peer builds resnet_small only";
  else if (std::system((python + " -c 'import torch, torchvision' > /dev/null 2>&1").c_str()) != 0)
    no_peer = python + " cannot import torch and torchvision; install python3-torch python3-torchvision";
  else
    peer = bench::run_json(python + " " + ORBIT_SOURCE_DIR + "/tests/bench/peer_torch_regularizer.py " +
                           std::to_string(batch) + " " + std::to_string(threads) + " " + std::to_string(reps) + " " +
                           device_name);
  if (no_peer.empty() && peer.is_null()) no_peer = "the peer failed (its output is above)";
  if (on_gpu)
    std::printf("training step of %s on the GPU, batch %lld of 1x28x28, median of %d steps\n", model_name.c_str(),
                static_cast<long long>(batch), reps);
  else
    std::printf("training step of %s, batch %lld of 1x28x28, %d threads, median of %d steps\n", model_name.c_str(),
                static_cast<long long>(batch), threads, reps);
  if (!no_peer.empty()) std::printf("(no PyTorch peer: %s)\n", no_peer.c_str());
  std::vector<double> med(kinds);
  for (int k = 0; k < kinds; ++k) {
    std::sort(times[k].begin(), times[k].end());
    med[k] = times[k][times[k].size() / 2];
  }
  std::printf("  %-52s %9s %8s %11s %8s\n", "", "Orbit ms", "ratio", "PyTorch ms", "ratio");
  for (int k = 0; k < kinds; ++k) {
    std::printf("  %-52s %9.1f %8.2f", names[k], med[k], med[k] / med[0]);
    const char* key = peer_keys[k];
    if (!peer.is_null() && key) {
      const double t = peer["ms"][key].get<double>(), t0 = peer["ms"]["plain"].get<double>();
      std::printf(" %11.1f %8.2f\n", t, t / t0);
    } else {
      std::printf(" %11s %8s\n", "-", "-");
    }
  }
  std::printf("(ratio: the step's time over the plain step's time of the same engine)\n");
  return 0;
}

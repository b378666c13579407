// The cost of the equivariance regularizer: one training step (forward, cross-entropy, backward, Adam)
// of resnet_small on a batch of 28x28 images, plain and with the regularizer (C4, KL from a
// stop-gradient upright branch, 1 sampled element per image), as a ratio to the plain step measured
// in the same run. Shown for comparison: the regularizer on half of each batch (reg_fraction 0.5), over
// C8 (bilinear 45° rotations) on all or half of each batch, equi-tuning over C4 (4 forward passes per image) and
// canonicalization over C4 (4 passes of a small scorer and 1 of the model, plus the scorer's prior).
//
//   orbit_bench_regularizer [--threads N] [--reps R] [--batch B] [--model NAME]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/parallel.h"
#include "groups/canonicalize.h"
#include "groups/equivariance.h"
#include "groups/regularizer.h"
#include "models/registry.h"
#include "train/optim.h"

using namespace orbit;

int main(int argc, char** argv) {
  int threads = 2, reps = 15;
  int64_t batch = 64;
  std::string model_name = "resnet_small";
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", argv[i]);
      return 2;
    }
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--model")) model_name = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  set_num_threads(threads);
  Generator gen(1);
  ModelOptions mo;
  mo.num_classes = 5;
  mo.gen = &gen;
  auto model = create_model(model_name, mo);
  Adam opt(model->parameters(), AdamOptions{});
  const Tensor x = Tensor::rand({batch, 1, 28, 28}, &gen);
  std::vector<int64_t> lab(batch);
  for (int64_t i = 0; i < batch; ++i) lab[i] = i % 5;
  const Tensor y = Tensor::from_vector(lab, {batch});
  const groups::Group G = groups::Group::parse("C4");
  const groups::Group G8 = groups::Group::parse("C8");
  auto averaged = std::make_shared<groups::GroupAveraged>(model, G);
  auto canon = std::make_shared<groups::Canonicalized>(model, groups::Canonicalized::make_scorer(1, &gen), G);
  Adam canon_opt(canon->parameters(), AdamOptions{});
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
    Adam& o = kind == 6 ? canon_opt : opt;
    o.zero_grad();
    loss.backward();
    o.step();
  };
  const char* names[] = {"plain step",
                         "regularizer, every image",
                         "regularizer, half of the images (reg_fraction 0.5)",
                         "regularizer over C8, every image",
                         "regularizer over C8, half of the images",
                         "equi-tuning over C4",
                         "canonicalization over C4"};
  const int kinds = 7;
  std::vector<std::vector<double>> times(kinds);
  for (int k = 0; k < kinds; ++k) step(k);  // warm-up
  // Interleave the kinds so that machine noise hits them alike.
  for (int r = 0; r < reps; ++r)
    for (int k = 0; k < kinds; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      step(k);
      times[k].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  std::printf("training step of %s, batch %lld of 1x28x28, %d threads, median of %d steps\n", model_name.c_str(),
              static_cast<long long>(batch), threads, reps);
  std::vector<double> med(kinds);
  for (int k = 0; k < kinds; ++k) {
    std::sort(times[k].begin(), times[k].end());
    med[k] = times[k][times[k].size() / 2];
  }
  for (int k = 0; k < kinds; ++k)
    std::printf("  %-52s %8.1f ms   ratio to plain %.2f\n", names[k], med[k], med[k] / med[0]);
  return 0;
}

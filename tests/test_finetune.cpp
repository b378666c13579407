// The fine-tuning trainer (train/finetune.h) on a tiny synthetic task: config validation before any
// work, pretrain -> fine-tune with a new head, every method, exact resume, cross-validation, and the
// CLI killed with SIGKILL resuming to the same weights as an uninterrupted run.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "data/image_io.h"
#include "data/split.h"
#include "data/transforms.h"
#include "engine/ops.h"
#include "layers/module.h"
#include "models/registry.h"
#include "test_util.h"
#ifdef ORBIT_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/finetune.h"
#include "train/interrupt.h"
#include "train/predict.h"
#include "train/report.h"
#include "train/study.h"
#include "train/trainer.h"
#include "weights/weights.h"

using namespace orbit;
using namespace orbit::testing;
namespace fs = std::filesystem;

namespace {

// Three classes of 12x12 images whose class does not change under rotation: a filled square, a
// hollow square and a plus, at random small offsets with noise.
data::ImageClassificationDataset shapes(int64_t per_class, uint64_t seed, int64_t H = 12, int64_t W = 12) {
  Generator gen(seed);
  const int64_t N = 3 * per_class;
  std::vector<float> px(N * H * W, 0.f);
  std::vector<int64_t> labels(N);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t c = i % 3;
    labels[i] = c;
    const int64_t oy = gen.randint(3) - 1, ox = gen.randint(3) - 1;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int64_t dy = std::abs(y - H / 2 - oy), dx = std::abs(x - W / 2 - ox);
        bool on = false;
        if (c == 0) on = dy <= 2 && dx <= 2;
        if (c == 1) on = std::max(dy, dx) == 3;
        if (c == 2) on = (dy <= 3 && dx == 0) || (dx <= 3 && dy == 0);
        px[(i * H + y) * W + x] = (on ? 0.9f : 0.f) + 0.1f * gen.next_float();
      }
  }
  data::ImageClassificationDataset ds;
  ds.name = "shapes";
  ds.images = Tensor::from_vector(px, {N, 1, H, W});
  ds.labels = Tensor::from_vector(labels, {N});
  ds.class_names = {"square", "ring", "plus"};
  return ds;
}

RunOptions tiny_options(int64_t H = 12, int64_t W = 12) {
  RunOptions o;
  o.quiet = true;
  o.dataset_provider = [H, W](data::Split s) { return shapes(s == data::Split::Train ? 16 : 6, s == data::Split::Train ? 1 : 2, H, W); };
  return o;
}

std::string temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("orbit_test_finetune_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

nlohmann::json tiny_config(const std::string& out_dir) {
  return {{"model", "resnet_small"}, {"dataset", "shapes"}, {"out_dir", out_dir}, {"epochs", 2}, {"batch_size", 8},
          {"lr", 0.003}, {"eval_groups", {"C4", "C8"}}, {"angle_step", 45}, {"eval_batch_size", 64}};
}

StateDict weights_of(const std::string& path) {
  auto m = create_model("resnet_small", {});
  Metadata meta;
  load_safetensors(path, &meta);
  ModelOptions mo;
  mo.num_classes = std::stoll(meta.at("num_classes"));
  m = create_model("resnet_small", mo);
  load_weights(path, *m);
  return m->state_dict();
}

void expect_same_weights(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) {
    const auto x = v.to(DType::F64).to_vector<double>(), y = b.at(k).to(DType::F64).to_vector<double>();
    ASSERT_EQ(x, y) << k;  // bit for bit
  }
}

}  // namespace

// The equivariant fine-tuning loop on the GPU end to end (the regularizer with a sampled C4 element,
// Adam, checkpoints, the orbit evaluation), against the same run on the CPU: the first epoch's losses
// agree to 1e-3 relative (float32 with other summation orders, through 2 steps of Adam), and both
// runs finish with their results and weights.
TEST(Finetune, TheRegularizedRunOnTheGpuMatchesTheCpu) {
#ifdef ORBIT_WITH_CUDA
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: the GPU run needs one";
#else
  GTEST_SKIP() << "a build without the CUDA backend: the GPU run needs one";
#endif
  const std::string dir = temp_dir("gpu");
  std::vector<nlohmann::json> histories;
  for (const char* device : {"cpu", "cuda"}) {
    nlohmann::json c = tiny_config(dir + "/" + device);
    c["device"] = device, c["lambda"] = 1.0, c["group"] = "C4", c["epochs"] = 2;
    const RunResult r = run_training(c, tiny_options());
    ASSERT_TRUE(r.completed) << device;
    EXPECT_TRUE(fs::exists(dir + "/" + device + "/model.safetensors")) << device;
    histories.push_back(r.results["history"]);
  }
  const double cpu_loss = histories[0][0]["loss"], gpu_loss = histories[1][0]["loss"];
  EXPECT_NEAR(gpu_loss, cpu_loss, 1e-3 * std::abs(cpu_loss));
  fs::remove_all(dir);
}

TEST(Finetune, ConfigErrorsBeforeAnyWork) {
  const std::string dir = temp_dir("errors");
  auto expect_bad = [&](nlohmann::json over, const std::vector<std::string>& parts, int64_t H = 12, int64_t W = 12) {
    nlohmann::json c = tiny_config(dir + "/run");
    for (auto& [k, v] : over.items()) c[k] = v;
    expect_error([&] { run_training(c, tiny_options(H, W)); }, parts);
    EXPECT_FALSE(fs::exists(dir + "/run/checkpoint.safetensors"));
  };
  expect_bad({{"group", "Q4"}}, {"group", "Q4", "C<n>"});
  expect_bad({{"eval_groups", {"C4", "X"}}}, {"eval_groups", "X"});
  expect_bad({{"eval_groups", "C4"}}, {"key \"eval_groups\": expected a list of strings, got \"C4\""});
  expect_bad({{"lambda", -1.0}}, {"lambda", "-1"});
  expect_bad({{"fraction", 0.0}}, {"fraction", "(0, 1]"});
  expect_bad({{"fraction", 1.5}}, {"fraction", "1.5", "(0, 1]"});
  expect_bad({{"reg_fraction", -0.5}}, {"reg_fraction", "-0.5", "(0, 1]"});
  expect_bad({{"reg_fraction", 0.0}}, {"reg_fraction", "(0, 1]"});
  expect_bad({{"test_fraction", 0.0}}, {"test_fraction", "(0, 1]"});
  expect_bad({{"angle_test_fraction", 0.0}}, {"angle_test_fraction", "(0, 1]"});
  expect_bad({{"weights", dir + "/missing.safetensors"}}, {"weights", "missing.safetensors", "does not exist"});
  expect_bad({{"freeze", {"layer1.", "layr2."}}}, {"run config: key \"freeze\"", "'layr2.' (did you mean \"layer2.\"?)", "\"layer4.\""});
  {  // an out_dir that cannot be a folder: a file is in the way
    write_text_file(dir + "/a_file", "x");
    nlohmann::json c = tiny_config(dir + "/a_file/run");
    expect_error([&] { run_training(c, tiny_options()); }, {"key \"out_dir\": cannot create the output folder", "a_file/run"});
    c["out_dir"] = dir + "/a_file";
    expect_error([&] { run_training(c, tiny_options()); }, {"key \"out_dir\": cannot create the output folder", "a_file\" ("});
    expect_error([&] { read_json_file(dir + "/none.json"); }, {"none.json (no such file)"});
  }
  expect_bad({{"group", "trivial"}, {"lambda", 1.0}}, {"\"lambda\": 1.0", "\"trivial\" (C1)", "only element is the identity"});
  {  // the same of a cross-validation's grid point, before any fold run
    nlohmann::json c = tiny_config(dir + "/sweep");
    c["group"] = "trivial";
    c["lambda_grid"] = {0.0, 1.0};
    expect_error([&] { cross_validate(c, tiny_options()); }, {"grid point lr", "lambda 1 (keys \"lr_grid\", \"lambda_grid\")", "only element is the identity"});
    EXPECT_FALSE(fs::exists(dir + "/sweep/cv"));
  }
  expect_bad({{"lamda", 1.0}}, {"unknown key \"lamda\" (did you mean \"lambda\"?)", "allowed keys: "});
  expect_bad({{"discrepancy", "symkl"}}, {"\"discrepancy\"", "got \"symkl\" (did you mean \"sym_kl\"?)"});
  expect_bad({{"model", "resnet_smal"}}, {"\"model\"", "(did you mean \"resnet_small\"?)"});
  expect_bad({{"classes", {1}}}, {"key \"classes\"", "1 class (ring)", "at least 2", "got [1] of shapes"});
  expect_bad({{"image_channels", 2}}, {"image_channels", "2", "1 (grey) or 3 (RGB)"});
  expect_bad({{"image_channels", 4}}, {"image_channels", "4"});
  expect_bad({{"image_size", -1}}, {"image_size", "-1"});
  expect_bad({{"discrepancy", "js"}}, {"discrepancy", "js", "sym_kl"});
  expect_bad({{"reference", "mean"}}, {"reference", "mean", "orbit_mean"});
  expect_bad({{"canonicalize", true}, {"equitune", true}}, {"canonicalize", "equitune"});
  expect_bad({{"canonicalize", true}, {"augment", "group"}}, {"canonicalize", "augment", "group"});
  expect_bad({{"canonicalize", true}, {"lambda", 1.0}}, {"canonicalize", "lambda"});
  expect_bad({{"canon_prior", -1.0}}, {"canon_prior", "-1"});
  expect_bad({{"device", "tpu"}}, {"device", "tpu", "cuda"});
#ifndef ORBIT_WITH_CUDA
  expect_bad({{"device", "cuda"}}, {"device", "not usable here", "no CUDA backend"});
#else
  if (cuda::device_count() == 0) expect_bad({{"device", "cuda"}}, {"device", "not usable here", "CUDA"});
#endif
  expect_bad({{"taps", {"layer2"}}}, {"taps", "lambda"});
  expect_bad({{"copy_task_weight", -1.0}}, {"copy_task_weight", "-1"});
  expect_bad({{"group", "trivial"}, {"copy_task_weight", 1.0}}, {"copy_task_weight", "(C1)", "no transformed copies"});
  expect_bad({{"canonicalize", true}, {"copy_task_weight", 1.0}}, {"canonicalize", "copy_task_weight"});
  // element_weights: one per non-identity element of the run's group (C4 here: r90, r180, r270).
  expect_bad({{"lambda", 1.0}, {"element_weights", {1.0, 3.0}}}, {"element_weights", "C4", "3: r90, r180, r270", "got 2"});
  expect_bad({{"lambda", 1.0}, {"element_weights", {0.0, 0.0, 0.0}}}, {"element_weights", "at least one"});
  expect_bad({{"lambda", 1.0}, {"element_weights", {1.0, -1.0, 1.0}}}, {"element_weights", "-1"});
  expect_bad({{"lambda", 1.0}, {"element_weights", {1.0, 2.0, 1.0}}, {"samples", 2}}, {"element_weights", "samples 2"});
  expect_bad({{"lambda", 1.0}, {"element_weights", {1.0, 2.0, 1.0}}, {"reference", "orbit_mean"}},
             {"element_weights", "upright", "orbit_mean"});
  expect_bad({{"taps", {"layer9"}}, {"lambda", 1.0}}, {"key \"taps\"", "layer9", "did you mean \"layer1\""});
  // C4 and D4 rotate by 90 degrees: non-square images are refused; C2 and flips are fine on them.
  expect_bad({{"group", "C4"}, {"eval_groups", nlohmann::json::array()}}, {"square", "C4", "12x10", "\"image_size\""}, 12, 10);
  expect_bad({{"group", "D4"}, {"eval_groups", nlohmann::json::array()}}, {"square", "D4"}, 12, 10);
  expect_bad({{"group", "C2"}, {"eval_groups", {"C8"}}}, {"eval_groups", "square", "C8"}, 12, 10);
  nlohmann::json ok = tiny_config(dir + "/ok");
  ok["group"] = "C2", ok["eval_groups"] = {"C2", "flips"}, ok["epochs"] = 1, ok["lambda"] = 1.0, ok["angle_step"] = 0;
  EXPECT_TRUE(run_training(ok, tiny_options(12, 10)).completed);
  fs::remove_all(dir);
}

TEST(Finetune, PretrainThenEveryMethod) {
  const std::string dir = temp_dir("methods");
  nlohmann::json pre = tiny_config(dir + "/pretrain");
  pre["augment"] = "rotation";
  pre["classes"] = {0, 1, 2};
  const RunResult p = run_training(pre, tiny_options());
  ASSERT_TRUE(p.completed);
  for (const char* f : {"config.json", "results.json", "history.json", "model.safetensors", "loss.svg", "angle.svg"})
    EXPECT_TRUE(fs::exists(dir + "/pretrain/" + f)) << f;
  const auto& m = p.results["metrics"];
  EXPECT_EQ(m["count"], 18);
  EXPECT_EQ(m["angles"].size(), 8u);
  EXPECT_TRUE(m["orbits"].contains("C4") && m["orbits"].contains("C8"));
  EXPECT_EQ(m["forward_passes_per_input"], 1);

  // Fine-tune on two of the classes (relabelled), with a new 2-class head, for every method.
  struct Method {
    const char* name;
    nlohmann::json set;
    int64_t passes;
  };
  const std::vector<Method> methods = {
      {"plain", nlohmann::json::object(), 1},
      {"augment", {{"augment", "group"}}, 1},
      {"equitune", {{"equitune", true}}, 4},
      {"ours", {{"lambda", 3.0}}, 1},
      {"ours_two_sided_l2", {{"lambda", 1.0}, {"stop_gradient", false}, {"discrepancy", "l2"}, {"samples", 0}}, 1},
      {"ours_taps_preserve", {{"lambda", 1.0}, {"taps", {"layer2"}}, {"preserve", true}, {"augment", "group"}}, 1},
      {"frozen", {{"freeze", {"conv1.", "bn1.", "layer1."}}}, 1},
      {"half_batch_quick_eval", {{"lambda", 1.0}, {"reg_fraction", 0.5}, {"angle_test_fraction", 0.5}}, 1},
      {"ours_orbit_mean", {{"lambda", 1.0}, {"reference", "orbit_mean"}, {"samples", 2}}, 1},
      {"ours_copies_task", {{"lambda", 1.0}, {"copy_task_weight", 1.0}}, 1},
      {"canonicalize", {{"canonicalize", true}, {"canon_prior", 2.0}}, 1},
  };
  for (const Method& me : methods) {
    nlohmann::json c = tiny_config(dir + "/" + me.name);
    c["weights"] = dir + "/pretrain/model.safetensors";
    c["classes"] = {2, 0};
    c["fraction"] = 0.5;
    for (auto& [k, v] : me.set.items()) c[k] = v;
    const RunResult r = run_training(c, tiny_options());
    ASSERT_TRUE(r.completed) << me.name;
    EXPECT_EQ(r.results["classes"], nlohmann::json({"plus", "square"})) << me.name;
    EXPECT_EQ(r.results["train_images"], 16) << me.name;  // half of 2 x 16
    EXPECT_EQ(r.results["metrics"]["count"], 12) << me.name;
    EXPECT_EQ(r.results["metrics"]["forward_passes_per_input"], me.passes) << me.name;
    if (me.set.contains("lambda")) EXPECT_GT(r.results["history"][0]["penalty"].get<double>(), 0.0) << me.name;
    if (me.set.contains("preserve")) EXPECT_TRUE(r.results.contains("preserve_baseline"));
    if (std::string(me.name) == "equitune" || std::string(me.name) == "canonicalize") {
      EXPECT_EQ(r.results["metrics"]["orbits"]["C4"]["consistency"], 1.0) << me.name;
      EXPECT_LT(r.results["metrics"]["orbits"]["C4"]["equivariance_error"].get<double>(), 1e-5) << me.name;
    }
    if (std::string(me.name) == "canonicalize") {
      // The prior is the penalty; the scorer is saved beside the model, and the network loaded from the
      // saved weights (with it) is invariant; without the scorer's file, loading names the file.
      EXPECT_GT(r.results["history"][0]["penalty"].get<double>(), 0.0);
      const std::string rd = dir + "/canonicalize";
      ASSERT_TRUE(fs::exists(rd + "/canonicalizer.safetensors"));
      const auto net = load_run_network(r.results["config"], rd + "/model.safetensors");
      NoGradGuard ng;
      const Tensor x = Tensor::rand({3, 1, 12, 12}, nullptr);
      const auto y = (*net)(x).to_vector<float>(), yr = (*net)(rot90(x, 1, {2, 3})).to_vector<float>();
      EXPECT_EQ(y, yr);
      fs::rename(rd + "/canonicalizer.safetensors", rd + "/scorer.away");
      expect_error([&] { load_run_network(r.results["config"], rd + "/model.safetensors"); },
                   {"canonicalizer.safetensors", "do not exist"});
    }
    // The saved model has the new 2-class head and the pretrained normalization.
    EXPECT_EQ(r.results["normalization"], p.results["normalization"]) << me.name;
    EXPECT_EQ(weights_of(dir + "/" + me.name + "/model.safetensors").at("fc.weight").size(0), 2) << me.name;
  }
  // Frozen parts did not move.
  const StateDict before = weights_of(dir + "/pretrain/model.safetensors");
  const StateDict after = weights_of(dir + "/frozen/model.safetensors");
  EXPECT_EQ(before.at("layer1.0.conv1.weight").to_vector<float>(), after.at("layer1.0.conv1.weight").to_vector<float>());
  EXPECT_NE(before.at("layer3.0.conv1.weight").to_vector<float>(), after.at("layer3.0.conv1.weight").to_vector<float>());

  // Re-running the same config gives the same metrics (determinism).
  nlohmann::json c = tiny_config(dir + "/ours_again");
  c["weights"] = dir + "/pretrain/model.safetensors";
  c["classes"] = {2, 0};
  c["fraction"] = 0.5;
  c["lambda"] = 3.0;
  const RunResult again = run_training(c, tiny_options());
  const nlohmann::json first = read_json_file(dir + "/ours/results.json");
  EXPECT_EQ(again.results["metrics"], first["metrics"]);
  fs::remove_all(dir);
}

// copy_task_weight adds the task loss of the regularizer's transformed copies, each with its image's
// label. One SGD step on one batch of every training image, from the pretrained model with its head kept,
// over the whole C4 orbit (so the copies are known: r90, r180, r270 of every image) and with lambda 0:
// the saved weights are w - lr * grad(CE(f(x), y) + w_c * CE(f(g x), y)), the gradient computed here on
// the same network through the same joint batch (batch norm's statistics are the joint batch's). The
// step without the copies' term lands elsewhere (by more than the tolerance), so the test sees the term.
// Tolerance 2e-5 absolute on weights of order 0.1: float32 with the batch in another order.
TEST(Finetune, CopyTaskWeightAddsTheCopiesLoss) {
  const std::string dir = temp_dir("copies");
  nlohmann::json pre = tiny_config(dir + "/pretrain");
  pre["epochs"] = 1;
  ASSERT_TRUE(run_training(pre, tiny_options()).completed);
  nlohmann::json c = tiny_config(dir + "/ft");
  c["weights"] = dir + "/pretrain/model.safetensors";
  c["reset_head"] = false;
  c["epochs"] = 1, c["batch_size"] = 48, c["optimizer"] = "sgd", c["momentum"] = 0.0, c["lr"] = 0.1;
  c["samples"] = 0, c["copy_task_weight"] = 0.5, c["angle_step"] = 0;
  const RunResult r = run_training(c, tiny_options());
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(r.results["history"][0]["penalty"].get<double>(), 0.0);  // lambda 0: no penalty in the loss
  const StateDict trained = weights_of(dir + "/ft/model.safetensors");

  const data::ImageClassificationDataset train = shapes(16, 1);
  std::vector<Tensor> copies = {train.images};
  for (int64_t k = 1; k <= 3; ++k) copies.push_back(rot90(train.images, k, {2, 3}));
  const Tensor copy_labels = cat({train.labels, train.labels, train.labels}, 0);  // r90, r180, r270 keep the label
  auto expected_step = [&](double copy_weight) {
    const auto net = load_run_network(pre, dir + "/pretrain/model.safetensors");
    net->train();
    const Tensor logits = (*net)(cat(copies, 0));
    const int64_t N = train.size();
    Tensor loss = cross_entropy(logits.narrow(0, 0, N), train.labels);
    if (copy_weight > 0)
      loss = add(loss, mul(cross_entropy(logits.narrow(0, N, 3 * N), copy_labels), copy_weight));
    loss.backward();
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, p] : net->named_parameters()) {
      std::vector<float> w = p.to_vector<float>();
      const std::vector<float> g = p.grad().to_vector<float>();
      for (size_t i = 0; i < w.size(); ++i) w[i] -= 0.1f * g[i];
      out[name] = w;
    }
    return out;
  };
  auto max_diff = [&](const std::map<std::string, std::vector<float>>& want) {
    double worst = 0;
    size_t compared = 0;
    for (const auto& [name, w] : want) {
      // The network may name the model's parameters under a prefix (behind its normalization).
      std::string key = name;
      while (!trained.contains(key) && key.find('.') != std::string::npos) key = key.substr(key.find('.') + 1);
      if (!trained.contains(key)) continue;
      const std::vector<float> got = trained.at(key).to_vector<float>();
      EXPECT_EQ(got.size(), w.size()) << key;
      for (size_t i = 0; i < std::min(got.size(), w.size()); ++i) worst = std::max(worst, double(std::fabs(got[i] - w[i])));
      ++compared;
    }
    EXPECT_GT(compared, 20u);  // conv, batch norm and fc parameters
    return worst;
  };
  EXPECT_LT(max_diff(expected_step(0.5)), 2e-5);
  EXPECT_GT(max_diff(expected_step(0.0)), 1e-3);
  fs::remove_all(dir);
}

TEST(Finetune, ResumeGivesTheSameWeights) {
  const std::string dir = temp_dir("resume");
  nlohmann::json c = tiny_config(dir + "/full");
  c["epochs"] = 3;
  c["lambda"] = 1.0;
  c["augment"] = "group";
  c["dropout"] = 0.2;
  ASSERT_TRUE(run_training(c, tiny_options()).completed);
  c["out_dir"] = dir + "/split";
  RunOptions o = tiny_options();
  o.stop_after_epoch = 1;
  EXPECT_FALSE(run_training(c, o).completed);
  EXPECT_FALSE(fs::exists(dir + "/split/model.safetensors"));
  o.stop_after_epoch = 0;
  const RunResult r = run_training(c, o);
  ASSERT_TRUE(r.completed);
  expect_same_weights(weights_of(dir + "/full/model.safetensors"), weights_of(dir + "/split/model.safetensors"));
  EXPECT_EQ(read_json_file(dir + "/full/results.json")["metrics"], r.results["metrics"]);
  // A stop asked for (Ctrl-C, here without a signal) ends the run at its next batch, naming the
  // checkpoint it keeps; the same run then resumes to the same weights.
  c["out_dir"] = dir + "/stopped";
  request_interrupt();
  expect_error([&] { run_training(c, o); }, {"interrupted in epoch 1/3 of " + dir + "/stopped", "no epoch had finished"});
  clear_interrupt();
  o.stop_after_epoch = 1;
  EXPECT_FALSE(run_training(c, o).completed);
  o.stop_after_epoch = 0;
  request_interrupt();
  try {
    run_training(c, o);
    ADD_FAILURE() << "the run did not stop";
  } catch (const Interrupted& e) {
    EXPECT_NE(std::string(e.what()).find("interrupted in epoch 2/3 of " + dir + "/stopped; its checkpoint after epoch 1 is kept (" +
                                         dir + "/stopped/checkpoint.safetensors); the same command resumes from it"),
              std::string::npos) << e.what();
  }
  clear_interrupt();
  EXPECT_FALSE(fs::exists(dir + "/stopped/model.safetensors"));
  ASSERT_TRUE(run_training(c, o).completed);
  expect_same_weights(weights_of(dir + "/full/model.safetensors"), weights_of(dir + "/stopped/model.safetensors"));
  // A folder a run is writing into is locked: a second run there stops before training, naming the
  // first one's pid (this process's, holding the lock as another run would); once released, it runs.
  c["out_dir"] = dir + "/locked";
  fs::create_directories(dir + "/locked");
  {
    const RunDirLock held(dir + "/locked", "test");
    expect_error([&] { run_training(c, o); }, {"run config: key \"out_dir\": " + dir + "/locked is in use by another orbit "
                                               "process (pid " + std::to_string(::getpid()) + ")"});
    EXPECT_FALSE(fs::exists(dir + "/locked/checkpoint.safetensors"));
  }
  o.stop_after_epoch = 1;
  EXPECT_FALSE(run_training(c, o).completed);
  // Where no lock can be taken (here a folder in the lock file's place), the run goes on unguarded.
  c["out_dir"] = dir + "/unlockable";
  fs::create_directories(dir + "/unlockable/.orbit.lock");
  EXPECT_FALSE(run_training(c, o).completed);
  EXPECT_TRUE(fs::exists(dir + "/unlockable/checkpoint.safetensors"));
  o.stop_after_epoch = 0;
  // A checkpoint that cannot be written (the process's file-size limit here, as a full disk) stops the
  // run, naming the epoch whose training is lost and the earlier checkpoint kept; once the limit is
  // lifted the same run resumes from that checkpoint to the same weights.
  c["out_dir"] = dir + "/full_disk";
  o.stop_after_epoch = 1;
  EXPECT_FALSE(run_training(c, o).completed);
  o.stop_after_epoch = 0;
  {
    struct rlimit saved {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
    auto* const old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = saved;
    small.rlim_cur = 1 << 20;  // the checkpoint (weights and Adam's moments) is larger
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    std::string message;
    try {
      run_training(c, o);
    } catch (const Error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    for (const std::string part : {"epoch 2 of " + dir + "/full_disk is trained, but its checkpoint was not saved: ",
                                   std::string("File too large; the earlier file is kept as it was; once the cause is mended, the "
                                               "same command resumes from the checkpoint after epoch 1")})
      EXPECT_NE(message.find(part), std::string::npos) << part << " not in: " << message;
  }
  ASSERT_TRUE(run_training(c, o).completed);
  expect_same_weights(weights_of(dir + "/full/model.safetensors"), weights_of(dir + "/full_disk/model.safetensors"));
  // With canonicalization the scorer is part of the checkpoint: a split run ends the same.
  nlohmann::json cc = tiny_config(dir + "/canon_full");
  cc["epochs"] = 2;
  cc["canonicalize"] = true;
  ASSERT_TRUE(run_training(cc, tiny_options()).completed);
  cc["out_dir"] = dir + "/canon_split";
  o.stop_after_epoch = 1;
  EXPECT_FALSE(run_training(cc, o).completed);
  o.stop_after_epoch = 0;
  const RunResult rc = run_training(cc, o);
  ASSERT_TRUE(rc.completed);
  expect_same_weights(weights_of(dir + "/canon_full/model.safetensors"), weights_of(dir + "/canon_split/model.safetensors"));
  EXPECT_EQ(read_json_file(dir + "/canon_full/results.json")["metrics"], rc.results["metrics"]);
  const nlohmann::json hist = read_json_file(dir + "/canon_full/results.json")["history"];
  for (size_t e = 0; e < 2; ++e)
    EXPECT_EQ(hist[e]["penalty"], rc.results["history"][e]["penalty"]) << "epoch " << e + 1;
  // A changed config refuses to resume the old checkpoint.
  o.stop_after_epoch = 1;
  c["out_dir"] = dir + "/changed";
  run_training(c, o);
  c["lambda"] = 2.0;
  expect_error([&] { run_training(c, tiny_options()); }, {"different config", "checkpoint.safetensors", "lambda: saved 1.0, current 2.0"});
  fs::remove_all(dir);
}

TEST(Finetune, CrossValidationChoosesFromTheGrid) {
  const std::string dir = temp_dir("cv");
  nlohmann::json c = tiny_config(dir + "/sweep");
  c["epochs"] = 1;
  c["cv_folds"] = 2;
  c["lambda_grid"] = {0.0, 1.0};
  c["angle_step"] = 0;
  // Two processes' shares of the fold runs first (here one after the other): shard 0 runs the fold
  // runs 0 and 2, shard 1 the runs 1 and 3; the sweep then reuses all four.
  for (int64_t shard = 0; shard < 2; ++shard) {
    RunOptions so = tiny_options();
    so.shard_index = shard;
    so.shard_count = 2;
    EXPECT_TRUE(cross_validate(c, so).contains("partial"));
    EXPECT_TRUE(fs::exists(dir + "/sweep/cv/lr0.003_lambda1/fold1/results.json"));
    EXPECT_EQ(fs::exists(dir + "/sweep/cv/lr0.003_lambda1/fold2/results.json"), shard == 1);
  }
  const auto stamp = fs::last_write_time(dir + "/sweep/cv/lr0.003_lambda1/fold2/results.json");
  const RunResult r = run_sweep(c, tiny_options());
  EXPECT_EQ(fs::last_write_time(dir + "/sweep/cv/lr0.003_lambda1/fold2/results.json"), stamp) << "reused, not rerun";
  ASSERT_TRUE(r.completed);
  const nlohmann::json cv = read_json_file(dir + "/sweep/cv.json");
  ASSERT_EQ(cv["points"].size(), 2u);
  double best = -1, best_lambda = -1;
  for (const auto& p : cv["points"]) {
    ASSERT_EQ(p["scores"].size(), 2u);
    EXPECT_NEAR(p["mean"].get<double>(), (p["scores"][0].get<double>() + p["scores"][1].get<double>()) / 2, 1e-12);
    if (p["mean"].get<double>() > best) best = p["mean"], best_lambda = p["lambda"];
  }
  EXPECT_EQ(cv["best"]["lambda"].get<double>(), best_lambda);
  EXPECT_EQ(r.results["config"]["lambda"].get<double>(), best_lambda);
  EXPECT_EQ(r.results["metrics"]["count"], 18);  // the final run is tested on the test set
  EXPECT_TRUE(fs::exists(dir + "/sweep/cv.svg"));
  // Each fold validated on its own half of the 48 training images.
  const nlohmann::json f1 = read_json_file(dir + "/sweep/cv/lr0.003_lambda0/fold1/results.json");
  EXPECT_EQ(f1["train_images"].get<int64_t>() + f1["metrics"]["count"].get<int64_t>(), 48);
  // The rule and the grid only choose among runs: another rule, another metric and a grid that adds a
  // point reuse every fold run made, and run only the new point's folds.
  c["cv_rule"] = "one_se";
  c["cv_metric"] = "consistency";
  c["lambda_grid"] = {0.0, 1.0, 2.0};
  const nlohmann::json cv2 = cross_validate(c, tiny_options());
  EXPECT_EQ(fs::last_write_time(dir + "/sweep/cv/lr0.003_lambda1/fold2/results.json"), stamp) << "reused, not rerun";
  EXPECT_TRUE(fs::exists(dir + "/sweep/cv/lr0.003_lambda2/fold2/results.json"));
  ASSERT_EQ(cv2["points"].size(), 3u);
  EXPECT_EQ(cv2["best"]["rule"], "one_se");
  EXPECT_EQ(cv2["points"][choose_cv_point(cv2["points"], "one_se")]["lambda"], cv2["best"]["lambda"]);
  // A group named by an alias: "flips" is D1, the name results.json keys its metrics by; the
  // cross-validation reads them under that name.
  c["group"] = "flips";
  c["lambda_grid"] = {1.0};
  c["out_dir"] = dir + "/flips";
  const nlohmann::json cv3 = cross_validate(c, tiny_options());
  ASSERT_EQ(cv3["points"].size(), 1u);
  EXPECT_EQ(cv3["points"][0]["scores"].size(), 2u);
  const nlohmann::json fold = read_json_file(dir + "/flips/cv/lr0.003_lambda1/fold1/results.json");
  ASSERT_TRUE(fold["metrics"]["orbits"].contains("D1"));
  EXPECT_EQ(cv3["points"][0]["scores"][0], fold["metrics"]["orbits"]["D1"]["consistency"]);
  EXPECT_EQ(&orbit_metrics(fold["metrics"], "flips"), &fold["metrics"]["orbits"]["D1"]);
  expect_error([&] { orbit_metrics(fold["metrics"], "C4"); }, {"group \"C4\" (C4)", "they have: D1", "\"eval_groups\""});
  // Folds with fewer validation images than classes are warned about (runs that are not quiet): 2
  // images per class (fraction 1/8 of 16) in 4 folds leave folds of 1 or 2 images for 3 classes; 2
  // folds of all the images do not.
  for (const auto& [fraction, folds, warned] : std::vector<std::tuple<double, int, bool>>{{0.125, 4, true}, {1.0, 2, false}}) {
    nlohmann::json few = tiny_config(dir + "/few" + std::to_string(folds));
    few["epochs"] = 1;
    few["angle_step"] = 0;
    few["eval_groups"] = {"C4"};
    few["lambda_grid"] = {1.0};
    few["cv_folds"] = folds;
    few["fraction"] = fraction;
    RunOptions loud = tiny_options();
    loud.quiet = false;
    ::testing::internal::CaptureStderr();
    cross_validate(few, loud);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(err.find("warning: cross-validation: fold") != std::string::npos, warned) << err;
    if (warned) EXPECT_NE(err.find("image, fewer than the task's 3 classes"), std::string::npos) << err;
  }
  fs::remove_all(dir);
}

TEST(Finetune, CrossValidationRules) {
  // Five folds; the standard error of a point is its std / sqrt(5).
  auto point = [](double lambda, double lr, double mean, double std) {
    return nlohmann::json{{"lambda", lambda}, {"lr", lr}, {"mean", mean}, {"std", std}, {"scores", {0, 0, 0, 0, 0}}};
  };
  // The validation cannot tell lambda 1 from 3 (0.0001 apart, standard error 0.0045); lambda 10 is
  // 0.013 below.
  nlohmann::json pts = {point(1, 1e-3, 0.9272, 0.0100), point(3, 1e-3, 0.9271, 0.0106), point(10, 1e-3, 0.9139, 0.0129)};
  EXPECT_EQ(choose_cv_point(pts, "best"), 0u);
  EXPECT_EQ(choose_cv_point(pts, "one_se"), 1u);
  EXPECT_NEAR(cv_threshold(pts), 0.9272 - 0.0100 / std::sqrt(5.0), 1e-12);
  // A wider spread of the best point's folds admits lambda 10 as well.
  pts[0]["std"] = 0.04;
  EXPECT_EQ(choose_cv_point(pts, "one_se"), 2u);
  // When the best point has the largest lambda, both rules keep it.
  pts = {point(0, 1e-3, 0.80, 0.01), point(1, 1e-3, 0.85, 0.01)};
  EXPECT_EQ(choose_cv_point(pts, "best"), 1u);
  EXPECT_EQ(choose_cv_point(pts, "one_se"), 1u);
  // Equal lambdas at two learning rates: the higher mean of the admitted ones.
  pts = {point(1, 1e-3, 0.90, 0.02), point(3, 1e-3, 0.895, 0.02), point(3, 1e-2, 0.897, 0.02)};
  EXPECT_EQ(choose_cv_point(pts, "one_se"), 2u);
  // Equal means: "best" keeps the first.
  pts = {point(1, 1e-3, 0.9, 0.0), point(3, 1e-3, 0.9, 0.0)};
  EXPECT_EQ(choose_cv_point(pts, "best"), 0u);
  EXPECT_EQ(choose_cv_point(pts, "one_se"), 1u);
  expect_error([&] { choose_cv_point(pts, "median"); }, {"median", "one_se"});
  expect_error([&] { choose_cv_point(nlohmann::json::array(), "best"); }, {"no grid points"});
}

// The report's image grid shows the largest group of rotations and reflections among the evaluation
// groups; translations only when every group shifts the image.
TEST(Finetune, ReportGridGroupPrefersRotationsToShifts) {
  EXPECT_EQ(report_grid_group({"C4", "C8"}), "C8");
  EXPECT_EQ(report_grid_group({"C4", "D4", "T4"}), "D4");  // T4 has 16 elements, D4 8
  EXPECT_EQ(report_grid_group({"T4", "C4"}), "C4");
  EXPECT_EQ(report_grid_group({"T2", "T4xC4"}), "T4xC4");
  EXPECT_EQ(report_grid_group({"C8", "D4"}), "C8");  // the first of equals
  expect_error([] { report_grid_group({}); }, {"no evaluation groups"});
}

// The one-line summary of a run's test metrics: every evaluation group's orbit metrics, the flips
// group under both of its names.
TEST(Finetune, MetricsSummaryNamesEveryGroup) {
  const nlohmann::json r = {{"metrics",
                             {{"accuracy", 0.9512},
                              {"forward_passes_per_input", 8},
                              {"orbits",
                               {{"C8", {{"orbit_accuracy", 0.9333}, {"consistency", 0.875}, {"equivariance_error", 0.25}}},
                                {"D1", {{"orbit_accuracy", 0.5}, {"consistency", 0.125}, {"equivariance_error", 1.5}}}}}}}};
  EXPECT_EQ(summarize_metrics(r),
            "accuracy 95.12% | C8: orbit 93.33%, consistency 87.50%, error 0.2500 | D1 (flips): orbit 50.00%, "
            "consistency 12.50%, error 1.5000 | 8 forward pass(es) per input");
}

TEST(Finetune, StudyOnAnImageFolderAndKilledCliResumes) {
  // An image-folder dataset on disk, so the CLI can read it.
  const std::string dir = temp_dir("study");
  for (const auto& [split, n, seed] : std::vector<std::tuple<std::string, int64_t, uint64_t>>{{"train", 16, 1}, {"test", 6, 2}}) {
    const auto ds = shapes(n, seed);
    const auto labels = ds.labels.to_vector<int64_t>();
    for (int64_t i = 0; i < ds.size(); ++i) {
      const std::string cdir = dir + "/data/" + split + "/" + ds.class_names[labels[i]];
      fs::create_directories(cdir);
      char name[32];
      std::snprintf(name, sizeof name, "/%03lld.png", static_cast<long long>(i));
      // Image 0 of each split as RGB, image 1 at 16x16: the folder reads only with "image_channels": 1
      // and "image_size": 12.
      Tensor img = ds.images.select(0, i);
      if (i == 0) img = cat({img, img, img}, 0);
      if (i == 1) img = data::resize_bilinear(img.contiguous(), 16, 16);
      data::write_png(cdir + name, img);
    }
  }
  const std::string dataset = "folder:" + dir + "/data";
  nlohmann::json base = tiny_config("");
  base.erase("out_dir");
  base["dataset"] = dataset;
  {
    nlohmann::json as_stored = base;
    as_stored["out_dir"] = dir + "/as_stored";
    expect_error([&] { run_training(as_stored, RunOptions{}); }, {"ring/001.png", "[1, 16, 16]", "[1, 12, 12]", "\"image_channels\"", "\"image_size\""});
    EXPECT_FALSE(fs::exists(dir + "/as_stored/checkpoint.safetensors"));
  }
  base["image_channels"] = 1;
  base["image_size"] = 12;
  nlohmann::json pre = base;
  pre["augment"] = "rotation";
  nlohmann::json study = {{"name", "tiny study"},
                          {"out_dir", dir + "/study"},
                          {"pretrain", pre},
                          {"finetune", base},
                          {"regimes", {{{"name", "50%"}, {"fraction", 0.5}, {"set", {{"epochs", 1}}}}}},
                          {"methods", {{{"name", "plain"}}, {{"name", "ours"}, {"set", {{"lambda_grid", {1.0, 3.0}}, {"cv_folds", 2}, {"epochs", 1}}}, {"cv", true}}}},
                          {"seeds", {0, 1}},
                          {"grid_images", 2}};
  StudyOptions so;
  so.quiet = true;
  const nlohmann::json summary = run_study(study, so);
  const auto& ours = summary["regimes"]["50%"]["ours"];
  EXPECT_EQ(ours["seeds"], 2);
  EXPECT_TRUE(ours["lambda"] == 1.0 || ours["lambda"] == 3.0);
  for (const char* f : {"report.md", "summary.json", "50pct/angle.svg", "50pct/grid.svg", "50pct/ours/cv.svg"})
    EXPECT_TRUE(fs::exists(dir + "/study/" + f)) << f;
  const std::string text = read_file_bytes(dir + "/study/report.md");
  EXPECT_NE(text.find("| plain |"), std::string::npos);
  EXPECT_NE(text.find("(cv)"), std::string::npos);
  // The accuracy of each element of C8 (the largest evaluation group), per seed: their mean over the
  // eight elements is the seed's C8 orbit accuracy.
  EXPECT_NE(text.find("each element of C8, in %"), std::string::npos) << text;
  EXPECT_NE(text.find("| method | e | r45 | r90 | r135 | r180 | r225 | r270 | r315 |"), std::string::npos) << text;
  ASSERT_EQ(ours["element_accuracy"]["group"], "C8");
  const auto& elements = ours["element_accuracy"]["elements"];
  ASSERT_EQ(elements.size(), 8u);
  for (size_t s = 0; s < 2; ++s) {
    double mean = 0;
    for (const auto& [name, acc] : elements.items()) mean += acc.at(s).get<double>() / 8;
    EXPECT_NEAR(mean, ours["orbit_accuracy"]["C8"][s].get<double>(), 1e-9) << "seed index " << s;
  }
  // `orbit evaluate` of a run's weights reproduces the run's own test metrics.
  {
    const std::string run_dir = dir + "/study/50pct/plain/seed1";
    const nlohmann::json res = read_json_file(run_dir + "/results.json");
    const nlohmann::json ev = evaluate_weights(res["config"], run_dir + "/model.safetensors", data::Split::Test, true);
    EXPECT_EQ(ev["metrics"], res["metrics"]);
    EXPECT_EQ(ev["classes"], res["classes"]);
    // The same weights on the classes in another order: the head would answer for other classes.
    {
      nlohmann::json reordered = res["config"];
      reordered["classes"] = {2, 1, 0};
      expect_error([&] { evaluate_weights(reordered, run_dir + "/model.safetensors", data::Split::Test, true); },
                   {"model.safetensors", "[\"plus\",\"ring\",\"square\"]", "[\"square\",\"ring\",\"plus\"]", "reset_head"});
    }
    // The network of a run trained on the GPU loads on the host (the report draws its predictions).
    {
      nlohmann::json gpu_config = res["config"];
      gpu_config["device"] = "cuda";
      const auto net = load_run_network(gpu_config, run_dir + "/model.safetensors");
      EXPECT_TRUE(net->parameters().front().device().is_cpu());
    }
    // The regime's keys override the study's finetune keys (2 epochs there, 1 in the regime).
    EXPECT_EQ(res["config"]["epochs"], 1);
    EXPECT_EQ(res["history"].size(), 1u);
    // A method with a seed not finished yet is reported with the seeds it has, and says so.
    fs::rename(run_dir + "/results.json", run_dir + "/results.json.away");
    write_study_report(study);
    const std::string ptext = read_file_bytes(dir + "/study/report.md");
    EXPECT_NE(ptext.find("| plain (1 of 2 seeds) |"), std::string::npos) << ptext;
    EXPECT_EQ(ptext.find("| ours (1 of 2 seeds) |"), std::string::npos);
    // A stop asked for (Ctrl-C) during the study names the run and says the study goes on from its
    // finished runs; this run has its last epoch's checkpoint, so it was stopped in its evaluation.
    request_interrupt();
    expect_error([&] { run_study(study, so); },
                 {"interrupted while evaluating on folder:", "after the last epoch of " + run_dir,
                  "the same command resumes from it, evaluating without training again",
                  ". The study keeps every finished run: the same command goes on"});
    clear_interrupt();
    EXPECT_FALSE(fs::exists(run_dir + "/results.json"));
    fs::rename(run_dir + "/results.json.away", run_dir + "/results.json");
    // Results written before a key joined the schema still count as finished when the key's default
    // is what the config asks for; a changed value does not.
    nlohmann::json older = res;
    older["config"].erase("canon_prior");
    write_json_file(run_dir + "/results.json", older);
    EXPECT_TRUE(finished_results(res["config"]).has_value());
    nlohmann::json other = res["config"];
    other["canon_prior"] = 2.0;
    EXPECT_FALSE(finished_results(other).has_value());
    write_json_file(run_dir + "/results.json", res);
    // A seed run of a lambda the cross-validation no longer chooses (here: a changed grid or rule) is
    // named and left out of the means, not averaged in.
    const std::string ours_path = dir + "/study/50pct/ours/seed0/results.json";
    const nlohmann::json ours_res = read_json_file(ours_path);
    nlohmann::json stale = ours_res;
    stale["config"]["lambda"] = 7.0;
    stale["metrics"]["accuracy"] = 0.0;
    write_json_file(ours_path, stale);
    write_study_report(study);
    const std::string stext = read_file_bytes(dir + "/study/report.md");
    EXPECT_NE(stext.find("| ours (1 of 2 seeds) (1 run of another config ignored) |"), std::string::npos) << stext;
    // The image grid shows the first seed's model only when it is of the planned config.
    const std::string grid_path = dir + "/study/50pct/grid.svg";
    const std::string gtext = read_file_bytes(grid_path);
    EXPECT_NE(gtext.find("plain · "), std::string::npos);
    EXPECT_EQ(gtext.find("ours · "), std::string::npos);
    write_json_file(ours_path, ours_res);
    // With every first seed finished and its weights here, the grid is drawn with both methods.
    write_study_report(study);
    const std::string both = read_file_bytes(grid_path);
    EXPECT_NE(both.find("plain · "), std::string::npos);
    EXPECT_NE(both.find("ours · "), std::string::npos);
    // A finished method whose weight file is not here (a clone holds only the weights of the runs it
    // made): the grid already there is kept as it is, not redrawn with the other method alone ...
    const std::string plain_weights = dir + "/study/50pct/plain/seed0/model.safetensors";
    fs::rename(plain_weights, plain_weights + ".away");
    write_study_report(study);
    EXPECT_TRUE(read_file_bytes(grid_path) == both) << "the grid was redrawn without the method whose weights are away";
    // ... and without a grid there, one is drawn from the methods whose weights are here.
    fs::remove(grid_path);
    write_study_report(study);
    const std::string ours_only = read_file_bytes(grid_path);
    EXPECT_EQ(ours_only.find("plain · "), std::string::npos);
    EXPECT_NE(ours_only.find("ours · "), std::string::npos);
    fs::rename(plain_weights + ".away", plain_weights);
  }
  // "cv" naming the regimes to cross-validate in: here the study's only one, so the same plan and the
  // same report as "cv": true.
  {
    nlohmann::json listed = study;
    listed["methods"][1]["cv"] = {"50%"};
    const nlohmann::json again = write_study_report(listed);
    EXPECT_EQ(again["regimes"]["50%"]["ours"]["cv"], true);
    EXPECT_EQ(again["regimes"], summary["regimes"]);
    write_study_report(study);
  }
  // Only the named methods run: a seed of "plain" whose results are gone runs again (to the same
  // metrics), one of "ours" does not; an unknown name is refused, naming the study's methods.
  {
    StudyOptions only = so;
    only.methods = {"plain"};
    const std::string plain1 = dir + "/study/50pct/plain/seed1/results.json";
    const std::string ours1 = dir + "/study/50pct/ours/seed1/results.json";
    const nlohmann::json plain_before = read_json_file(plain1);
    // Everything finished: nothing to run, and the cross-validation's choice is the summary's.
    EXPECT_NE(read_file_bytes(dir + "/study/report.md").find("Cross-validation of λ for ours"), std::string::npos);
    const nlohmann::json all = study_status(study, so);
    EXPECT_EQ(all["pretraining"], "finished");
    EXPECT_EQ(all["to_run"], nlohmann::json({{"pretraining", false}, {"cv_fold_runs", 0}, {"seed_runs", 0}, {"methods_waiting_for_cv", 0}}));
    ASSERT_EQ(all["runs"].size(), 2u);
    EXPECT_EQ(all["runs"][1]["cv"], nlohmann::json({{"fold_runs", 4}, {"finished", 4}, {"lambda", summary["regimes"]["50%"]["ours"]["lambda"]}}));
    fs::rename(ours1, ours1 + ".away");
    fs::remove(plain1);
    // The plan of the selection: one seed of "plain" to run; "ours" is not selected.
    const nlohmann::json st = study_status(study, only);
    ASSERT_EQ(st["runs"].size(), 1u);
    EXPECT_EQ(st["runs"][0]["seeds"], nlohmann::json({{"finished", 1}, {"other_config", 0}, {"after_cv", false}}));
    EXPECT_EQ(st["to_run"]["seed_runs"], 1);
    EXPECT_NE(format_study_status(st).find("to run: 0 cv fold runs, 1 seed runs"), std::string::npos) << format_study_status(st);
    // A grid with a lambda more: its fold runs are to run, and the seeds wait for the choice.
    {
      nlohmann::json wider = study;
      wider["methods"][1]["set"]["lambda_grid"] = {1.0, 3.0, 10.0};
      // "ours" waits for its cross-validation to choose, with these fold runs (of them finished, to run).
      const auto expect_waiting = [&](const nlohmann::json& config, int64_t fold_runs, int64_t finished) {
        const nlohmann::json st = study_status(config, so);
        EXPECT_EQ(st["runs"][1]["cv"], nlohmann::json({{"fold_runs", fold_runs}, {"finished", finished}}));
        EXPECT_EQ(st["runs"][1]["seeds"]["after_cv"], true);
        EXPECT_EQ(st["to_run"]["cv_fold_runs"], fold_runs - finished);
        EXPECT_EQ(st["to_run"]["methods_waiting_for_cv"], 1);
      };
      expect_waiting(wider, 6, 4);
      // The report does not take the choice of the cv.json of the older grid: the seed of "ours" here
      // (the other one is away) is named as of another config, not averaged in.
      write_study_report(wider);
      const std::string wtext = read_file_bytes(dir + "/study/report.md");
      EXPECT_NE(wtext.find("| ours (1 run of another config ignored) | (not run) |"), std::string::npos) << wtext;
      EXPECT_EQ(wtext.find("Cross-validation of λ for ours"), std::string::npos) << wtext;
      // A grid with a lambda less: every fold run it needs is finished, yet the recorded choice is of
      // the other grid, so the seeds still wait for the study to choose again.
      nlohmann::json narrower = study;
      narrower["methods"][1]["set"]["lambda_grid"] = {3.0};
      expect_waiting(narrower, 2, 2);
      write_study_report(study);
    }
    run_study(study, only);
    ASSERT_TRUE(fs::exists(plain1));
    EXPECT_FALSE(fs::exists(ours1));
    EXPECT_EQ(read_json_file(plain1)["metrics"], plain_before["metrics"]);
    fs::rename(ours1 + ".away", ours1);
    only.methods = {"plain", "ours (C8)"};
    expect_error([&] { run_study(study, only); }, {"unknown method \"ours (C8)\"", "methods: \"plain\", \"ours\""});
    only.methods = {"plian"};
    expect_error([&] { run_study(study, only); }, {"unknown method \"plian\" (did you mean \"plain\"?)", "methods: \"plain\", \"ours\""});
    only.methods.clear();
    only.regimes = {"75%"};
    expect_error([&] { run_study(study, only); }, {"unknown regime \"75%\"", "regimes: \"50%\""});
    write_study_report(study);
  }
  // A study with nothing run yet has no report: the error says so.
  {
    nlohmann::json empty = study;
    empty["out_dir"] = dir + "/empty_study";
    expect_error([&] { write_study_report(empty); }, {"empty_study has no finished pretraining", "orbit study --plan"});
  }
  // Bad study configs are refused before any work.
  nlohmann::json bad = study;
  bad["methods"][1]["cv"] = "yes";
  expect_error([&] { resolve_study_config(bad); }, {"ours", "\"cv\"", "true, false or a list of regime names", "50%", "\"yes\""});
  bad["methods"][1]["cv"] = {"50%", "75%"};
  expect_error([&] { resolve_study_config(bad); }, {"ours", "\"cv\"", "unknown regime \"75%\"", "regimes: 50%"});
  bad = study;
  bad["methods"][1]["set"]["lambda"] = -2;
  expect_error([&] { resolve_study_config(bad); }, {"ours", "lambda"});
  bad = study;
  bad["regimes"][0]["fraction"] = 0;
  expect_error([&] { resolve_study_config(bad); }, {"fraction", "(0, 1]"});
  // Keys the study sets for every run are refused where they would be overridden without a word, and
  // so are names that would share a directory and repeated seeds or regimes.
  bad = study;
  bad["methods"][1]["set"]["seed"] = 5;
  expect_error([&] { resolve_study_config(bad); }, {"method \"ours\": key \"set\" must not set \"seed\" (got 5)", "\"seeds\""});
  bad = study;
  bad["methods"][0]["set"] = {{"out_dir", "elsewhere"}};
  expect_error([&] { resolve_study_config(bad); }, {"method \"plain\": key \"set\" must not set \"out_dir\""});
  bad = study;
  bad["regimes"][0]["set"]["fraction"] = 0.2;
  expect_error([&] { resolve_study_config(bad); }, {"regime \"50%\": key \"set\" must not set \"fraction\" (got 0.2)", "each regime's \"fraction\""});
  bad = study;
  bad["finetune"]["weights"] = "w.safetensors";
  expect_error([&] { resolve_study_config(bad); }, {"key \"finetune\" must not set \"weights\"", "its own pretrained model"});
  bad = study;
  bad["pretrain"]["out_dir"] = "pre";
  expect_error([&] { resolve_study_config(bad); }, {"key \"pretrain\" must not set \"out_dir\"", "out_dir/pretrain"});
  bad = study;
  bad["methods"][0]["name"] = "ours?";
  bad["methods"][1]["name"] = "ours!";
  expect_error([&] { resolve_study_config(bad); }, {"methods \"ours?\" and \"ours!\" would share the directory \"ours_\"", "rename one"});
  bad = study;
  bad["regimes"].push_back({{"name", "50pct"}, {"fraction", 0.25}});
  expect_error([&] { resolve_study_config(bad); }, {"regimes \"50%\" and \"50pct\" would share the directory \"50pct\""});
  bad = study;
  bad["regimes"].push_back({{"name", "50%"}, {"fraction", 0.25}});
  expect_error([&] { resolve_study_config(bad); }, {"regime \"50%\" appears twice"});
  bad = study;
  bad["methods"].push_back({{"name", "plain"}});
  expect_error([&] { resolve_study_config(bad); }, {"method \"plain\" appears twice"});
  bad = study;
  bad["regimes"][0]["name"] = "";
  expect_error([&] { resolve_study_config(bad); }, {"each regime needs {\"name\": string", "\"name\":\"\""});
  bad = study;
  bad["methods"][0]["name"] = "";
  expect_error([&] { resolve_study_config(bad); }, {"each method needs a non-empty \"name\""});
  for (const auto& [key, value, parts] : std::vector<std::tuple<std::string, nlohmann::json, std::vector<std::string>>>{
           {"cv_seed", "x", {"key \"cv_seed\": expected an integer >= 0, got \"x\""}},
           {"cv_seed", -1, {"key \"cv_seed\": expected an integer >= 0, got -1"}},
           {"grid_images", "many", {"key \"grid_images\": expected an integer >= 0", "got \"many\""}},
           {"grid_images", -3, {"key \"grid_images\"", "got -3"}},
           {"name", 5, {"key \"name\": expected a string, got 5"}},
           {"description", {1}, {"key \"description\": expected a string, got [1]"}}}) {
    bad = study;
    bad[key] = value;
    expect_error([&] { resolve_study_config(bad); }, parts);
  }
  bad = study;
  bad["seeds"] = {0, 1, 0};
  expect_error([&] { resolve_study_config(bad); }, {"seed 0 appears twice in [0,1,0]"});
  // The report's columns are the orbits of the finetune block's eval_groups: they cannot be empty, and
  // a method or regime that evaluates without one of them is refused before any run, not at the report.
  bad = study;
  bad["finetune"]["eval_groups"] = nlohmann::json::array();
  expect_error([&] { resolve_study_config(bad); }, {"key \"finetune\": \"eval_groups\" is empty"});
  bad = study;
  bad["methods"][1]["set"]["eval_groups"] = {"C4"};
  expect_error([&] { resolve_study_config(bad); }, {"regime \"50%\", method \"ours\": \"eval_groups\" is [\"C4\"], without C8 of the finetune block's [\"C4\",\"C8\"]"});
  bad = study;  // more groups, in another order, and an alias of one: accepted
  bad["finetune"]["eval_groups"] = {"C2", "C4"};
  bad["regimes"][0]["set"]["eval_groups"] = {"C4", "D1", "C2"};
  EXPECT_NO_THROW(resolve_study_config(bad));
  bad["finetune"]["eval_groups"] = {"flips", "C4"};
  EXPECT_NO_THROW(resolve_study_config(bad));
  bad = study;
  bad["seed"] = {0};
  expect_error([&] { resolve_study_config(bad); }, {"study config: unknown key \"seed\" (did you mean \"seeds\"?)"});
  bad = study;
  bad["methods"][1]["sets"] = nlohmann::json::object();
  expect_error([&] { resolve_study_config(bad); }, {"method \"ours\": unknown key \"sets\" (did you mean \"set\"?)"});
  bad = study;
  bad["regimes"][0]["epochs"] = 3;
  expect_error([&] { resolve_study_config(bad); }, {"50%", "unknown key", "epochs", "name, fraction, set"});
  bad = study;
  bad["regimes"][0]["set"] = 3;
  expect_error([&] { resolve_study_config(bad); }, {"50%", "set", "object"});
  bad = study;
  bad["regimes"][0]["set"]["lambda"] = -1;
  expect_error([&] { resolve_study_config(bad); }, {"50%", "lambda"});

  // Weight files are not kept with the results. Without the pretrained weights, a study with every run
  // finished (a fresh clone of finished results) has nothing that needs them and makes none; one with a
  // run left pretrains again first and keeps the new weights only when they reproduce the recorded
  // metrics exactly, the finished runs reused as before.
  {
    const std::string pre = dir + "/study/pretrain";
    const std::string weights_before = read_file_bytes(pre + "/model.safetensors");
    ASSERT_FALSE(weights_before.empty());
    fs::remove(pre + "/model.safetensors");
    const nlohmann::json none_left = study_status(study, so);
    EXPECT_EQ(none_left["pretraining"], "finished, weights absent");
    EXPECT_EQ(none_left["to_run"], nlohmann::json({{"pretraining", false}, {"cv_fold_runs", 0}, {"seed_runs", 0}, {"methods_waiting_for_cv", 0}}));
    EXPECT_NE(format_study_status(none_left).find("its weights absent (no run left needs them)"), std::string::npos);
    // The report needs the finished runs' results, not weights (a fresh clone has none).
    EXPECT_NO_THROW(write_study_report(study));
    EXPECT_EQ(run_study(study, so)["regimes"], summary["regimes"]);
    EXPECT_FALSE(fs::exists(pre + "/model.safetensors"));
    EXPECT_FALSE(fs::exists(pre + "/regenerated"));
    // A seed run left to make: the plan says the pretraining runs again first.
    const std::string plain1 = dir + "/study/50pct/plain/seed1/results.json";
    fs::remove(plain1);
    const nlohmann::json st = study_status(study, so);
    EXPECT_EQ(st["pretraining"], "finished, weights absent");
    EXPECT_EQ(st["to_run"], nlohmann::json({{"pretraining", true}, {"cv_fold_runs", 0}, {"seed_runs", 1}, {"methods_waiting_for_cv", 0}}));
    EXPECT_NE(format_study_status(st).find("pretrained again first"), std::string::npos);
    const nlohmann::json again = run_study(study, so);
    EXPECT_EQ(again["regimes"], summary["regimes"]);
    EXPECT_EQ(read_file_bytes(pre + "/model.safetensors"), weights_before);
    EXPECT_FALSE(fs::exists(pre + "/regenerated"));
    // A recorded metric the new run does not reproduce is an error naming it, and no weights are kept.
    const nlohmann::json recorded = read_json_file(pre + "/results.json");
    nlohmann::json altered = recorded;
    altered["metrics"]["accuracy"] = 0.123;
    write_json_file(pre + "/results.json", altered);
    fs::remove(pre + "/model.safetensors");
    fs::remove(plain1);
    expect_error([&] { run_study(study, so); }, {"does not reproduce", "/accuracy", "recorded 0.123", "--threads"});
    EXPECT_FALSE(fs::exists(pre + "/model.safetensors"));
    write_json_file(pre + "/results.json", recorded);
    fs::rename(pre + "/regenerated/model.safetensors", pre + "/model.safetensors");
    fs::remove_all(pre + "/regenerated");
    EXPECT_EQ(read_file_bytes(pre + "/model.safetensors"), weights_before);
    EXPECT_EQ(run_study(study, so)["regimes"], summary["regimes"]);
    // --fresh makes every run anew, the finished ones too (the pretraining, every fold run and every
    // seed run), here to the same results.
    const std::vector<std::string> made = {pre + "/results.json", dir + "/study/50pct/plain/seed0/results.json",
                                           dir + "/study/50pct/ours/cv/lr0.003_lambda1/fold1/results.json",
                                           dir + "/study/50pct/ours/seed1/results.json"};
    for (const auto& f : made) fs::last_write_time(f, fs::file_time_type::clock::now() - std::chrono::hours(1));
    const auto half_an_hour_ago = fs::file_time_type::clock::now() - std::chrono::minutes(30);
    StudyOptions fresh = so;
    fresh.resume = false;
    const auto without_times = [](nlohmann::json regimes) {
      for (auto& methods : regimes)
        for (auto& m : methods) m.erase("train_seconds");
      return regimes;
    };
    EXPECT_EQ(without_times(run_study(study, fresh)["regimes"]), without_times(summary["regimes"]));
    for (const auto& f : made) EXPECT_GT(fs::last_write_time(f), half_an_hour_ago) << f << " was not made again";
    EXPECT_EQ(read_file_bytes(pre + "/model.safetensors"), weights_before);
  }

  // The CLI: an uninterrupted run, and one killed with SIGKILL after its first checkpoint, resumed.
  const std::string cli = std::string(ORBIT_BINARY_DIR) + "/orbit";
  nlohmann::json c = base;
  c["weights"] = dir + "/study/pretrain/model.safetensors";
  c["lambda"] = 1.0;
  c["epochs"] = 6;
  c["augment"] = "group";
  write_json_file(dir + "/run.json", c);
  auto run_cli = [&](const std::string& out) {
    return std::system((cli + " finetune --config " + dir + "/run.json --out " + out + " --threads 1 > /dev/null 2>&1").c_str());
  };
  ASSERT_EQ(run_cli(dir + "/whole"), 0);
  // --help after a subcommand prints the usage; an unknown option fails.
  EXPECT_EQ(std::system((cli + " study --help > /dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((cli + " study --confg x > " + dir + "/option.txt 2>&1").c_str()), 0);
  EXPECT_NE(read_file_bytes(dir + "/option.txt").find("unknown option --confg (did you mean \"--config\"?)"), std::string::npos)
      << read_file_bytes(dir + "/option.txt");
  // Numbers on the command line are read whole: "2x" is not 2, and "1/2/3" is not the shard 1/2.
  write_json_file(dir + "/study_config.json", study);
  const std::string sc = " study --plan --config " + dir + "/study_config.json";
  for (const auto& [args, want] : std::vector<std::pair<std::string, std::string>>{
           {sc + " --threads 2x", "--threads expects a positive integer (at most 4096), got '2x'"},
           {sc + " --threads 0", "--threads expects a positive integer (at most 4096), got '0'"},
           {sc + " --shard 1/2/3", "--shard expects INDEX/COUNT such as 0/8, got '1/2/3'"},
           {sc + " --shard 2/2", "--shard expects INDEX/COUNT with 0 <= INDEX < COUNT, got '2/2'"}}) {
    EXPECT_NE(std::system((cli + args + " > " + dir + "/number.txt 2>&1").c_str()), 0) << args;
    EXPECT_NE(read_file_bytes(dir + "/number.txt").find(want), std::string::npos) << read_file_bytes(dir + "/number.txt");
  }
  // An unknown command fails, naming the closest command, and prints the usage.
  EXPECT_NE(std::system((cli + " finetun > " + dir + "/command.txt 2>&1").c_str()), 0);
  EXPECT_NE(read_file_bytes(dir + "/command.txt").find("error: unknown command 'finetun' (did you mean \"finetune\"?)\n\norbit: equivariant fine-tuning engine"),
            std::string::npos) << read_file_bytes(dir + "/command.txt");
  // `report` covers the whole study: study's run selections there are refused, not ignored.
  write_json_file(dir + "/study_config.json", study);
  EXPECT_EQ(std::system((cli + " report --config " + dir + "/study_config.json > /dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((cli + " report --config " + dir + "/study_config.json --method plain > /dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((cli + " report --config " + dir + "/study_config.json --regime 50% > /dev/null 2>&1").c_str()), 0);
  EXPECT_EQ(std::system((cli + " study --config " + dir + "/study_config.json --plan > " + dir + "/plan.txt 2>&1").c_str()), 0);
  EXPECT_NE(read_file_bytes(dir + "/plan.txt").find("to run: 0 cv fold runs, 0 seed runs"), std::string::npos) << read_file_bytes(dir + "/plan.txt");
  // Both seeds of "plain" made again through the CLI: the second one's line gives the pace of the first.
  for (const char* sd : {"seed0", "seed1"}) fs::remove(dir + "/study/50pct/plain/" + sd + "/results.json");
  EXPECT_EQ(std::system((cli + " study --config " + dir + "/study_config.json --method plain --threads 1 > " + dir + "/again.txt 2>&1").c_str()), 0);
  const std::string again = read_file_bytes(dir + "/again.txt");
  EXPECT_NE(again.find("== run 1/2: 50%, plain, seed 0\n"), std::string::npos) << again;
  EXPECT_NE(again.find("== run 2/2: 50%, plain, seed 1 (1 made in "), std::string::npos) << again;
  EXPECT_NE(again.find(" for the 1 left at that pace"), std::string::npos) << again;
  // The CLI's finetune of run.json into `out` in a child process, stderr to `said`, stopped with
  // `signal` once its first checkpoint is written; returns the child's wait status.
  auto stop_after_first_checkpoint = [&](const std::string& out, const std::string& said, int signal) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const std::string cfg = dir + "/run.json";
      ::freopen(said.c_str(), "w", stderr);
      ::signal(SIGINT, SIG_DFL);  // as from a terminal, whatever the test runner ignores
      ::execl(cli.c_str(), cli.c_str(), "finetune", "--config", cfg.c_str(), "--out", out.c_str(), "--threads", "1",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    EXPECT_GT(pid, 0);
    const auto t0 = std::chrono::steady_clock::now();
    while (!fs::exists(out + "/checkpoint.safetensors") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ::kill(pid, signal);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  };
  const std::string killed = dir + "/killed";
  const int status = stop_after_first_checkpoint(killed, "/dev/null", SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  ASSERT_FALSE(fs::exists(killed + "/results.json"));
  ASSERT_EQ(run_cli(killed), 0);
  expect_same_weights(weights_of(dir + "/whole/model.safetensors"), weights_of(killed + "/model.safetensors"));
  // Ctrl-C (SIGINT) after the first checkpoint: the run stops at its next batch with status 130, naming
  // the checkpoint it keeps, and the same command resumes to the same weights.
  const std::string stopped = dir + "/stopped", said = dir + "/stopped.txt";
  const int stop_status = stop_after_first_checkpoint(stopped, said, SIGINT);
  ASSERT_TRUE(WIFEXITED(stop_status)) << "stopped by the signal itself: " << read_file_bytes(said);
  ASSERT_EQ(WEXITSTATUS(stop_status), 130) << read_file_bytes(said);
  EXPECT_NE(read_file_bytes(said).find("orbit: stopping at the next batch"), std::string::npos) << read_file_bytes(said);
  EXPECT_NE(read_file_bytes(said).find("orbit: interrupted in epoch "), std::string::npos) << read_file_bytes(said);
  EXPECT_NE(read_file_bytes(said).find(" is kept (" + stopped + "/checkpoint.safetensors); the same command resumes from it"),
            std::string::npos) << read_file_bytes(said);
  ASSERT_FALSE(fs::exists(stopped + "/results.json"));
  ASSERT_EQ(run_cli(stopped), 0);
  expect_same_weights(weights_of(dir + "/whole/model.safetensors"), weights_of(stopped + "/model.safetensors"));
  fs::remove_all(dir);
}

// A torchvision model's weights (as weights/export_torch.py writes them: 3 input channels, 1000
// classes, "model" in the metadata) fine-tuned on a grey 3-class task: the head is replaced, the grey
// images are shown to the RGB stem, and the run's weights evaluate again to the same metrics.
TEST(Finetune, FromATorchvisionDumpOnGreyImages) {
  const std::string dir = temp_dir("torchvision");
  ModelOptions mo;
  mo.in_channels = 3;
  mo.num_classes = 1000;
  auto tv = create_model("resnet18", mo);
  const std::string dump = dir + "/resnet18.safetensors";
  save_weights(dump, *tv, {{"format", "pt"}, {"model", "resnet18"}});
  nlohmann::json c = tiny_config(dir + "/ft");
  c["model"] = "resnet18";
  c["weights"] = dump;
  c["epochs"] = 1;
  c["lambda"] = 1.0;
  c["eval_groups"] = {"C4"};
  const RunResult r = run_training(c, tiny_options(32, 32));
  ASSERT_TRUE(r.completed);
  Metadata meta;
  const NamedTensors saved = load_safetensors(r.out_dir + "/model.safetensors", &meta);
  EXPECT_EQ(meta.at("num_classes"), "3");
  for (const auto& [k, t] : saved) {
    if (k == "conv1.weight") EXPECT_EQ(t.shape(), (Shape{64, 3, 7, 7}));
    if (k == "fc.weight") EXPECT_EQ(t.shape(), (Shape{3, 512}));
  }
  // The weights trained from the dump's values (here a layer of the body).
  const auto before = tv->state_dict().at("layer1.0.conv1.weight").to_vector<double>();
  for (const auto& [k, t] : saved)
    if (k == "layer1.0.conv1.weight") EXPECT_NE(t.to_vector<double>(), before);
  // The run's weights evaluate to the run's own metrics (the 3-channel model on grey images again).
  {
    auto net = load_run_network(c, r.out_dir + "/model.safetensors");
    const data::ImageClassificationDataset test = shapes(6, 2, 32, 32);
    NoGradGuard ng;
    const auto pred = argmax((*net)(test.images), 1).to_vector<int64_t>();
    const auto truth = test.labels.to_vector<int64_t>();
    int64_t right = 0;
    for (size_t i = 0; i < pred.size(); ++i) right += pred[i] == truth[i];
    EXPECT_NEAR(static_cast<double>(right) / static_cast<double>(pred.size()), r.results["metrics"]["accuracy"].get<double>(), 1e-12);
    // The grey statistics stand for each of the three channels, and the file says its images were grey.
    const std::vector<double> mean = r.results["normalization"]["mean"];
    ASSERT_EQ(mean.size(), 3u);
    EXPECT_EQ(mean[0], mean[1]);
    EXPECT_EQ(mean[0], mean[2]);
    EXPECT_EQ(meta.at("image_channels"), "1");
    EXPECT_EQ(meta.at("image_size"), "32");
    // A file of the earlier form (one channel's statistics, no image_channels) loads to the same network.
    Metadata old_meta = meta;
    old_meta.erase("image_channels");
    old_meta["normalization"] = nlohmann::json({{"mean", {mean[0]}}, {"std", {r.results["normalization"]["std"][0]}}}).dump();
    save_safetensors(dir + "/old_form.safetensors", saved, old_meta);
    auto old_net = load_run_network(c, dir + "/old_form.safetensors");
    EXPECT_EQ((*old_net)(test.images).to_vector<double>(), (*net)(test.images).to_vector<double>());
  }
  // A dump whose head does not fit is refused unless the head is replaced.
  c["reset_head"] = false;
  c["out_dir"] = dir + "/refused";
  expect_error([&] { run_training(c, tiny_options(32, 32)); }, {"1000-class head", "3 classes", "reset_head"});
  fs::remove_all(dir);
}

// A grey task fine-tuned from an orbit run on RGB images, whose file stores a normalization per RGB
// channel: each grey image is copied to the three channels and normalized as that run normalized its
// RGB images, so the RGB run's model answers a grey image as it answers the same image stored as RGB.
// The grey run's file keeps the RGB normalization and names the images' channel count, so its weights
// evaluate to its own metrics through load_run_network and orbit predict.
TEST(Finetune, GreyTaskFromAnRgbRunsWeights) {
  const std::string dir = temp_dir("rgb_to_grey");
  // The RGB run: the shapes in colour, with a different mean and std in each channel.
  RunOptions rgb_options = tiny_options();
  rgb_options.dataset_provider = [](data::Split s) {
    data::ImageClassificationDataset ds = shapes(s == data::Split::Train ? 16 : 6, s == data::Split::Train ? 1 : 2);
    const Tensor v = ds.images;
    ds.images = cat({v, add(mul(v, 0.5), 0.2), add(mul(v, -0.6), 0.8)}, 1).contiguous();
    return ds;
  };
  nlohmann::json rgb = tiny_config(dir + "/rgb");
  rgb["epochs"] = 1;
  const RunResult r_rgb = run_training(rgb, rgb_options);
  ASSERT_TRUE(r_rgb.completed);
  const std::vector<double> rgb_mean = r_rgb.results["normalization"]["mean"];
  ASSERT_EQ(rgb_mean.size(), 3u);
  ASSERT_GT(std::abs(rgb_mean[0] - rgb_mean[2]), 0.1) << "the channels must be normalized differently for this test to tell";
  // The same grey images as two image folders: stored grey, and stored as RGB with equal channels.
  // Folders list classes sorted; "classes" picks them in the run's order (square, ring, plus).
  for (const char* split : {"train", "test"}) {
    const data::ImageClassificationDataset ds = shapes(std::string(split) == "train" ? 8 : 6, split[1] == 'r' ? 1 : 2);
    for (int64_t i = 0; i < ds.size(); ++i) {
      const std::string cls = ds.class_names[static_cast<size_t>(ds.labels.to_vector<int64_t>()[static_cast<size_t>(i)])];
      const Tensor img = ds.images.select(0, i);
      for (const char* form : {"grey", "rgb"}) {
        const std::string folder = dir + "/" + form + "/" + split + "/" + cls;
        fs::create_directories(folder);
        const std::string name = folder + "/" + std::to_string(1000 + i) + ".png";
        data::write_png(name, std::string(form) == "grey" ? img : cat({img, img, img}, 0).contiguous());
      }
    }
  }
  auto folder_config = [&](const std::string& form, const std::string& out) {
    nlohmann::json c = tiny_config(dir + "/" + out);
    c["dataset"] = "folder:" + dir + "/" + form;
    c["classes"] = {2, 1, 0};
    c["eval_groups"] = {"C4"};
    c["angle_step"] = 90;
    return c;
  };
  const std::string rgb_weights = r_rgb.out_dir + "/model.safetensors";
  const nlohmann::json m_grey = evaluate_weights(folder_config("grey", "e1"), rgb_weights, data::Split::Test, true)["metrics"];
  const nlohmann::json m_rgb = evaluate_weights(folder_config("rgb", "e2"), rgb_weights, data::Split::Test, true)["metrics"];
  EXPECT_EQ(m_grey["accuracy"], m_rgb["accuracy"]);
  EXPECT_EQ(m_grey["angle_accuracy"], m_rgb["angle_accuracy"]);
  // float32 through the same ops on the same values: equal to rounding
  EXPECT_NEAR(orbit_metrics(m_grey, "C4")["equivariance_error"].get<double>(),
              orbit_metrics(m_rgb, "C4")["equivariance_error"].get<double>(), 1e-6);

  // A run's checkpoint given as weights (it holds the model beside the optimizer's state) is named as
  // such, pointing to the run's model.safetensors, for fine-tuning and for orbit predict.
  const std::string checkpoint = r_rgb.out_dir + "/checkpoint.safetensors";
  ASSERT_TRUE(fs::exists(checkpoint));
  {
    nlohmann::json from_checkpoint = folder_config("grey", "from_checkpoint");
    from_checkpoint["weights"] = checkpoint;
    expect_error([&] { run_training(from_checkpoint, RunOptions{}); },
                 {"key \"weights\"", "checkpoint.safetensors is a run's training checkpoint", r_rgb.out_dir + "/model.safetensors"});
    PredictOptions po;
    po.weights = checkpoint;
    po.images = {dir + "/grey/test/square/1000.png"};
    expect_error([&] { predict_images(po); }, {"--weights", "training checkpoint", r_rgb.out_dir + "/model.safetensors"});
  }
  // Fine-tuning the grey task from the RGB run keeps the RGB normalization and stores the images' channels.
  nlohmann::json g = folder_config("grey", "ft");
  g["weights"] = rgb_weights;
  g["epochs"] = 1;
  g["lambda"] = 1.0;
  RunOptions quiet;
  quiet.quiet = true;
  const RunResult r = run_training(g, quiet);
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(r.results["normalization"], r_rgb.results["normalization"]);
  Metadata meta;
  load_safetensors(r.out_dir + "/model.safetensors", &meta);
  EXPECT_EQ(meta.at("image_channels"), "1");
  // Its weights answer the grey test images as during the run, through load_run_network and orbit predict.
  const data::ImageClassificationDataset test = data::select_classes(
      data::load_dataset(g["dataset"], data::Split::Test, "data"), {2, 1, 0});
  auto net = load_run_network(g, r.out_dir + "/model.safetensors");
  NoGradGuard ng;
  const Tensor logits = (*net)(test.images);
  const auto pred = argmax(logits, 1).to_vector<int64_t>();
  const auto truth = test.labels.to_vector<int64_t>();
  int64_t right = 0;
  for (size_t i = 0; i < pred.size(); ++i) right += pred[i] == truth[i];
  EXPECT_NEAR(static_cast<double>(right) / static_cast<double>(pred.size()), r.results["metrics"]["accuracy"].get<double>(), 1e-12);
  PredictOptions po;
  po.weights = r.out_dir + "/model.safetensors";
  const std::string first = dir + "/grey/test/square/1000.png";
  ASSERT_TRUE(fs::exists(first));
  po.images = {first};
  const std::vector<double> predicted = predict_images(po)["images"][0]["logits"];
  const std::vector<double> direct = (*net)(data::read_image(first, 1).unsqueeze(0)).select(0, 0).to_vector<double>();
  ASSERT_EQ(predicted.size(), direct.size());
  for (size_t k = 0; k < direct.size(); ++k) EXPECT_NEAR(predicted[k], direct[k], 1e-4 * (1 + std::abs(direct[k]))) << k;
  // An image in colour and of another size is read as the run read its images: grey, then 12 x 12.
  const std::string big = dir + "/big.png";
  {
    const Tensor v = data::resize_shorter(data::read_image(first, 1), 20);
    data::write_png(big, cat({v, mul(v, 0.5), add(mul(v, -0.5), 0.6)}, 0).contiguous());
  }
  po.images = {big};
  const nlohmann::json pb = predict_images(po);
  EXPECT_EQ(pb["preprocessing"]["resize"], 12);
  const std::vector<double> predicted_big = pb["images"][0]["logits"];
  const Tensor as_run = data::to_image_format(data::read_image(big, 1), {0, 12}, big);
  ASSERT_EQ(as_run.shape(), (Shape{1, 12, 12}));
  const std::vector<double> direct_big = (*net)(as_run.unsqueeze(0)).select(0, 0).to_vector<double>();
  for (size_t k = 0; k < direct_big.size(); ++k)
    EXPECT_NEAR(predicted_big[k], direct_big[k], 1e-4 * (1 + std::abs(direct_big[k]))) << k;
  fs::remove_all(dir);
}

// Every config the project ships (the studies and trainings of train/configs, and each study's copy
// under results/ that its report names for reproducing it) passes validation, so a key renamed or a
// range narrowed in a schema cannot leave a committed config that fails when a user runs it.
TEST(Finetune, EveryCommittedConfigValidates) {
  const fs::path root = ORBIT_SOURCE_DIR;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(root / "train" / "configs"))
    if (e.path().extension() == ".json") files.push_back(e.path());
  for (const auto& e : fs::directory_iterator(root / "results"))
    if (fs::is_regular_file(e.path() / "study.json")) files.push_back(e.path() / "study.json");
  std::sort(files.begin(), files.end());
  size_t studies = 0, trainings = 0;
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const nlohmann::json c = read_json_file(f.string());
    if (c.contains("methods")) {
      EXPECT_NO_THROW(resolve_study_config(c));
      ++studies;
    } else {
      EXPECT_NO_THROW(train_config_schema().resolve(c));
      ++trainings;
    }
  }
  // The shipped set: at least the demo, the main study and its result copy, and one training.
  EXPECT_GE(studies, 3u);
  EXPECT_GE(trainings, 1u);
  // And the check can fail: a committed study with a key no schema knows is refused, naming it.
  nlohmann::json bad = read_json_file((root / "train" / "configs" / "demo_study.json").string());
  bad["finetune"]["lamda"] = 3;
  expect_error([&] { resolve_study_config(bad); }, {"lamda"});
}

// The `orbit` command line.
//
//   orbit train --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
//   orbit evaluate --weights FILE [--model NAME] [--dataset NAME] [--data-dir DIR] [--split train|test] [--threads N]
//   orbit models
//   orbit config          (every key of a training config, with its default and range)
//   orbit help | --help | version
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "engine/cpu/gemm.h"
#include "engine/error.h"
#include "engine/parallel.h"
#include "models/registry.h"
#include "train/config.h"
#include "train/trainer.h"
#include "weights/weights.h"

using namespace orbit;

namespace {

const char* kUsage = R"(orbit: equivariant fine-tuning engine (CPU build)

usage:
  orbit train --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
      Trains a classifier as the JSON config describes; resumes from DIR/checkpoint.safetensors
      when it exists (unless --fresh). --set overrides one config key (value parsed as JSON, or
      taken as a string). Writes DIR/{config,history,results}.json, loss.svg, accuracy.svg,
      checkpoint.safetensors and model.safetensors.
  orbit evaluate --weights FILE [--model small_cnn] [--dataset fashion-mnist] [--data-dir data]
                 [--split test] [--threads N]
      Accuracy, loss and per-class accuracy of saved weights (normalized with the training split's
      statistics, as during training).
  orbit models      the registered models
  orbit config      every training-config key with its type, default and range
  orbit version
)";

struct Args {
  std::map<std::string, std::string> opts;
  std::vector<std::string> sets;
  std::vector<std::string> flags;
};

// Parses --key value pairs (and the given boolean flags); throws on anything unexpected.
Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& keys,
                const std::vector<std::string>& bool_flags) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) throw Error(str_cat("unexpected argument '", k, "'; see `orbit help`"));
    k = k.substr(2);
    if (std::find(bool_flags.begin(), bool_flags.end(), k) != bool_flags.end()) {
      a.flags.push_back(k);
      continue;
    }
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      std::string allowed;
      for (const auto& x : keys) allowed += " --" + x;
      for (const auto& x : bool_flags) allowed += " --" + x;
      throw Error(str_cat("unknown option --", k, "; allowed:", allowed));
    }
    if (i + 1 >= argc) throw Error(str_cat("option --", k, " needs a value"));
    if (k == "set")
      a.sets.push_back(argv[++i]);
    else
      a.opts[k] = argv[++i];
  }
  return a;
}

bool has_flag(const Args& a, const std::string& f) {
  return std::find(a.flags.begin(), a.flags.end(), f) != a.flags.end();
}

void apply_threads(const Args& a) {
  auto it = a.opts.find("threads");
  if (it == a.opts.end()) return;
  int n = 0;
  try {
    n = std::stoi(it->second);
  } catch (...) {
    throw Error(str_cat("--threads expects a positive integer, got '", it->second, "'"));
  }
  set_num_threads(n);
}

int cmd_train(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"config", "set", "out", "threads"}, {"fresh"});
  apply_threads(a);
  nlohmann::json config = nlohmann::json::object();
  if (a.opts.count("config")) config = read_json_file(a.opts["config"]);
  ORBIT_CHECK(config.is_object(), a.opts["config"], ": the config must be a JSON object");
  for (const std::string& s : a.sets) {
    const auto eq = s.find('=');
    ORBIT_CHECK(eq != std::string::npos && eq > 0, "--set expects key=value, got '", s, "'");
    const std::string key = s.substr(0, eq), value = s.substr(eq + 1);
    nlohmann::json v;
    try {
      v = nlohmann::json::parse(value);
    } catch (const nlohmann::json::exception&) {
      v = value;  // a bare string
    }
    config[key] = v;
  }
  if (a.opts.count("out")) config["out_dir"] = a.opts["out"];
  TrainOptions opts;
  opts.resume = !has_flag(a, "fresh");
  const nlohmann::json resolved = train_config_schema().resolve(config);  // for target_accuracy and its default
  TrainResult r = train_classifier(resolved, opts);
  const double target = resolved["target_accuracy"];
  std::printf("test accuracy %.2f%% after %zu epochs (results in %s/results.json)\n", 100 * r.test_accuracy,
              r.history.size(), r.out_dir.c_str());
  if (target > 0 && r.test_accuracy < target) {
    std::printf("below the target accuracy %.2f%%\n", 100 * target);
    return 3;
  }
  if (target > 0) std::printf("target accuracy %.2f%% reached\n", 100 * target);
  return 0;
}

int cmd_evaluate(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"weights", "model", "dataset", "data-dir", "split", "threads"}, {});
  apply_threads(a);
  ORBIT_CHECK(a.opts.count("weights"), "evaluate: --weights FILE is required");
  const std::string model_name = a.opts.count("model") ? a.opts["model"] : "small_cnn";
  const std::string dataset = a.opts.count("dataset") ? a.opts["dataset"] : "fashion-mnist";
  const std::string root = a.opts.count("data-dir") ? a.opts["data-dir"] : "data";
  const std::string split_s = a.opts.count("split") ? a.opts["split"] : "test";
  ORBIT_CHECK(split_s == "test" || split_s == "train", "evaluate: --split must be 'train' or 'test', got '", split_s, "'");
  const auto train = data::load_dataset(dataset, data::Split::Train, root);
  const auto stats = data::channel_stats(train);
  const auto ds = (split_s == "train" ? train : data::load_dataset(dataset, data::Split::Test, root))
                      .normalized(stats.mean, stats.std);
  ModelOptions mo;
  mo.num_classes = ds.num_classes();
  mo.in_channels = ds.channels();
  auto model = create_model(model_name, mo);
  load_weights(a.opts["weights"], *model, true);
  EvalResult r = evaluate(*model, ds, 256, true);
  std::printf("%s %s: accuracy %.2f%%, loss %.4f over %lld images\n", dataset.c_str(), split_s.c_str(), 100 * r.accuracy,
              r.loss, static_cast<long long>(r.count));
  for (size_t c = 0; c < r.confusion.size(); ++c) {
    int64_t n = 0;
    for (auto v : r.confusion[c]) n += v;
    const std::string name = c < ds.class_names.size() ? ds.class_names[c] : std::to_string(c);
    std::printf("  %-12s %6.2f%%  (%lld images)\n", name.c_str(), n ? 100.0 * r.confusion[c][c] / n : 0.0,
                static_cast<long long>(n));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "help";
    if (cmd == "train") return cmd_train(argc, argv);
    if (cmd == "evaluate") return cmd_evaluate(argc, argv);
    if (cmd == "models") {
      for (const auto& [name, desc] : list_models()) std::printf("%-12s %s\n", name.c_str(), desc.c_str());
      return 0;
    }
    if (cmd == "config") {
      std::printf("training config keys:\n%s", train_config_schema().describe().c_str());
      return 0;
    }
    if (cmd == "version" || cmd == "--version") {
      std::printf("orbit 0.1.0 (CPU backend, sgemm kernel %s, %d threads)\n", cpu::sgemm_kernel_name(), num_threads());
      return 0;
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "orbit: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orbit: error: %s\n", e.what());
    return 1;
  }
}

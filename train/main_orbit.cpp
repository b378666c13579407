// The `orbit` command line.
//
//   orbit pretrain|finetune|sweep --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
//   orbit study|report --config FILE [--threads N] [--fresh]
//   orbit train --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
//   orbit evaluate --weights FILE [--model NAME] [--dataset NAME] [--data-dir DIR] [--split train|test] [--threads N]
//   orbit predict --weights FILE (--image FILE | --folder DIR)... [--model NAME] [--top K] [--resize N] [--crop N]
//                 [--mean a,b,c] [--std a,b,c] [--labels FILE] [--json] [--threads N]
//   orbit models
//   orbit config          (every key of a training config, with its default and range)
//   orbit help | --help | version
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
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
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/finetune.h"
#include "train/interrupt.h"
#include "train/predict.h"
#include "train/report.h"
#include "train/study.h"
#include "train/trainer.h"
#include "weights/safetensors.h"
#include "weights/weights.h"
#ifdef ORBIT_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

using namespace orbit;

namespace {

// Which backends this build has: the usage's first line and `orbit version` say it.
#ifdef ORBIT_WITH_CUDA
#define ORBIT_BUILD_BACKENDS "CPU and CUDA backends"
#else
#define ORBIT_BUILD_BACKENDS "CPU backend; built without the CUDA backend"
#endif

const char* kUsage = "orbit: equivariant fine-tuning engine (" ORBIT_BUILD_BACKENDS ")" R"(

usage:
  orbit pretrain --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
      Trains a model from scratch as the run config describes (typically with "augment": "rotation"
      or "group"), then evaluates it once on the test set and its group orbits. Writes DIR/config.json,
      results.json, history.json, loss.svg, angle.svg, checkpoint.safetensors and model.safetensors.
  orbit finetune --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
      The same with "weights" (a model.safetensors of an earlier run) and the method's keys: lambda and
      the regularizer (discrepancy, samples, stop_gradient, reference, taps, preserve), augment, equitune.
  orbit sweep --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
      Chooses lambda (lambda_grid) and the learning rate (lr_grid) by cv_folds-fold cross-validation
      on the training set, then trains with them and evaluates once on the test set (DIR/final/).
  orbit study --config FILE [--threads N] [--fresh] [--regime NAME] [--method NAME]... [--shard I/N] [--plan]
      Pretraining, every method in every data regime with every seed, cross-validation where asked,
      and the report (out_dir/report.md with plots). Finished runs are reused (with --fresh, every run
      of the selection is made anew, the finished ones and the pretraining too). --regime runs one
      regime only; --method NAME (repeatable) only the named methods, the report still covering every
      method with the runs it has; --shard I/N runs only the I-th of N shares of the cross-validation
      fold runs (start N processes, then run the study once more without --shard); --plan only
      prints what is finished and what would run, and runs nothing.
  orbit report --config FILE
      Rebuilds a study's report from its finished runs.
  orbit evaluate --config FILE --weights FILE [--split test|train] [--threads N]
      Test metrics of a run's weights: accuracy, orbit accuracy, consistency and equivariance error
      for each of the config's eval_groups, accuracy against the angle; JSON on stdout.
  orbit config [--run]   every key of a run config (--run) or of a `train` config
  Every run resumes from DIR/checkpoint.safetensors when it exists (unless --fresh). --set overrides
  one config key (value parsed as JSON, or taken as a string).

  orbit train --config FILE [--set key=value]... [--out DIR] [--threads N] [--fresh]
      Trains a classifier as the JSON config describes; resumes from DIR/checkpoint.safetensors
      when it exists (unless --fresh). --set overrides one config key (value parsed as JSON, or
      taken as a string). Writes DIR/{config,history,results}.json, loss.svg, accuracy.svg,
      checkpoint.safetensors and model.safetensors.
  orbit evaluate --weights FILE [--model small_cnn] [--dataset fashion-mnist] [--data-dir data]
                 [--split test] [--threads N]
      Accuracy, loss and per-class accuracy of saved weights (normalized as during training: with the
      normalization an orbit run stores in its model.safetensors, else the training split's statistics).
  orbit predict --weights FILE (--image FILE | --folder DIR)... [--model NAME] [--top 5] [--resize N]
                [--crop N] [--mean a,b,c] [--std a,b,c] [--labels FILE] [--json] [--threads N]
      Runs a registered model from a weight file (an orbit run's model.safetensors, or a PyTorch
      state_dict written by weights/export_torch.py) on images and prints the top classes of each.
      The model, classes and normalization come from the file's metadata where it has them (--model
      names the architecture otherwise); input channels and the number of classes from its shapes.
      Preprocessing as torchvision's ImageClassification preset for files without orbit metadata:
      shorter side resized to 256 (bilinear, antialiased), center crop 224, ImageNet mean and std;
      for an orbit run's model, its run's: the images' channels, size (an image of another size is
      resized and center-cropped to it) and normalization. --resize 0 / --crop 0 turn a step off.
      --json prints everything, logits included, as JSON.
  orbit models      the registered models
  orbit version
)";

struct Args {
  std::map<std::string, std::string> opts;
  std::vector<std::string> sets;
  std::vector<std::string> methods;  // --method, which may repeat (a method's name can hold commas)
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
      std::vector<std::string> options;
      for (const auto& x : keys) allowed += " --" + x;
      for (const auto& x : bool_flags) allowed += " --" + x;
      for (const auto& x : keys) options.push_back("--" + x);
      for (const auto& x : bool_flags) options.push_back("--" + x);
      throw Error(str_cat("unknown option --", k, did_you_mean("--" + k, options), "; allowed:", allowed));
    }
    if (i + 1 >= argc) throw Error(str_cat("option --", k, " needs a value"));
    if (k == "set")
      a.sets.push_back(argv[++i]);
    else if (k == "method")
      a.methods.push_back(argv[++i]);
    else
      a.opts[k] = argv[++i];
  }
  return a;
}

bool has_flag(const Args& a, const std::string& f) {
  return std::find(a.flags.begin(), a.flags.end(), f) != a.flags.end();
}

// The whole of `v` as an integer >= 0 ("2x" and "1/2/3" are not one).
int64_t parse_size(const std::string& option, const std::string& v) {
  try {
    size_t used = 0;
    const long long n = std::stoll(v, &used);
    if (used == v.size() && n >= 0) return n;
  } catch (...) {
  }
  throw Error(str_cat("--", option, " expects a non-negative integer, got '", v, "'"));
}

void apply_threads(const Args& a) {
  auto it = a.opts.find("threads");
  if (it == a.opts.end()) return;
  int64_t n = 0;
  try {
    n = parse_size("threads", it->second);
  } catch (const Error&) {
  }
  ORBIT_CHECK(n >= 1 && n <= 4096, "--threads expects a positive integer (at most 4096), got '", it->second, "'");
  set_num_threads(static_cast<int>(n));
}

nlohmann::json load_config(Args& a) {
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
  return config;
}

// pretrain / finetune / sweep.
int cmd_run(const std::string& cmd, int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"config", "set", "out", "threads"}, {"fresh"});
  apply_threads(a);
  ORBIT_CHECK(a.opts.count("config") || !a.sets.empty(), cmd, ": --config FILE is required (see `orbit config --run` for the keys)");
  nlohmann::json config = load_config(a);
  const nlohmann::json resolved = resolve_run_config(config);  // every key checked before any work
  if (cmd == "finetune")
    ORBIT_CHECK(!resolved["weights"].get<std::string>().empty(), "finetune: the config needs \"weights\" (a model.safetensors "
                "written by `orbit pretrain`); to train from scratch use `orbit pretrain`");
  RunOptions opts;
  opts.resume = !has_flag(a, "fresh");
  opts.print_summary = false;  // printed below, on stdout
  RunResult r = cmd == "sweep" ? run_sweep(config, opts) : run_training(config, opts);
  std::printf("%s\n(results in %s/results.json)\n", summarize_metrics(r.results).c_str(), r.out_dir.c_str());
  return 0;
}

int cmd_study(const std::string& cmd, int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"config", "threads", "shard", "regime", "method"}, {"fresh", "plan"});
  apply_threads(a);
  ORBIT_CHECK(a.opts.count("config"), cmd, ": --config FILE is required");
  const nlohmann::json study = read_json_file(a.opts["config"]);
  resolve_study_config(study);
  if (cmd == "report") {
    for (const char* k : {"regime", "shard", "fresh", "plan"})
      ORBIT_CHECK(!a.opts.count(k) && !has_flag(a, k), "report: --", k, " is an option of `orbit study`; the report covers every regime and method");
    ORBIT_CHECK(a.methods.empty(), "report: --method is an option of `orbit study`; the report covers every regime and method");
    write_study_report(study);
  } else {
    StudyOptions o;
    o.resume = !has_flag(a, "fresh");
    if (a.opts.count("regime")) o.regimes = {a.opts["regime"]};
    o.methods = a.methods;
    if (a.opts.count("shard")) {
      const std::string v = a.opts["shard"];
      const auto slash = v.find('/');
      try {
        ORBIT_CHECK(slash != std::string::npos, "");
        o.shard_index = parse_size("shard", v.substr(0, slash));
        o.shard_count = parse_size("shard", v.substr(slash + 1));
      } catch (...) {
        throw Error(str_cat("--shard expects INDEX/COUNT such as 0/8, got '", v, "'"));
      }
      ORBIT_CHECK(o.shard_count >= 1 && o.shard_index >= 0 && o.shard_index < o.shard_count,
                  "--shard expects INDEX/COUNT with 0 <= INDEX < COUNT, got '", v, "'");
    }
    ORBIT_CHECK(!(has_flag(a, "plan") && has_flag(a, "fresh")), "study: --plan shows what a resumed study would run; with --fresh every run starts over");
    if (has_flag(a, "plan")) {
      std::printf("%s", format_study_status(study_status(study, o)).c_str());
      return 0;
    }
    const nlohmann::json r = run_study(study, o);
    if (r.contains("partial")) return 0;
  }
  const std::string report = study["out_dir"].get<std::string>() + "/report.md";
  std::ifstream in(report);
  std::printf("%s", std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()).c_str());
  return 0;
}

int cmd_evaluate_run(Args& a) {
  ORBIT_CHECK(a.opts.count("weights"), "evaluate: --weights FILE is required");
  const std::string split_s = a.opts.count("split") ? a.opts["split"] : "test";
  ORBIT_CHECK(split_s == "test" || split_s == "train", "evaluate: --split must be 'train' or 'test', got '", split_s, "'");
  nlohmann::json config = load_config(a);
  const nlohmann::json r = evaluate_weights(config, a.opts["weights"], split_s == "test" ? data::Split::Test : data::Split::Train);
  std::fprintf(stderr, "%s\n", summarize_metrics(r).c_str());
  std::printf("%s\n", r.dump(2).c_str());
  return 0;
}

std::vector<double> parse_numbers(const std::string& option, const std::string& v) {
  std::vector<double> out;
  size_t i = 0;
  while (i <= v.size()) {
    const size_t j = std::min(v.find(',', i), v.size());
    try {
      size_t used = 0;
      out.push_back(std::stod(v.substr(i, j - i), &used));
      ORBIT_CHECK(used == j - i, "");
    } catch (...) {
      throw Error(str_cat("--", option, " expects numbers separated by commas, such as 0.5,0.5,0.5; got '", v, "'"));
    }
    i = j + 1;
  }
  return out;
}

int cmd_predict(int argc, char** argv) {
  PredictOptions o;
  bool json = false;
  // --image and --folder may repeat, so they are gathered here rather than by parse_args.
  std::vector<std::string> rest;
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if ((k == "--image" || k == "--folder") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (k == "--image") {
        o.images.push_back(v);
      } else {
        for (const auto& f : images_in_folder(v)) o.images.push_back(f);
      }
    } else if (k == "--json") {
      json = true;
    } else {
      rest.push_back(k);
    }
  }
  std::vector<char*> rv = {argv[0], argv[1]};
  for (auto& s : rest) rv.push_back(s.data());
  // --image, --folder and --json are named here too, for the list of allowed options (an --image or
  // --folder that reaches parse_args is one without a value, which it reports).
  Args a = parse_args(static_cast<int>(rv.size()), rv.data(), 2,
                      {"weights", "model", "top", "resize", "crop", "mean", "std", "labels", "threads", "image", "folder"}, {"json"});
  apply_threads(a);
  if (a.opts.count("weights")) o.weights = a.opts["weights"];
  if (a.opts.count("model")) o.model = a.opts["model"];
  if (a.opts.count("top")) o.top = parse_size("top", a.opts["top"]);
  if (a.opts.count("resize")) o.resize = parse_size("resize", a.opts["resize"]);
  if (a.opts.count("crop")) o.crop = parse_size("crop", a.opts["crop"]);
  if (a.opts.count("mean")) o.mean = parse_numbers("mean", a.opts["mean"]);
  if (a.opts.count("std")) o.std = parse_numbers("std", a.opts["std"]);
  if (a.opts.count("labels")) o.labels = a.opts["labels"];
  const nlohmann::json r = predict_images(o);
  if (json) {
    std::printf("%s\n", r.dump(2).c_str());
    return 0;
  }
  std::printf("%s from %s (%lld classes)\n", r["model"].get<std::string>().c_str(), o.weights.c_str(),
              static_cast<long long>(r["num_classes"].get<int64_t>()));
  for (const auto& im : r["images"]) {
    std::printf("%s\n", im["path"].get<std::string>().c_str());
    for (const auto& t : im["top"])
      std::printf("  %6.2f%%  %s (%lld)\n", 100 * t["probability"].get<double>(), t["label"].get<std::string>().c_str(),
                  static_cast<long long>(t["class"].get<int64_t>()));
  }
  return 0;
}

int cmd_train(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"config", "set", "out", "threads"}, {"fresh"});
  apply_threads(a);
  nlohmann::json config = load_config(a);
  TrainOptions opts;
  opts.resume = !has_flag(a, "fresh");
  const nlohmann::json resolved = train_config_schema().resolve(config);  // for target_accuracy and its default
  TrainResult r = train_classifier(resolved, opts);
  const double target = resolved["target_accuracy"];
  std::printf("test accuracy %.2f%% after %zu epoch%s (results in %s/results.json)\n", 100 * r.test_accuracy,
              r.history.size(), r.history.size() == 1 ? "" : "s", r.out_dir.c_str());
  if (target > 0 && r.test_accuracy < target) {
    std::printf("below the target accuracy %.2f%%\n", 100 * target);
    return 3;
  }
  if (target > 0) std::printf("target accuracy %.2f%% reached\n", 100 * target);
  return 0;
}

int cmd_evaluate(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"weights", "model", "dataset", "data-dir", "split", "threads", "config", "set"}, {});
  apply_threads(a);
  if (a.opts.count("config")) return cmd_evaluate_run(a);
  ORBIT_CHECK(a.opts.count("weights"), "evaluate: --weights FILE is required");
  // A file written by orbit names its architecture (and, for a run on some classes, those classes).
  Metadata meta;
  load_safetensors(a.opts["weights"], &meta);
  check_not_a_checkpoint(a.opts["weights"], meta, "evaluate: --weights");
  const std::string model_name = a.opts.count("model") ? a.opts["model"] : meta.count("model") ? meta["model"] : "small_cnn";
  const std::string dataset = a.opts.count("dataset") ? a.opts["dataset"] : "fashion-mnist";
  const std::string root = a.opts.count("data-dir") ? a.opts["data-dir"] : "data";
  const std::string split_s = a.opts.count("split") ? a.opts["split"] : "test";
  ORBIT_CHECK(split_s == "test" || split_s == "train", "evaluate: --split must be 'train' or 'test', got '", split_s, "'");
  const auto read = [&](data::Split s) {
    return read_dataset(dataset, s, root);
  };
  const data::Split split = split_s == "train" ? data::Split::Train : data::Split::Test;
  const auto raw = read(split);
  // The normalization the weights were trained with: an orbit run's file stores it (its training
  // subset's statistics); an `orbit train` run used those of the whole training split, which is then
  // read too.
  data::ChannelStats stats;
  if (const auto stored = stored_input(a.opts["weights"], meta)) {
    stats = stored->normalization;
    const int64_t images = stored->image_channels > 0 ? stored->image_channels : static_cast<int64_t>(stats.mean.size());
    ORBIT_CHECK(images == raw.channels() && static_cast<int64_t>(stats.mean.size()) == raw.channels(), "evaluate: ",
                a.opts["weights"], " was trained on ", images, "-channel images (its normalization has ", stats.mean.size(),
                " channel(s)), but ", dataset, " has ", raw.channels(), "-channel images; evaluate it with its run's config: "
                "orbit evaluate --config <run>/config.json --weights ", a.opts["weights"]);
  } else {
    stats = data::channel_stats(split == data::Split::Train ? raw : read(data::Split::Train));
  }
  const auto ds = raw.normalized(stats.mean, stats.std);
  if (meta.count("num_classes") && metadata_integer(a.opts["weights"], meta, "num_classes") != ds.num_classes()) {
    const std::string dir = std::filesystem::path(a.opts["weights"]).parent_path().string();
    throw Error(str_cat("evaluate: ", a.opts["weights"], " answers for ", meta["num_classes"], " classes",
                        meta.count("classes") ? " " + meta["classes"] : std::string(), ", but ", dataset, " has ", ds.num_classes(),
                        "; the weights of a run on some of the classes are evaluated with the run's config: orbit evaluate --config ",
                        dir.empty() ? "." : dir, "/config.json --weights ", a.opts["weights"]));
  }
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
    // The commands with training or evaluation loops stop at a batch on the first Ctrl-C, naming what
    // they keep; the others (predict, report, ...) stop at once, as without a handler.
    if (cmd == "pretrain" || cmd == "finetune" || cmd == "sweep" || cmd == "study" || cmd == "train" || cmd == "evaluate")
      install_interrupt_handler();
    for (int i = 2; i < argc; ++i)  // `orbit study --help` asks for the usage, not for an option named help
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      }
    if (cmd == "pretrain" || cmd == "finetune" || cmd == "sweep") return cmd_run(cmd, argc, argv);
    if (cmd == "study" || cmd == "report") return cmd_study(cmd, argc, argv);
    if (cmd == "train") return cmd_train(argc, argv);
    if (cmd == "evaluate") return cmd_evaluate(argc, argv);
    if (cmd == "predict") return cmd_predict(argc, argv);
    if (cmd == "models") {
      for (const auto& [name, desc] : list_models()) std::printf("%-18s %s\n", name.c_str(), desc.c_str());
      return 0;
    }
    if (cmd == "config") {
      if (argc > 2 && std::string(argv[2]) == "--run") {
        std::printf("run config keys (pretrain, finetune, sweep, evaluate):\n%s", run_config_schema().describe().c_str());
        return 0;
      }
      std::printf("training config keys (train):\n%s", train_config_schema().describe().c_str());
      return 0;
    }
    if (cmd == "version" || cmd == "--version") {
      std::string cuda_part = "built without the CUDA backend";
#ifdef ORBIT_WITH_CUDA
      const int gpus = cuda::device_count();
      cuda_part = gpus > 0 ? str_cat("CUDA backend, ", gpus, gpus == 1 ? " GPU" : " GPUs") : "CUDA backend, no GPU found";
#endif
      std::printf("orbit 0.1.0 (CPU backend, sgemm kernel %s, %d threads; %s)\n", cpu::sgemm_kernel_name(), num_threads(),
                  cuda_part.c_str());
      return 0;
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    const std::string hint = did_you_mean(cmd, {"pretrain", "finetune", "sweep", "study", "report", "train", "evaluate", "predict",
                                                "models", "config", "version", "help"});
    std::fprintf(stderr, "orbit: error: unknown command '%s'%s\n\n%s", cmd.c_str(), hint.c_str(), kUsage);
    return 2;
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "orbit: %s\n", e.what());
    return 130;  // 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orbit: error: %s\n", e.what());
    return 1;
  }
}

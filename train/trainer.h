// Supervised image-classification training from a validated JSON config: data, model from the
// registry, optimizer and schedule, an epoch loop with a progress bar, evaluation after every
// epoch, atomic checkpoints after every epoch with exact resume, and results (JSON, SVG curves).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "layers/module.h"
#include "train/config.h"
#include "train/optim.h"
#include "train/scheduler.h"

namespace orbit {

// The optimizer a resolved config describes (keys optimizer, lr, momentum, nesterov (optional),
// weight_decay) and its per-epoch schedule (schedule: constant, cosine, step, multistep; epochs,
// warmup_epochs; step_size, milestones and gamma for the step forms).
std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& config, const std::vector<Tensor>& params);
std::shared_ptr<LRScheduler> make_scheduler(const nlohmann::json& config, Optimizer& opt);

// Every key of a training config, its type, range and default.
const ConfigSchema& train_config_schema();

// Adds the keys "image_channels" and "image_size" (data::ImageFormat), which the training and the run
// configs share, to `s`.
ConfigSchema& add_image_format_keys(ConfigSchema& s);
// The image format a resolved config names (0, as stored, for a key that a config saved before it
// existed lacks). Throws naming `what` (the config) and the key for "image_channels": 2.
data::ImageFormat image_format_of(const nlohmann::json& config, const std::string& what = "run config");
// data::load_dataset of split `split` of the dataset `name` under `root` in `format`, with a bar
// "read NAME/SPLIT" when the load takes long (load_progress), or none when `quiet`.
data::ImageClassificationDataset read_dataset(const std::string& name, data::Split split, const std::string& root,
                                              const data::ImageFormat& format = {}, bool quiet = false);

struct EpochStats {
  int64_t epoch = 0;  // 1-based
  double lr = 0, train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0, seconds = 0;
  nlohmann::json to_json() const;
  static EpochStats from_json(const nlohmann::json& j);
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t count = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true class][predicted class]
};

// Accuracy and mean cross-entropy of `model` on a dataset (eval mode, no gradients).
EvalResult evaluate(Module& model, const data::ImageClassificationDataset& dataset, int64_t batch_size = 256,
                    bool show_progress = false);

struct TrainOptions {
  bool resume = true;           // continue from out_dir/checkpoint.safetensors when it exists
  int64_t stop_after_epoch = 0; // > 0: return after this epoch (as if interrupted); for tests
  bool quiet = false;           // no progress bars or per-epoch lines
  // Supplies datasets instead of reading data_dir (tests); empty: load_dataset from the config.
  std::function<data::ImageClassificationDataset(data::Split)> dataset_provider;
};

struct TrainResult {
  std::vector<EpochStats> history;
  double test_accuracy = 0;  // after the last epoch
  std::string out_dir;
  bool completed = false;    // all epochs ran
};

// Runs (or resumes) the training that `config` describes; `config` is validated first.
TrainResult train_classifier(const nlohmann::json& config, const TrainOptions& options = {});

}  // namespace orbit

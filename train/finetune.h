// Equivariant fine-tuning runs, the heart of Orbit:
//
//   loss = cross_entropy(f(x), y) + λ · R(f, x)      (groups/regularizer.h)
//
// One trainer runs every method of a comparison, so they are like for like:
//   plain fine-tuning          lambda = 0, augment "none"
//   augmentation               augment "group" (a random element of the group per image) or "rotation"
//   equi-tuning                equitune = true: f_G(x) = mean over G of f(g·x) (|G| passes per input)
//   the regularizer            lambda > 0 (with or without augmentation)
// and pretraining is the same run without a weight file.
//
// A run is described by a JSON config (run_config_schema(); `orbit config --run` lists every key),
// validated before any work starts. It loads the task (a dataset, optionally a subset of its classes and
// a stratified seeded fraction of its training images), builds the model from the registry, loads a
// weight file and replaces the head, freezes named parts, trains with checkpoints after every epoch
// (exact resume: model, optimizer, schedule, random state, epoch), then evaluates once on the test set:
// accuracy, orbit accuracy and consistency for each evaluation group, equivariance error and accuracy
// against the rotation angle (groups/metrics.h). Results go to out_dir: config.json (resolved),
// results.json, history.json, model.safetensors (with the normalization in its metadata), curves.
//
// A sweep chooses λ (and the learning rate) by stratified k-fold cross-validation on the training set
// only, then trains on the whole training set with the chosen values and evaluates once on the test set.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "layers/module.h"
#include "train/config.h"

namespace orbit {

const ConfigSchema& run_config_schema();
// resolve() plus the checks a schema cannot express: the group specs parse, fraction in (0, 1], the
// weight file exists and "device": "cuda" has a usable GPU (unless check_files is false: comparing or
// reporting finished runs needs neither), taps only with lambda > 0, grids not empty for a sweep.
// Throws naming the key.
nlohmann::json resolve_run_config(const nlohmann::json& user, bool check_files = true);

struct RunOptions {
  bool resume = true;            // continue from out_dir/checkpoint.safetensors when it exists
  int64_t stop_after_epoch = 0;  // > 0: return after this epoch (as if interrupted); for tests
  bool quiet = false;            // no progress bars or per-epoch lines
  bool print_summary = true;     // the closing metrics line on stderr (the CLI prints it on stdout instead)
  // Supplies the raw datasets instead of reading the config's dataset (tests).
  std::function<data::ImageClassificationDataset(data::Split)> dataset_provider;
  // Cross-validation: train on these rows of the task's training set and evaluate on `eval_rows`
  // of it instead of the test set.
  std::optional<std::vector<int64_t>> train_rows, eval_rows;
  // Cross-validation split over several processes: this one runs the fold runs whose index (over
  // the grid points and folds, in order) is shard_index modulo shard_count, and cross_validate
  // returns {"partial": true}. Running it once more unsharded reuses every finished fold run.
  int64_t shard_index = 0, shard_count = 1;
};

struct RunResult {
  nlohmann::json results;  // what results.json holds
  std::string out_dir;
  bool completed = false;
};

// The results.json of a finished run of exactly this config (in its out_dir), or nothing when the
// run has not finished or was made by another config.
std::optional<nlohmann::json> finished_results(const nlohmann::json& config);

// The orbit metrics of the group `spec` names (as a config writes it: "C4", "flips", "trivial", ...) in
// a run's "metrics": results.json keys them by the group's canonical name ("D1" for flips); an error
// naming the groups there when the run did not evaluate that group.
const nlohmann::json& orbit_metrics(const nlohmann::json& metrics, const std::string& spec);

// Trains (or resumes) and evaluates one run.
RunResult run_training(const nlohmann::json& config, const RunOptions& options = {});

// Stratified k-fold cross-validation over lambda_grid x lr_grid on the task's training set (the fold
// runs go to out_dir/cv/, and are reused when resuming). Returns {"points": [{lr, lambda, scores, mean,
// std, equivariance_error}], "best": {lambda, lr, mean, rule}, ...} and writes out_dir/cv.json and cv.svg.
nlohmann::json cross_validate(const nlohmann::json& config, const RunOptions& options = {});

// One fold run of cross_validate: its grid point, its fold (0-based) and its run config (out_dir
// under the cross-validation's out_dir/cv/).
struct CvFoldRun {
  double lr = 0, lambda = 0;
  int64_t fold = 0;
  nlohmann::json config;
};

// The fold runs cross_validate makes for `config`, in its order (the learning rates, within each the
// lambdas, within each the folds); needs neither the data nor the weights.
std::vector<CvFoldRun> cv_fold_runs(const nlohmann::json& config);

// The grid point cross_validate keeps, an index into its "points" (each with lambda, lr, scores, mean,
// std): "best" is the highest mean (the first of equal ones); "one_se" the largest lambda whose mean is
// at least cv_threshold (the best mean less its standard error, std / sqrt(folds)), and of those the
// highest mean.
size_t choose_cv_point(const nlohmann::json& points, const std::string& rule);
double cv_threshold(const nlohmann::json& points);

// cross_validate, then the final run; writes out_dir/cv.json, cv.svg and
// the final run's files in out_dir/final/. Completed fold runs are reused when resuming.
RunResult run_sweep(const nlohmann::json& config, const RunOptions& options = {});

// Evaluates a weight file written by a run on the run's task (test split, or train), with the run
// config's evaluation groups and angle sweep.
nlohmann::json evaluate_weights(const nlohmann::json& config, const std::string& weights_path,
                                data::Split split = data::Split::Test, bool quiet = false);

// The network of a finished run, ready for inference: the registry model with `weights_path` loaded,
// behind the run's input normalization, and group-averaged when the run used equi-tuning. Its input is
// raw images (pixels in [0, 1]) on the CPU, whatever device the run trained on; `class_names` receives
// the task's class names.
std::shared_ptr<Module> load_run_network(const nlohmann::json& config, const std::string& weights_path,
                                         std::vector<std::string>* class_names = nullptr);

// What a run stores in its model.safetensors about the model's input: the normalization, and the
// channel count and side of its training images (0 where the file does not say: files written before
// they were stored, or images that are not square). Nothing for a file without a normalization (a
// torchvision dump, an `orbit train` run). Values that do not read (a hand-edited file) are an error
// naming `path`, the key and the value.
struct StoredInput {
  data::ChannelStats normalization;
  int64_t image_channels = 0, image_size = 0;
};
std::optional<StoredInput> stored_input(const std::string& path, const std::map<std::string, std::string>& metadata);

// The class names a run stores in its model.safetensors ("classes"), empty when the file has none;
// an error naming `path` when the value is not a JSON list of strings.
std::vector<std::string> stored_classes(const std::string& path, const std::map<std::string, std::string>& metadata);

// `stats` for a model of `channels` input channels: one channel's statistics stand for each of them (a
// grey image copied to an RGB model's channels, or a file written before normalizations were stored
// per model channel); any other count is returned as it is.
data::ChannelStats for_model_channels(data::ChannelStats stats, int64_t channels);

}  // namespace orbit

// A study: pretrain once, then fine-tune with every method of a comparison, in every data regime, with
// several seeds; λ of the regularizer methods chosen by k-fold cross-validation (once per regime and
// method, with the study's cv_seed); then a Markdown report with the comparison table (mean ± std over
// seeds), plots and an image grid. Every run is resumable: finished runs are reused, and an interrupted
// one continues from its last checkpoint.
//
// {
//   "name": "...", "out_dir": "results/fashion_c4",
//   "pretrain": { run config },                       // trained from scratch, saved as out_dir/pretrain
//   "finetune": { run config },                       // shared by every fine-tuning run ("weights" is set)
//   "regimes": [ {"name": "10%", "fraction": 0.1},      // "set": run-config keys of this regime only, over
//                {"name": "100%", "fraction": 1, "set": {"epochs": 2}}, ... ],   // the finetune and method keys
//   "methods": [ {"name": "plain", "set": {}}, {"name": "ours", "set": {"lambda": 1}, "cv": true}, ... ],
//                                                    // "cv": true (every regime), a list of regime names
//                                                    // (those only; the others train at the set lambda)
//   "seeds": [0, 1, 2], "cv_seed": 0,
//   "grid_images": 5                                 // test images in the report's image grid
// }
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace orbit {

struct StudyOptions {
  bool resume = true;
  bool quiet = false;
  // Only these regimes (by name; empty: all).
  std::vector<std::string> regimes;
  // Only these methods (by name; empty: all). The pretraining runs regardless, and the report covers
  // every method with the runs it has.
  std::vector<std::string> methods;
  // Sharded mode, for several processes or machines at once: only the cross-validation fold runs,
  // this process taking those whose index is shard_index modulo shard_count (needs the pretrained
  // model). A later unsharded run_study reuses every finished run and does the rest.
  int64_t shard_index = 0, shard_count = 1;
};

// Validates the study and every run config it implies (before any work starts); throws naming the key.
nlohmann::json resolve_study_config(const nlohmann::json& study);

// Runs what is not done yet, then writes the report. Returns the summary (what summary.json holds).
nlohmann::json run_study(const nlohmann::json& study, const StudyOptions& options = {});

// What run_study with these options would do, without doing any of it: the pretraining's state and,
// for each selected regime and method, its cross-validation's fold runs finished and the seeds finished
// (of the planned config), of another config, or waiting for the cross-validation; and the totals to
// run. format_study_status renders it as text (`orbit study --plan`).
nlohmann::json study_status(const nlohmann::json& study, const StudyOptions& options = {});
std::string format_study_status(const nlohmann::json& status);

// Rebuilds out_dir/report.md, summary.json and the plots from the finished runs (no training).
// The group the report's image grid shows the test images under: the largest of the evaluation
// groups that do not shift the image (a translation group's many shifted copies would crowd out the
// rotations and reflections), or the largest of all when every one shifts it; the first of equals.
std::string report_grid_group(const std::vector<std::string>& eval_groups);

nlohmann::json write_study_report(const nlohmann::json& study);

}  // namespace orbit

#include "train/study.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <chrono>
#include <optional>
#include <map>
#include <set>

#include "data/dataset.h"
#include "data/split.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "groups/action.h"
#include "train/config.h"
#include "train/finetune.h"
#include "train/interrupt.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/report.h"
#include "train/trainer.h"

namespace orbit {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kStudyKeys = {"name", "description", "out_dir", "pretrain", "finetune", "regimes",
                                             "methods", "seeds", "cv_seed", "grid_images"};

// "10%" -> "10pct", "plain fine-tuning" -> "plain_fine-tuning": folder names.
std::string slug(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') o += c;
    else if (c == '%') o += "pct";
    else o += '_';
  }
  return o;
}

nlohmann::json merged(nlohmann::json base, const nlohmann::json& over) {
  for (auto& [k, v] : over.items()) base[k] = v;
  return base;
}

struct Plan {
  nlohmann::json study;
  std::string out_dir;
  nlohmann::json pretrain;  // run config
  struct Run {
    std::string regime, method;
    bool cv = false;
    nlohmann::json config;  // without weights, seed and out_dir
    std::string dir;        // out_dir/<regime>/<method>
  };
  std::vector<Run> runs;
  std::vector<int64_t> seeds;
  int64_t cv_seed = 0;
  std::vector<std::string> report_groups;  // the finetune block's eval_groups: the report's columns
};

// The run-config keys a study sets itself for every run; one set in "finetune", a method's or a
// regime's "set" would be overridden without a word, so it is refused, saying what sets it.
void check_study_owned_keys(const nlohmann::json& cfg, const std::string& where) {
  static const std::pair<const char*, const char*> kOwned[] = {
      {"out_dir", "the study puts each run under its own out_dir"},
      {"seed", "the study's \"seeds\" (and \"cv_seed\") set it"},
      {"weights", "the study fine-tunes its own pretrained model"},
      {"fraction", "each regime's \"fraction\" sets it"}};
  for (const auto& [key, why] : kOwned)
    ORBIT_CHECK(!cfg.contains(key), "study config: ", where, " must not set \"", key, "\" (got ", cfg[key].dump(), "): ", why);
}

// Each method (or regime) has a directory of its own under the study's out_dir: a name that appears
// twice, or two names that would share a directory, are refused.
void check_distinct_dirs(const nlohmann::json& list, const char* what) {
  std::map<std::string, std::string> by_dir;
  for (const auto& e : list) {
    const std::string name = e["name"].get<std::string>();
    const auto [it, fresh] = by_dir.emplace(slug(name), name);
    ORBIT_CHECK(fresh || it->second != name, "study config: ", what, " \"", name, "\" appears twice");
    ORBIT_CHECK(fresh, "study config: ", what, "s \"", it->second, "\" and \"", name, "\" would share the directory \"", it->first,
                "\" (a name keeps letters, digits, '-', '_' and '.', % as \"pct\", and turns anything else into '_'); rename one");
  }
}

Plan make_plan(const nlohmann::json& s) {
  ORBIT_CHECK(s.is_object(), "study config: expected a JSON object, got ", s.type_name());
  for (auto& [k, v] : s.items()) {
    bool known = false;
    for (const auto& a : kStudyKeys) known |= a == k;
    if (!known) {
      std::string keys;
      for (const auto& a : kStudyKeys) keys += (keys.empty() ? "" : ", ") + a;
      throw Error(str_cat("study config: unknown key \"", k, "\"", did_you_mean(k, kStudyKeys),
                          "; allowed keys: ", keys));
    }
  }
  for (const char* k : {"out_dir", "pretrain", "finetune", "regimes", "methods", "seeds"})
    ORBIT_CHECK(s.contains(k), "study config: missing required key \"", k, "\"");
  Plan p;
  p.study = s;
  ORBIT_CHECK(s["out_dir"].is_string() && !s["out_dir"].get<std::string>().empty(), "study config: key \"out_dir\": expected a non-empty string, got ", s["out_dir"].dump());
  p.out_dir = s["out_dir"];
  ORBIT_CHECK(s["pretrain"].is_object(), "study config: key \"pretrain\": expected a run config object, got ", s["pretrain"].dump());
  ORBIT_CHECK(s["finetune"].is_object(), "study config: key \"finetune\": expected a run config object, got ", s["finetune"].dump());
  check_study_owned_keys(s["finetune"], "key \"finetune\"");
  ORBIT_CHECK(!s["pretrain"].contains("out_dir"), "study config: key \"pretrain\" must not set \"out_dir\" (got ",
              s["pretrain"]["out_dir"].dump(), "): the study pretrains in its out_dir/pretrain");
  ORBIT_CHECK(s["seeds"].is_array() && !s["seeds"].empty(), "study config: key \"seeds\": expected a non-empty list of integers, got ", s["seeds"].dump());
  for (const auto& v : s["seeds"]) {
    ORBIT_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, "study config: key \"seeds\": expected integers >= 0, got ", v.dump());
    ORBIT_CHECK(std::find(p.seeds.begin(), p.seeds.end(), v.get<int64_t>()) == p.seeds.end(), "study config: key \"seeds\": seed ",
                v.dump(), " appears twice in ", s["seeds"].dump());
    p.seeds.push_back(v.get<int64_t>());
  }
  ORBIT_CHECK(!s.contains("cv_seed") || (s["cv_seed"].is_number_integer() && s["cv_seed"].get<int64_t>() >= 0),
              "study config: key \"cv_seed\": expected an integer >= 0, got ", s.value("cv_seed", nlohmann::json()).dump());
  ORBIT_CHECK(!s.contains("grid_images") || (s["grid_images"].is_number_integer() && s["grid_images"].get<int64_t>() >= 0),
              "study config: key \"grid_images\": expected an integer >= 0 (how many test images, one per class, the "
              "report's grid shows; 0: no grid), got ", s.value("grid_images", nlohmann::json()).dump());
  for (const char* k : {"name", "description"})
    ORBIT_CHECK(!s.contains(k) || s[k].is_string(), "study config: key \"", k, "\": expected a string, got ", s[k].dump());
  p.cv_seed = s.value("cv_seed", p.seeds[0]);
  p.pretrain = merged(s["pretrain"], {{"out_dir", p.out_dir + "/pretrain"}});
  try {
    resolve_run_config(p.pretrain);
  } catch (const Error& e) {
    throw Error(str_cat("study config: key \"pretrain\": ", e.what()));
  }
  // The report compares every method on the orbits of the finetune block's "eval_groups".
  std::vector<std::string>& report_groups = p.report_groups;
  try {
    report_groups = resolve_run_config(merged(s["finetune"], {{"out_dir", p.out_dir}}))["eval_groups"].get<std::vector<std::string>>();
  } catch (const Error& e) {
    throw Error(str_cat("study config: key \"finetune\": ", e.what()));
  }
  ORBIT_CHECK(!report_groups.empty(), "study config: key \"finetune\": \"eval_groups\" is empty; the report compares the "
              "methods on the test set's orbits under these groups, e.g. [\"C4\", \"C8\"]");
  ORBIT_CHECK(s["regimes"].is_array() && !s["regimes"].empty(), "study config: key \"regimes\": expected a non-empty list of {\"name\", \"fraction\", \"set\"}, got ", s["regimes"].dump());
  ORBIT_CHECK(s["methods"].is_array() && !s["methods"].empty(), "study config: key \"methods\": expected a non-empty list of {\"name\", \"set\", \"cv\"}, got ", s["methods"].dump());
  for (const auto& m : s["methods"]) {
    ORBIT_CHECK(m.is_object() && m.contains("name") && m["name"].is_string() && !m["name"].get<std::string>().empty(),
                "study config: key \"methods\": each method needs a non-empty \"name\", got ", m.dump());
    for (auto& [k, v] : m.items())
      ORBIT_CHECK(k == "name" || k == "set" || k == "cv", "study config: method \"", m["name"].get<std::string>(), "\": unknown key \"", k, "\"", did_you_mean(k, {"name", "set", "cv"}), "; allowed: name, set, cv");
    if (m.contains("set") && m["set"].is_object()) check_study_owned_keys(m["set"], str_cat("method \"", m["name"].get<std::string>(), "\": key \"set\""));
  }
  std::set<std::string> regime_names;
  for (const auto& r : s["regimes"]) {
    ORBIT_CHECK(r.is_object() && r.contains("name") && r["name"].is_string() && !r["name"].get<std::string>().empty() &&
                    r.contains("fraction") && r["fraction"].is_number(),
                "study config: key \"regimes\": each regime needs {\"name\": string, \"fraction\": number}, got ", r.dump());
    regime_names.insert(r["name"].get<std::string>());
  }
  check_distinct_dirs(s["methods"], "method");
  check_distinct_dirs(s["regimes"], "regime");
  // "cv": true cross-validates lambda in every regime, a list of regime names only in those (the others
  // train at the lambda the method sets), false or absent in none.
  auto cross_validated = [&](const nlohmann::json& m, const std::string& regime) {
    if (!m.contains("cv")) return false;
    const nlohmann::json& cv = m["cv"];
    if (cv.is_boolean()) return cv.get<bool>();
    return std::find(cv.begin(), cv.end(), regime) != cv.end();
  };
  for (const auto& m : s["methods"]) {
    if (!m.contains("cv")) continue;
    const nlohmann::json& cv = m["cv"];
    const std::string allowed = [&] {
      std::string names;
      for (const auto& n : regime_names) names += (names.empty() ? "" : ", ") + n;
      return names;
    }();
    ORBIT_CHECK(cv.is_boolean() || cv.is_array(), "study config: method \"", m["name"].get<std::string>(),
                "\": key \"cv\": expected true, false or a list of regime names (", allowed, "), got ", cv.dump());
    if (cv.is_array())
      for (const auto& v : cv)
        ORBIT_CHECK(v.is_string() && regime_names.count(v.get<std::string>()), "study config: method \"",
                    m["name"].get<std::string>(), "\": key \"cv\": unknown regime ", v.dump(),
                    v.is_string() ? did_you_mean(v.get<std::string>(), {regime_names.begin(), regime_names.end()}) : std::string(),
                    "; the study's regimes: ", allowed);
  }
  for (const auto& r : s["regimes"]) {
    for (auto& [k, v] : r.items())
      ORBIT_CHECK(k == "name" || k == "fraction" || k == "set", "study config: regime \"", r["name"].get<std::string>(),
                  "\": unknown key \"", k, "\"", did_you_mean(k, {"name", "fraction", "set"}), "; allowed: name, fraction, set");
    ORBIT_CHECK(!r.contains("set") || r["set"].is_object(), "study config: regime \"", r["name"].get<std::string>(),
                "\": key \"set\": expected an object of run-config keys, got ", r.value("set", nlohmann::json()).dump());
    if (r.contains("set")) check_study_owned_keys(r["set"], str_cat("regime \"", r["name"].get<std::string>(), "\": key \"set\""));
    for (const auto& m : s["methods"]) {
      Plan::Run run;
      run.regime = r["name"];
      run.method = m["name"];
      run.cv = cross_validated(m, run.regime);
      // Precedence: the method's keys over the study's finetune keys, the regime's over both (a regime can, for
      // example, train fewer epochs on more data).
      run.config = merged(merged(s["finetune"], m.value("set", nlohmann::json::object())), r.value("set", nlohmann::json::object()));
      run.config["fraction"] = r["fraction"];
      run.dir = p.out_dir + "/" + slug(run.regime) + "/" + slug(run.method);
      try {
        nlohmann::json probe = run.config;
        probe["out_dir"] = run.dir;
        const nlohmann::json rc = resolve_run_config(probe);
        std::set<std::string> evaluated;
        for (const auto& g : rc["eval_groups"]) evaluated.insert(groups::Group::parse(g.get<std::string>()).name());
        for (const auto& g : report_groups)
          ORBIT_CHECK(evaluated.count(groups::Group::parse(g).name()), "\"eval_groups\" is ", rc["eval_groups"].dump(),
                      ", without ", g, " of the finetune block's ", nlohmann::json(report_groups).dump(),
                      ": the report compares every method on the orbits of those groups");
      } catch (const Error& e) {
        throw Error(str_cat("study config: regime \"", run.regime, "\", method \"", run.method, "\": ", e.what()));
      }
      p.runs.push_back(run);
    }
  }
  return p;
}

bool finished(const std::string& dir, const nlohmann::json& config) {
  return finished_results(merged(config, {{"out_dir", dir}})).has_value();
}

// Where a seed of `run` goes.
std::string seed_dir(const Plan::Run& run, int64_t seed) { return run.dir + "/seed" + std::to_string(seed); }

// The config a cross-validated run's lambda is chosen with (its fold runs go under run.dir/cv/).
nlohmann::json cv_config(const Plan& p, const Plan::Run& run, const std::string& weights) {
  return merged(run.config, {{"weights", weights}, {"seed", p.cv_seed}, {"out_dir", run.dir}});
}

// The config every seed of `run` is planned with: the method's config with the pretrained weights and,
// for a cross-validated method, the lambda and lr its finished cross-validation (run.dir/cv.json)
// chooses by the config's rule; nothing while that is still unknown, and nothing while cv.json is of
// another grid than the config's (the study rewrites it when it cross-validates again). The study runs
// these configs and its report counts only runs of them.
std::optional<nlohmann::json> planned_config(const Plan& p, const Plan::Run& run, const std::string& weights) {
  nlohmann::json cfg = merged(run.config, {{"weights", weights}});
  if (run.cv) {
    const std::string path = run.dir + "/cv.json";
    if (!fs::exists(path)) return std::nullopt;
    const nlohmann::json cv = read_json_file(path);
    std::set<std::pair<double, double>> grid, recorded;
    for (const CvFoldRun& f : cv_fold_runs(cv_config(p, run, weights))) grid.insert({f.lr, f.lambda});
    for (const auto& pt : cv.at("points")) recorded.insert({pt.at("lr").get<double>(), pt.at("lambda").get<double>()});
    if (grid != recorded) return std::nullopt;
    const std::string rule = resolve_run_config(merged(cfg, {{"out_dir", run.dir}}), false)["cv_rule"];
    const nlohmann::json& chosen = cv.at("points")[choose_cv_point(cv.at("points"), rule)];
    cfg["lambda"] = chosen["lambda"];
    cfg["lr"] = chosen["lr"];
  }
  return cfg;
}

nlohmann::json seed_config(const nlohmann::json& planned, const Plan::Run& run, int64_t seed) {
  return merged(planned, {{"seed", seed}, {"out_dir", seed_dir(run, seed)}});
}

std::string pm(const std::vector<double>& v, double scale = 100, int decimals = 1) {
  double mean = 0, var = 0;
  for (double x : v) mean += x / v.size();
  for (double x : v) var += (x - mean) * (x - mean) / std::max<size_t>(1, v.size() - 1);
  char b[64];
  if (v.size() > 1)
    std::snprintf(b, sizeof b, "%.*f ± %.*f", decimals, scale * mean, decimals, scale * std::sqrt(var));
  else
    std::snprintf(b, sizeof b, "%.*f", decimals, scale * mean);
  return b;
}

// The pretraining's results are there but its weights are not (results are committed, weight files are
// not). Pretraining is deterministic for a seed and a thread count, so it is run again beside the
// recorded one; the weights are kept only if the new run reproduces the recorded metrics exactly, since
// the finished fine-tuning runs started from the recorded model. Anything else is an error that says
// what differs, never a study that silently mixes two pretrained models.
void regenerate_pretraining(const Plan& p, const RunOptions& ro) {
  const std::string pre_dir = p.out_dir + "/pretrain";
  const std::string regen_dir = pre_dir + "/regenerated";
  const nlohmann::json recorded = read_json_file(pre_dir + "/results.json");
  if (!ro.quiet)
    std::fprintf(stderr,
                 "== the pretrained weights %s/model.safetensors are absent (weight files are not kept with the results):\n"
                 "   pretraining again in %s and checking that it reproduces the recorded metrics\n",
                 pre_dir.c_str(), regen_dir.c_str());
  const nlohmann::json regen_cfg = merged(p.pretrain, {{"out_dir", regen_dir}});
  const RunResult run = run_training(regen_cfg, ro);
  if (!run.completed) throw Error(str_cat("study: the pretraining in ", regen_dir, " stopped before it finished; run the study again to go on"));
  const nlohmann::json& now = run.results;
  const nlohmann::json& want = recorded.at("metrics");
  const nlohmann::json& got = now.at("metrics");
  if (want != got) {
    std::string diff;
    const nlohmann::json fw = want.flatten(), fg = got.flatten();
    for (const auto& [k, v] : fw.items()) {
      if (fg.contains(k) && fg[k] == v) continue;
      diff += str_cat("\n  ", k, ": recorded ", v.dump(), ", now ", fg.contains(k) ? fg[k].dump() : "absent");
      if (diff.size() > 800) break;
    }
    throw Error(str_cat("study: the pretraining run again in ", regen_dir, " does not reproduce the recorded one in ", pre_dir,
                        " (recorded with ", recorded.value("threads", nlohmann::json()).dump(), " threads, run now with ",
                        now.value("threads", nlohmann::json()).dump(),
                        "), so its weights are not the ones the finished runs were fine-tuned from:", diff,
                        "\nRun with --threads as recorded, or start the study over (--fresh, or remove ", p.out_dir, ")"));
  }
  fs::rename(regen_dir + "/model.safetensors", pre_dir + "/model.safetensors");
  fs::remove_all(regen_dir);
  if (!ro.quiet) std::fprintf(stderr, "== the pretraining reproduced the recorded metrics exactly; its weights are in %s\n", pre_dir.c_str());
}

// `orbit study --regime/--method`: each name must be one of the study's (`list`: its "regimes" or
// "methods"); an unknown one is an error naming them all.
void check_selection(const std::vector<std::string>& selection, const nlohmann::json& list, const char* what) {
  std::vector<std::string> names;
  for (const auto& e : list) names.push_back(e["name"].get<std::string>());
  for (const auto& name : selection) {
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    std::string all;
    for (const auto& n : names) all += (all.empty() ? "\"" : ", \"") + n + "\"";
    throw Error(str_cat("study: unknown ", what, " \"", name, "\"", did_you_mean(name, names), "; the study's ", what, "s: ", all));
  }
}

bool selected(const std::vector<std::string>& selection, const std::string& name) {
  return selection.empty() || std::find(selection.begin(), selection.end(), name) != selection.end();
}

// Whether `run` is among the regimes and methods the options select.
bool in_selection(const Plan::Run& run, const StudyOptions& options) {
  return selected(options.regimes, run.regime) && selected(options.methods, run.method);
}

// study_status for a plan whose selection is already checked.
nlohmann::json status_of(const Plan& p, const StudyOptions& options);

// The study's runs in order (the pretraining, then each selected method's cross-validation and seed
// runs), skipping the finished ones; with a shard, only its share of the cross-validation fold runs.
void make_runs(const Plan& p, const StudyOptions& options, const RunOptions& ro, const std::string& pre_dir, bool sharded) {
  // Without resume (--fresh) every run is made anew, the finished ones too (a shard makes its share of
  // the fold runs anew, and leaves the pretraining that all shards read).
  const bool reuse = options.resume;
  const nlohmann::json st = status_of(p, options);
  const std::string weights = pre_dir + "/model.safetensors";
  // Absent weights (a fresh clone) are made again only for runs that still need them.
  if (reuse && st["pretraining"] == "finished, weights absent" && st["to_run"]["pretraining"].get<bool>())
    regenerate_pretraining(p, ro);
  if (!finished(pre_dir, p.pretrain) || (!reuse && !sharded)) {
    if (!options.quiet) std::fprintf(stderr, "== pretraining (%s)\n", pre_dir.c_str());
    run_training(p.pretrain, ro);
  }
  // Nothing left to make: the runs are not visited, so their configs, which name pretrained weights
  // that a fresh clone of finished results lacks, are not checked again.
  const nlohmann::json& left = st["to_run"];
  if (reuse && left["cv_fold_runs"] == 0 && left["seed_runs"] == 0 && left["methods_waiting_for_cv"] == 0) return;

  const size_t total =
      std::count_if(p.runs.begin(), p.runs.end(), [&](const Plan::Run& run) { return in_selection(run, options); }) * p.seeds.size();
  size_t k = 0;
  // For the pace line: the seed runs still to make (every seed of a method whose cross-validation has
  // not chosen lambda yet counts), and the time the ones made so far took.
  int64_t to_make = 0, made = 0;
  double made_seconds = 0;
  if (!sharded && !options.quiet)
    to_make = !reuse ? static_cast<int64_t>(total)
                     : st["to_run"]["seed_runs"].get<int64_t>() +
                           st["to_run"]["methods_waiting_for_cv"].get<int64_t>() * static_cast<int64_t>(p.seeds.size());
  for (const Plan::Run& run : p.runs) {
    if (!in_selection(run, options)) continue;
    if (sharded && !run.cv) continue;
    if (run.cv) {
      const nlohmann::json cv_cfg = cv_config(p, run, weights);
      if (!options.quiet) std::fprintf(stderr, "== %s, %s: cross-validating lambda\n", run.regime.c_str(), run.method.c_str());
      RunOptions cvo = ro;
      cvo.shard_index = options.shard_index;
      cvo.shard_count = options.shard_count;
      cross_validate(cv_cfg, cvo);  // writes run.dir/cv.json, which planned_config reads
      if (sharded) continue;
    }
    const nlohmann::json cfg = planned_config(p, run, weights).value();
    for (int64_t seed : p.seeds) {
      ++k;
      const nlohmann::json rc = seed_config(cfg, run, seed);
      if (reuse && finished_results(rc)) continue;
      if (!options.quiet) {
        const std::string pace = pace_note(made, made_seconds, to_make, ", cross-validation aside");
        std::fprintf(stderr, "== run %zu/%zu: %s, %s, seed %lld%s\n", k, total, run.regime.c_str(), run.method.c_str(),
                     static_cast<long long>(seed), pace.c_str());
      }
      const auto started = std::chrono::steady_clock::now();
      run_training(rc, ro);
      made_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      ++made;
    }
  }
}

}  // namespace

nlohmann::json resolve_study_config(const nlohmann::json& study) {
  make_plan(study);
  return study;
}

nlohmann::json run_study(const nlohmann::json& study, const StudyOptions& options) {
  const Plan p = make_plan(study);
  check_selection(options.regimes, study["regimes"], "regime");
  check_selection(options.methods, study["methods"], "method");
  make_output_dir(p.out_dir, "study config: key \"out_dir\"");
  write_json_file(p.out_dir + "/study.json", study);
  RunOptions ro;
  ro.resume = options.resume;
  ro.quiet = options.quiet;

  const std::string pre_dir = p.out_dir + "/pretrain";
  const bool sharded = options.shard_count > 1;
  ORBIT_CHECK(!sharded || finished(pre_dir, p.pretrain), "study: sharded mode needs the finished pretraining in ", pre_dir,
              "; run the study once without --shard first (it pretrains first)");
  ORBIT_CHECK(options.shard_index >= 0 && options.shard_index < std::max<int64_t>(1, options.shard_count),
              "study: shard ", options.shard_index, " of ", options.shard_count, " does not exist");
  try {
    make_runs(p, options, ro, pre_dir, sharded);
  } catch (const Interrupted& e) {
    throw Interrupted(str_cat(e.what(), ". The study keeps every finished run: the same command goes on from there (with "
                              "--plan it lists what is left)"));
  }
  if (sharded) return {{"partial", true}};
  return write_study_report(study);
}

nlohmann::json study_status(const nlohmann::json& study, const StudyOptions& options) {
  const Plan p = make_plan(study);
  check_selection(options.regimes, study["regimes"], "regime");
  check_selection(options.methods, study["methods"], "method");
  return status_of(p, options);
}

namespace {

nlohmann::json status_of(const Plan& p, const StudyOptions& options) {
  const std::string pre_dir = p.out_dir + "/pretrain";
  const std::string weights = pre_dir + "/model.safetensors";
  nlohmann::json st;
  st["out_dir"] = p.out_dir;
  st["seeds"] = p.seeds;
  st["pretraining"] = !finished(pre_dir, p.pretrain) ? "to run" : fs::exists(weights) ? "finished" : "finished, weights absent";
  int64_t folds_to_run = 0, seeds_to_run = 0, waiting = 0;
  st["runs"] = nlohmann::json::array();
  for (const Plan::Run& run : p.runs) {
    if (!in_selection(run, options)) continue;
    nlohmann::json r = {{"regime", run.regime}, {"method", run.method}};
    bool cv_done = true;
    if (run.cv) {
      const std::vector<CvFoldRun> folds = cv_fold_runs(cv_config(p, run, weights));
      const auto n = std::count_if(folds.begin(), folds.end(), [](const CvFoldRun& f) { return finished_results(f.config).has_value(); });
      r["cv"] = {{"fold_runs", folds.size()}, {"finished", n}};
      folds_to_run += static_cast<int64_t>(folds.size()) - n;
      cv_done = n == static_cast<int64_t>(folds.size());
    }
    // With the cross-validation unfinished, or its cv.json of another grid (one it would rewrite), its
    // choice (and so which seed runs count) is not known yet.
    const std::optional<nlohmann::json> planned = cv_done ? planned_config(p, run, weights) : std::nullopt;
    if (planned && run.cv) r["cv"]["lambda"] = (*planned)["lambda"];
    int64_t done = 0, other = 0;
    for (int64_t seed : p.seeds) {
      if (planned && finished_results(seed_config(*planned, run, seed)))
        ++done;
      else if (fs::exists(seed_dir(run, seed) + "/results.json"))
        ++other;
    }
    r["seeds"] = {{"finished", done}, {"other_config", other}, {"after_cv", !planned}};
    if (planned)
      seeds_to_run += static_cast<int64_t>(p.seeds.size()) - done;
    else
      ++waiting;
    st["runs"].push_back(r);
  }
  // Finished pretraining whose weights are absent is made again only when some run still needs them.
  const bool others = folds_to_run + seeds_to_run + waiting > 0;
  st["to_run"] = {{"pretraining", st["pretraining"] == "to run" || (st["pretraining"] != "finished" && others)},
                  {"cv_fold_runs", folds_to_run}, {"seed_runs", seeds_to_run}, {"methods_waiting_for_cv", waiting}};
  return st;
}

}  // namespace

std::string format_study_status(const nlohmann::json& st) {
  const std::string pre = st["pretraining"];
  std::string out = str_cat("study in ", st["out_dir"].get<std::string>(), ", seeds ", st["seeds"].dump(), "\npretraining: ",
                            pre != "finished, weights absent" ? pre
                            : st["to_run"]["pretraining"].get<bool>()
                                ? "finished, its weights absent: pretrained again first (kept only if it reproduces the recorded metrics)"
                                : "finished, its weights absent (no run left needs them)",
                            "\n");
  size_t width = 0;
  for (const auto& r : st["runs"]) width = std::max(width, r["method"].get<std::string>().size());
  std::string regime;
  for (const auto& r : st["runs"]) {
    if (r["regime"] != regime) {
      regime = r["regime"];
      out += regime + "\n";
    }
    const std::string method = r["method"];
    std::string line = "  " + method + std::string(width - method.size() + 2, ' ');
    if (r.contains("cv")) {
      const auto& cv = r["cv"];
      line += str_cat("cv ", cv["finished"].get<int64_t>(), "/", cv["fold_runs"].get<int64_t>(), " fold runs");
      if (cv.contains("lambda")) {
        char b[32];
        std::snprintf(b, sizeof b, ", lambda %g", cv["lambda"].get<double>());
        line += b;
      }
      line += "; ";
    }
    const auto& sd = r["seeds"];
    if (sd["after_cv"].get<bool>())
      line += "seeds after the cross-validation";
    else
      line += str_cat("seeds ", sd["finished"].get<int64_t>(), "/", st["seeds"].size(), " finished");
    if (sd["other_config"].get<int64_t>() > 0)
      line += str_cat(" (", sd["other_config"].get<int64_t>(), " left from another config, not counted)");
    out += line + "\n";
  }
  const auto& t = st["to_run"];
  out += str_cat("to run: ", t["pretraining"].get<bool>() ? "the pretraining, " : "", t["cv_fold_runs"].get<int64_t>(), " cv fold runs, ",
                 t["seed_runs"].get<int64_t>(), " seed runs");
  if (t["methods_waiting_for_cv"].get<int64_t>() > 0)
    out += str_cat(", and the seeds of ", t["methods_waiting_for_cv"].get<int64_t>(), " method(s) once their cross-validation has chosen lambda");
  return out + "\n";
}

std::string report_grid_group(const std::vector<std::string>& eval_groups) {
  ORBIT_CHECK(!eval_groups.empty(), "report_grid_group: no evaluation groups");
  auto rank = [](const std::string& g) {
    const groups::Group G = groups::Group::parse(g);
    return std::make_pair(G.translation_steps() <= 1, G.order());
  };
  std::string best = eval_groups[0];
  for (const auto& g : eval_groups)
    if (rank(g) > rank(best)) best = g;
  return best;
}

nlohmann::json write_study_report(const nlohmann::json& study) {
  const Plan p = make_plan(study);
  const std::string weights = p.out_dir + "/pretrain/model.safetensors";
  ORBIT_CHECK(fs::exists(p.out_dir + "/pretrain/results.json"), "report: the study in ", p.out_dir,
              " has no finished pretraining (", p.out_dir, "/pretrain/results.json), so nothing to report yet; "
              "`orbit study` runs it (`orbit study --plan` lists what is left)");
  const nlohmann::json pre = read_json_file(p.out_dir + "/pretrain/results.json");
  // The config each run is planned with (nothing while its cross-validation has not chosen yet), read
  // once for the table, the CV curves and the image grid.
  std::vector<std::optional<nlohmann::json>> planned_of;
  for (const Plan::Run& run : p.runs) planned_of.push_back(planned_config(p, run, weights));
  const auto planned_for = [&](const Plan::Run& run) -> const std::optional<nlohmann::json>& {
    return planned_of[static_cast<size_t>(&run - p.runs.data())];
  };
  const std::vector<std::string>& eval_groups = p.report_groups;

  nlohmann::json summary = {{"name", p.study.value("name", "study")}, {"pretrain", pre["metrics"]}, {"regimes", nlohmann::json::object()}};
  std::string md = "# " + p.study.value("name", std::string("Study")) + "\n\n";
  if (p.study.contains("description")) md += p.study["description"].get<std::string>() + "\n\n";
  md += str_cat("Reproduce: `build/orbit study --config ", p.out_dir, "/study.json` (finished runs are reused; ",
                "`build/orbit report --config ", p.out_dir, "/study.json` rebuilds this page).\n\n");
  md += str_cat("Pretrained model: ", pre["config"]["model"].get<std::string>(), " on classes ", pre["config"]["classes"].dump(),
                " of ", pre["config"]["dataset"].get<std::string>(), " with augmentation \"", pre["config"]["augment"].get<std::string>(),
                "\", ", pre["config"]["epochs"].get<int64_t>(), pre["config"]["epochs"].get<int64_t>() == 1 ? " epoch: " : " epochs: ",
                summarize_metrics(pre), ".\n\n");
  md += "Metrics on the test set of the new task (mean ± std over seeds " + p.study["seeds"].dump() +
        "): accuracy upright, orbit accuracy (mean over the group's transforms of the test set), orbit consistency "
        "(share of test images predicted alike on the whole orbit), equivariance error ||f(gx) − f(x)|| / ||f(x)||, "
        "and forward passes per input at inference. λ: chosen by cross-validation where marked (cv).\n\n";

  // The evaluation group whose elements the report shows one by one (rotations and reflections before
  // shifts): each method's accuracy on each element, where a method loses (a table when the group is
  // small enough to read as one), and the image grid.
  const groups::Group G = groups::Group::parse(report_grid_group(eval_groups));
  const bool element_table = G.order() > 1 && G.order() <= 16;

  std::set<std::string> regimes_done;
  for (const auto& reg : p.study["regimes"]) {
    const std::string regime = reg["name"];
    md += "## " + regime + " of the training images\n\n| method | λ | upright |";
    std::string sep = "|---|---|---|";
    for (const auto& g : eval_groups) md += " " + g + " orbit |", sep += "---|";
    for (const auto& g : eval_groups) md += " " + g + " consistency |", sep += "---|";
    md += " " + eval_groups[0] + " error | passes | train s |\n" + sep + "---|---|---|\n";
    std::vector<Series> angle_series;
    std::string element_md;  // rows of the per-element table
    nlohmann::json rs = nlohmann::json::object();
    std::string any_dir;
    for (const Plan::Run& run : p.runs) {
      if (run.regime != regime) continue;
      std::vector<double> up, err, secs, lambdas;
      std::map<std::string, std::vector<double>> orb, cons;
      std::vector<std::vector<double>> element_acc(static_cast<size_t>(G.order()));
      std::vector<double> angle_mean;
      std::vector<double> angles;
      int64_t passes = 1;
      int64_t n = 0, stale = 0;
      const std::optional<nlohmann::json>& planned = planned_for(run);
      for (int64_t seed : p.seeds) {
        if (!fs::exists(seed_dir(run, seed) + "/results.json")) continue;
        // Only a run of the config the study plans counts: one left from another lambda (a changed grid
        // or rule) or another method config is named, not averaged in.
        const std::optional<nlohmann::json> found = planned ? finished_results(seed_config(*planned, run, seed)) : std::nullopt;
        if (!found) {
          ++stale;
          continue;
        }
        const nlohmann::json& r = *found;
        const auto& m = r["metrics"];
        up.push_back(m["accuracy"]);
        for (const auto& g : eval_groups) {
          const nlohmann::json& om = orbit_metrics(m, g);
          orb[g].push_back(om.at("orbit_accuracy"));
          cons[g].push_back(om.at("consistency"));
        }
        err.push_back(orbit_metrics(m, eval_groups[0]).at("equivariance_error"));
        if (element_table) {
          const nlohmann::json& ea = orbit_metrics(m, G.name()).value("element_accuracy", nlohmann::json::object());
          for (int64_t g = 0; g < G.order(); ++g)
            if (ea.contains(G.element_name(g))) element_acc[g].push_back(ea[G.element_name(g)]);
        }
        secs.push_back(r["train_seconds"]);
        lambdas.push_back(r["config"]["lambda"]);
        passes = m["forward_passes_per_input"];
        angles = m["angles"].get<std::vector<double>>();
        const auto aa = m["angle_accuracy"].get<std::vector<double>>();
        if (angle_mean.empty()) angle_mean.assign(aa.size(), 0.0);
        for (size_t i = 0; i < aa.size() && i < angle_mean.size(); ++i) angle_mean[i] += aa[i];
        ++n;
        any_dir = seed_dir(run, seed);
      }
      const std::string stale_note =
          stale ? str_cat(" (", stale, stale == 1 ? " run" : " runs", " of another config ignored)") : std::string();
      if (n == 0) {
        md += "| " + run.method + stale_note + " | (not run) |\n";
        continue;
      }
      char lam[64];
      std::snprintf(lam, sizeof lam, "%g%s", lambdas[0], run.cv ? " (cv)" : "");
      // A method with only some of its seeds finished so far says so beside its name.
      const std::string partial = n < static_cast<int64_t>(p.seeds.size())
                                      ? str_cat(" (", n, " of ", p.seeds.size(), " seeds)") : std::string();
      md += "| " + run.method + partial + stale_note + " | " + lam + " | " + pm(up) + " |";
      for (const auto& g : eval_groups) md += " " + pm(orb[g]) + " |";
      for (const auto& g : eval_groups) md += " " + pm(cons[g]) + " |";
      md += " " + pm(err, 1, 3) + " | " + std::to_string(passes) + " | " + pm(secs, 1, 0) + " |\n";
      for (auto& a : angle_mean) a = 100 * a / n;
      if (!angles.empty()) angle_series.push_back({run.method, angles, angle_mean});
      nlohmann::json mj = {{"lambda", lambdas[0]}, {"cv", run.cv}, {"seeds", n}, {"accuracy", up}, {"equivariance_error", err},
                           {"forward_passes_per_input", passes}, {"train_seconds", secs}, {"orbit_accuracy", nlohmann::json::object()},
                           {"consistency", nlohmann::json::object()}};
      for (const auto& g : eval_groups) mj["orbit_accuracy"][g] = orb[g], mj["consistency"][g] = cons[g];
      if (element_table) {
        element_md += "| " + run.method + partial + " |";
        nlohmann::json ej = nlohmann::json::object();
        for (int64_t g = 0; g < G.order(); ++g) {
          // Runs from before the per-element accuracies were recorded have none.
          const bool every_seed = static_cast<int64_t>(element_acc[g].size()) == n;
          element_md += " " + (every_seed ? pm(element_acc[g]) : std::string("–")) + " |";
          if (every_seed) ej[G.element_name(g)] = element_acc[g];
        }
        element_md += "\n";
        mj["element_accuracy"] = {{"group", G.name()}, {"elements", ej}};
      }
      rs[run.method] = mj;
    }
    if (!element_md.empty()) {
      std::string legend = "e: as it is";
      if (G.rotations() > 1) legend += "; rN: rotated by N° counter-clockwise";
      if (G.has_reflections()) legend += "; f: flipped left-right (then rotated)";
      if (G.translation_steps() > 1) legend += "; t(x,y): shifted by x and y steps";
      md += "\nAccuracy on the test set transformed by each element of " + G.name() + ", in % (" + legend +
            "):\n\n| method |";
      std::string sep = "|---|";
      for (int64_t g = 0; g < G.order(); ++g) md += " " + G.element_name(g) + " |", sep += "---|";
      md += "\n" + sep + "\n" + element_md;
    }
    summary["regimes"][regime] = rs;
    const std::string rdir = p.out_dir + "/" + slug(regime);
    fs::create_directories(rdir);
    if (!angle_series.empty()) {
      write_text_file(rdir + "/angle.svg", svg_line_chart("test accuracy against the rotation angle (" + regime + ")",
                                                          "angle (degrees)", "accuracy (%)", angle_series, 720, 420));
      md += "\n![accuracy against angle](" + slug(regime) + "/angle.svg)\n\n";
    }
    for (const Plan::Run& run : p.runs)  // the curves of a cross-validation of the config's grid only
      if (run.regime == regime && run.cv && fs::exists(run.dir + "/cv.svg") && planned_for(run)) {
        const std::string rel = slug(regime) + "/" + slug(run.method);
        md += "Cross-validation of λ for " + run.method + ": ![cv](" + rel + "/cv.svg) ![equivariance error against λ](" + rel +
              "/cv_equivariance.svg)\n\n";
      }

    // Image grid: a few test images under G, with each method's prediction.
    const int64_t K = p.study.value("grid_images", 4);
    if (K > 0 && !any_dir.empty()) {
      // The first seed's model of each method, when it is of the config the study plans (as in the
      // table above). Weight files are not committed with a study's results, so a clone holds only
      // the weights of the runs it made itself: a grid of some of the methods does not replace one
      // already there.
      std::vector<const Plan::Run*> drawn;
      int64_t without_weights = 0;  // methods whose first seed finished but whose weights are not here
      for (const Plan::Run& run : p.runs) {
        if (run.regime != regime) continue;
        const std::optional<nlohmann::json>& planned = planned_for(run);
        if (!planned || !finished_results(seed_config(*planned, run, p.seeds[0]))) continue;
        if (fs::exists(seed_dir(run, p.seeds[0]) + "/model.safetensors"))
          drawn.push_back(&run);
        else
          ++without_weights;
      }
      const std::string grid_path = rdir + "/grid.svg";
      if (!drawn.empty() && without_weights > 0 && fs::exists(grid_path)) {
        std::fprintf(stderr, "== %s: kept %s; the weight files of %lld finished method(s) are not here to draw it again\n",
                     regime.c_str(), grid_path.c_str(), static_cast<long long>(without_weights));
        drawn.clear();
      }
      if (!drawn.empty()) {  // the test images are read only when there is a grid to draw
        const nlohmann::json rc = read_json_file(any_dir + "/results.json")["config"];
        data::ImageClassificationDataset test =
            read_dataset(rc["dataset"], data::Split::Test, rc["data_dir"], image_format_of(rc));
        if (!rc["classes"].empty()) test = data::select_classes(test, rc["classes"].get<std::vector<int64_t>>());
        std::vector<int64_t> rows;  // the first image of each of the first K classes
        const auto labels = test.labels.to_vector<int64_t>();
        for (int64_t c = 0; c < test.num_classes() && static_cast<int64_t>(rows.size()) < K; ++c) {
          for (size_t i = 0; i < labels.size(); ++i)
            if (labels[i] == c) {
              rows.push_back(static_cast<int64_t>(i));
              break;
            }
        }
        const data::ImageClassificationDataset few = test.subset(rows);
        std::vector<std::string> cols;
        for (int64_t g = 0; g < G.order(); ++g) cols.push_back(G.element_name(g));
        std::vector<GridRow> grid;
        for (const Plan::Run* run : drawn) {
          const std::string dir = seed_dir(*run, p.seeds[0]);
          std::vector<std::string> names;
          auto net = load_run_network(read_json_file(dir + "/results.json")["config"], dir + "/model.safetensors", &names);
          NoGradGuard ng;
          std::vector<Tensor> acted;
          std::vector<std::vector<int64_t>> preds;
          for (int64_t g = 0; g < G.order(); ++g) {
            acted.push_back(groups::act(G, g, few.images, groups::FieldKind::Scalar));
            preds.push_back(argmax((*net)(acted.back()), 1).to_vector<int64_t>());
          }
          const auto truth = few.labels.to_vector<int64_t>();
          for (size_t i = 0; i < rows.size(); ++i) {
            GridRow row{run->method + " · " + few.class_names[truth[i]], {}};
            for (int64_t g = 0; g < G.order(); ++g)
              row.cells.push_back({acted[g].select(0, static_cast<int64_t>(i)), names[preds[g][i]], preds[g][i] == truth[i]});
            grid.push_back(row);
          }
        }
        if (!grid.empty())
          write_text_file(grid_path, svg_image_grid("test images under " + G.name() + " and each method's prediction (" +
                                                        regime + ", seed " + std::to_string(p.seeds[0]) + ")",
                                                    cols, grid));
      }
      md += "Predictions on test images under " + G.name() + " (green: correct): ![grid](" + slug(regime) + "/grid.svg)\n\n";
    }
  }
  write_text_file(p.out_dir + "/report.md", md);
  write_json_file(p.out_dir + "/summary.json", summary);
  return summary;
}

}  // namespace orbit

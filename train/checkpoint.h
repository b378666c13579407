// Training checkpoints: everything needed to resume a run exactly — model state, optimizer state,
// scheduler state, the random generator, the number of finished epochs, the resolved config and the
// history so far — in one safetensors file (tensors "model.*" and "optimizer.*", the rest as JSON in
// the metadata). Writes are atomic, so an interrupted save never destroys the previous checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/random.h"
#include "layers/module.h"
#include "train/optim.h"
#include "train/scheduler.h"

namespace orbit {

struct TrainingState {
  int64_t epoch = 0;  // epochs completed
  StateDict model;
  OptimizerState optimizer;
  SchedulerState scheduler;  // kind empty: no scheduler
  Generator::State rng{};
  std::string config_json;   // the resolved config of the run
  std::string history_json;  // per-epoch metrics so far
};

// The "format" metadata of a checkpoint file.
inline constexpr const char* kCheckpointFormat = "orbit-checkpoint";

// Throws naming the file when its metadata says it is a run's checkpoint, which holds the model under
// "model.*" beside the optimizer's state: `what` names who asked for weights (a config key, a CLI
// option), and the message names the model.safetensors the run writes beside its checkpoint.
void check_not_a_checkpoint(const std::string& path, const std::map<std::string, std::string>& metadata,
                            const std::string& what);

// The metadata value `key` of the weight file `path` read as an integer, or parsed as JSON: a value that
// is not one (a hand-edited or foreign file) is an error naming the file, the key and the value.
int64_t metadata_integer(const std::string& path, const std::map<std::string, std::string>& metadata,
                         const std::string& key);
nlohmann::json metadata_json(const std::string& path, const std::map<std::string, std::string>& metadata,
                             const std::string& key);

// Holds DIR/.orbit.lock (an flock, released when the process ends, even by kill -9) while a run writes
// into DIR, so a second process started on the same folder stops at once, naming the first one's pid
// and `what` (the config key), instead of writing the same checkpoint and results beside it. Where no
// lock can be taken (a file system without flock), the run goes on unguarded with a warning.
class RunDirLock {
 public:
  RunDirLock(const std::string& dir, const std::string& what);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

// Atomic: a write that fails (a full disk) keeps the earlier checkpoint and says so, naming the epoch
// whose training it could not save.
void save_checkpoint(const std::string& path, const TrainingState& state);
// Throws naming the file when it is not an Orbit checkpoint of a supported version.
TrainingState load_checkpoint(const std::string& path);

}  // namespace orbit

#include "train/checkpoint.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "weights/safetensors.h"

namespace orbit {

namespace {
constexpr const char* kFormat = kCheckpointFormat;
constexpr int kVersion = 1;

nlohmann::json scalars_json(const OrderedDict<double>& s) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [k, v] : s.items()) j.push_back({k, v});  // ordered pairs keep the key order
  return j;
}

OrderedDict<double> scalars_from(const nlohmann::json& j) {
  OrderedDict<double> s;
  for (const auto& p : j) s.insert(p.at(0).get<std::string>(), p.at(1).get<double>());
  return s;
}
}  // namespace

void check_not_a_checkpoint(const std::string& path, const std::map<std::string, std::string>& metadata,
                            const std::string& what) {
  const auto it = metadata.find("format");
  if (it == metadata.end() || it->second != kFormat) return;
  const std::string dir = std::filesystem::path(path).parent_path().string();
  throw Error(str_cat(what, ": ", path, " is a run's training checkpoint (the model with the optimizer's state, for "
                      "resuming that run), not a weight file; start from the weights the run wrote beside it, ",
                      dir.empty() ? "." : dir, "/model.safetensors"));
}

namespace {
const std::string& metadata_value(const std::string& path, const std::map<std::string, std::string>& metadata,
                                  const std::string& key) {
  const auto it = metadata.find(key);
  ORBIT_CHECK(it != metadata.end(), path, ": the metadata has no key '", key, "'");
  return it->second;
}

std::string shortened(const std::string& v) { return v.size() <= 60 ? v : v.substr(0, 57) + "..."; }
}  // namespace

int64_t metadata_integer(const std::string& path, const std::map<std::string, std::string>& metadata,
                         const std::string& key) {
  const std::string& v = metadata_value(path, metadata, key);
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::logic_error&) {
    used = 0;
  }
  ORBIT_CHECK(used > 0 && used == v.size(), path, ": metadata key '", key, "' holds '", shortened(v),
              "'; expected an integer (was the file edited by hand?)");
  return n;
}

nlohmann::json metadata_json(const std::string& path, const std::map<std::string, std::string>& metadata,
                             const std::string& key) {
  const std::string& v = metadata_value(path, metadata, key);
  try {
    return nlohmann::json::parse(v);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": metadata key '", key, "' holds '", shortened(v), "', which is not JSON (", e.what(),
                        "); was the file edited by hand?"));
  }
}

RunDirLock::RunDirLock(const std::string& dir, const std::string& what) {
  const std::string path = (std::filesystem::path(dir) / ".orbit.lock").string();
  // A folder where the lock cannot be taken at all (a file system without flock, such as some network
  // mounts) still runs, unguarded, with a warning; only a lock held by another process stops the run.
  auto unguarded = [&](const char* step, int err) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    std::fprintf(stderr, "warning: cannot %s %s (%s); a second process started on %s would not be stopped\n", step,
                 path.c_str(), std::strerror(err), dir.c_str());
  };
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    unguarded("open", errno);
    return;
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      unguarded("lock", err);
      return;
    }
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    const std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
    throw Error(str_cat(what, ": ", dir, " is in use by another orbit process (pid ", pid,
                        "), whose run writes there; two runs in one folder would write the same checkpoint and results. "
                        "Let it finish or stop it first, or give this run another folder"));
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) == 0) {
    const ssize_t ignored = ::pwrite(fd_, pid.data(), pid.size(), 0);
    (void)ignored;
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays (removing it would race a new holder)
}

void save_checkpoint(const std::string& path, const TrainingState& st) {
  NamedTensors tensors;
  for (const auto& [k, t] : st.model.items()) tensors.emplace_back("model." + k, t);
  for (const auto& [k, t] : st.optimizer.tensors.items()) tensors.emplace_back("optimizer." + k, t);
  nlohmann::json rng = {{"s", {st.rng.s[0], st.rng.s[1], st.rng.s[2], st.rng.s[3]}},
                        {"has_spare", st.rng.has_spare}, {"spare", st.rng.spare}};
  Metadata meta = {{"format", kFormat},
                   {"version", std::to_string(kVersion)},
                   {"epoch", std::to_string(st.epoch)},
                   {"optimizer.kind", st.optimizer.kind},
                   {"optimizer.scalars", scalars_json(st.optimizer.scalars).dump()},
                   {"scheduler.kind", st.scheduler.kind},
                   {"scheduler.scalars", scalars_json(st.scheduler.scalars).dump()},
                   {"rng", rng.dump()},
                   {"config", st.config_json},
                   {"history", st.history_json}};
  try {
    save_safetensors(path, tensors, meta);
  } catch (const Error& e) {
    const std::string dir = std::filesystem::path(path).parent_path().string();
    throw Error(str_cat("epoch ", st.epoch, " of ", dir.empty() ? "." : dir, " is trained, but its checkpoint was not saved: ",
                        e.what(), "; once the cause is mended, the same command ",
                        st.epoch > 1 ? str_cat("resumes from the checkpoint after epoch ", st.epoch - 1)
                                     : std::string("starts the run again")));
  }
}

namespace {
TrainingState read_checkpoint(const std::string& path) {
  Metadata meta;
  NamedTensors tensors = load_safetensors(path, &meta);
  auto get = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    ORBIT_CHECK(it != meta.end(), path, ": not an Orbit checkpoint (metadata key '", key, "' is missing)");
    return it->second;
  };
  ORBIT_CHECK(get("format") == kFormat, path, ": not an Orbit checkpoint (format '", get("format"), "', expected '",
              kFormat, "')");
  ORBIT_CHECK(get("version") == std::to_string(kVersion), path, ": checkpoint version ", get("version"),
              " is not supported (expected ", kVersion, ")");
  TrainingState st;
  try {
    st.epoch = std::stoll(get("epoch"));
    st.optimizer.kind = get("optimizer.kind");
    st.optimizer.scalars = scalars_from(nlohmann::json::parse(get("optimizer.scalars")));
    st.scheduler.kind = get("scheduler.kind");
    st.scheduler.scalars = scalars_from(nlohmann::json::parse(get("scheduler.scalars")));
    const auto rng = nlohmann::json::parse(get("rng"));
    for (int i = 0; i < 4; ++i) st.rng.s[i] = rng.at("s").at(i).get<uint64_t>();
    st.rng.has_spare = rng.at("has_spare").get<bool>();
    st.rng.spare = rng.at("spare").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": corrupt checkpoint metadata: ", e.what()));
  } catch (const std::logic_error& e) {
    throw Error(str_cat(path, ": corrupt checkpoint metadata: ", e.what()));
  }
  st.config_json = get("config");
  st.history_json = get("history");
  for (const auto& [k, t] : tensors) {
    if (k.rfind("model.", 0) == 0) st.model.insert(k.substr(6), t);
    else if (k.rfind("optimizer.", 0) == 0) st.optimizer.tensors.insert(k.substr(10), t);
    else throw Error(str_cat(path, ": unexpected tensor '", k, "' in checkpoint"));
  }
  return st;
}
}  // namespace

TrainingState load_checkpoint(const std::string& path) {
  try {
    return read_checkpoint(path);
  } catch (const Error& e) {
    throw Error(str_cat(e.what(), "; the run cannot resume from this checkpoint: with ", path,
                        " moved away, the same command starts this run over (--fresh starts over every run the "
                        "command makes, which for orbit study is all of them)"));
  }
}

}  // namespace orbit

// DataLoader (data/loader.h): seeded per-epoch order, batching, and a prefetching worker thread.
#include "data/loader.h"

#include <algorithm>

#include "engine/autograd.h"

namespace orbit::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A seed for one (stream, epoch, batch) from the user seed. Each value goes through a full
// splitmix64 round, so nearby inputs (seed 1 epoch 0 vs seed 0 epoch 1) give unrelated seeds.
uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t epoch, uint64_t batch) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ stream);
  h = splitmix64(h ^ epoch);
  return splitmix64(h ^ batch);
}

constexpr uint64_t kOrderStream = 1;
constexpr uint64_t kTransformStream = 2;

}  // namespace

DataLoader::DataLoader(const ImageClassificationDataset& dataset, DataLoaderOptions options)
    : dataset_(dataset), opts_(std::move(options)) {
  ORBIT_CHECK(opts_.batch_size > 0, "DataLoader: batch_size must be positive, got ", opts_.batch_size);
  ORBIT_CHECK(opts_.prefetch >= 0, "DataLoader: prefetch must be >= 0, got ", opts_.prefetch);
  dataset_.validate();
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_.size(), bs = opts_.batch_size;
  return opts_.drop_last ? n / bs : (n + bs - 1) / bs;
}

int64_t DataLoader::num_samples() const {
  return opts_.drop_last ? num_batches() * opts_.batch_size : dataset_.size();
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  ORBIT_CHECK(epoch >= 0, "DataLoader: epoch must be >= 0, got ", epoch);
  if (opts_.shuffle) {
    Generator gen(derive_seed(opts_.seed, kOrderStream, static_cast<uint64_t>(epoch), 0));
    return gen.permutation(dataset_.size());
  }
  std::vector<int64_t> order(dataset_.size());
  for (int64_t i = 0; i < dataset_.size(); ++i) order[i] = i;
  return order;
}

Batch DataLoader::make_batch(int64_t b) const {
  const int64_t bs = opts_.batch_size;
  const int64_t begin = b * bs;
  const int64_t end = std::min<int64_t>(begin + bs, static_cast<int64_t>(order_.size()));
  Batch batch;
  batch.epoch = epoch_;
  batch.index = b;
  batch.indices.assign(order_.begin() + begin, order_.begin() + end);
  batch.images = take_rows(dataset_.images, batch.indices, "DataLoader");
  batch.labels = take_rows(dataset_.labels, batch.indices, "DataLoader");
  if (opts_.transform) {
    NoGradGuard ng;
    Generator gen(derive_seed(opts_.seed, kTransformStream, static_cast<uint64_t>(epoch_),
                              static_cast<uint64_t>(b)));
    opts_.transform(batch, gen);
    ORBIT_CHECK(batch.images.defined() && batch.labels.defined() && batch.images.dim() >= 1 &&
                    batch.labels.dim() >= 1 && batch.images.size(0) == batch.size() &&
                    batch.labels.size(0) == batch.size(),
                "DataLoader: the transform must keep ", batch.size(), " images and labels in batch ", b,
                " of epoch ", epoch_, ", got images ",
                batch.images.defined() ? shape_str(batch.images.shape()) : std::string("undefined"),
                " and labels ", batch.labels.defined() ? shape_str(batch.labels.shape()) : std::string("undefined"));
  }
  if (opts_.device != Device::cpu()) {
    batch.images = batch.images.to(opts_.device);
    batch.labels = batch.labels.to(opts_.device);
  }
  return batch;
}

void DataLoader::worker_loop() {
  const int64_t nb = num_batches();
  for (int64_t b = 0; b < nb; ++b) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < opts_.prefetch; });
      if (stop_) return;
    }
    Batch batch;
    try {
      batch = make_batch(b);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      done_ = true;
      cv_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    queue_.push_back(std::move(batch));
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  done_ = true;
  cv_.notify_all();
}

void DataLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void DataLoader::start_epoch(int64_t epoch) {
  ORBIT_CHECK(epoch >= 0, "DataLoader::start_epoch: epoch must be >= 0, got ", epoch);
  stop_worker();
  epoch_ = epoch;
  order_ = epoch_order(epoch);
  next_batch_ = 0;
  queue_.clear();
  stop_ = false;
  done_ = false;
  error_ = nullptr;
  if (opts_.prefetch > 0) worker_ = std::thread(&DataLoader::worker_loop, this);
}

std::optional<Batch> DataLoader::next() {
  ORBIT_CHECK(epoch_ >= 0, "DataLoader::next: no epoch started; call start_epoch(epoch) first");
  if (opts_.prefetch == 0) {
    // Same contract as the worker: after a failure the epoch stays failed.
    if (error_) std::rethrow_exception(error_);
    if (next_batch_ >= num_batches()) return std::nullopt;
    try {
      return make_batch(next_batch_++);
    } catch (...) {
      error_ = std::current_exception();
      throw;
    }
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (!queue_.empty()) {
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return batch;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

}  // namespace orbit::data

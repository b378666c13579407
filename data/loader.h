// DataLoader: splits an in-memory dataset into batches, in a seeded random order that changes each
// epoch, with a background thread that prepares the next batches while the model trains.
//
//   DataLoaderOptions opts;
//   opts.batch_size = 128;
//   opts.seed = 42;
//   DataLoader loader(train_set, opts);
//   for (int64_t epoch = 0; epoch < E; ++epoch) {
//     loader.start_epoch(epoch);
//     while (auto batch = loader.next()) { ... batch->images, batch->labels ... }
//   }
//   // or: for (Batch& batch : loader.epoch(epoch)) { ... }
//
// Determinism: the order of epoch e is a permutation drawn from a Generator seeded with a hash of
// (seed, e), and the transform of batch b gets a Generator seeded with a hash of (seed, e, b). So a
// run is reproducible for a seed, whatever the thread timing, and epoch e's order does not depend on
// which epochs ran before it (resuming at epoch e gives the same batches).
//
// Threading: with prefetch > 0 a worker thread fills a bounded queue (at most `prefetch` ready
// batches) while next() takes from it. An exception thrown while preparing a batch (for example by
// the transform) is rethrown by next() after the batches before it have been handed out. Starting a
// new epoch or destroying the loader mid-epoch stops the worker and joins it. prefetch = 0 builds
// each batch inside next() on the calling thread (same batches, no thread).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace orbit::data {

struct Batch {
  Tensor images;                 // [B, C, H, W]
  Tensor labels;                 // [B] int64
  std::vector<int64_t> indices;  // the dataset rows in this batch, in order
  int64_t epoch = 0;
  int64_t index = 0;             // batch number within the epoch
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

// Called on every batch before it is handed out (augmentation). It may replace or modify
// batch.images / batch.labels (keeping the batch size). `gen` is seeded from (seed, epoch, batch
// index); use it for all randomness so runs are reproducible. Runs with grad mode off, on the worker
// thread when prefetch > 0.
using BatchTransform = std::function<void(Batch& batch, Generator& gen)>;

struct DataLoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = false;  // drop the last batch when it would be smaller than batch_size
  uint64_t seed = 0;
  int prefetch = 2;        // batches prepared ahead by the worker thread; 0: no thread
  BatchTransform transform;
  Device device = Device::cpu();  // batches are moved here by the worker
};

class DataLoader {
 public:
  // The dataset is validated and shared (tensors are reference-counted; nothing is copied).
  DataLoader(const ImageClassificationDataset& dataset, DataLoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts (or restarts) producing the batches of `epoch` (>= 0), abandoning any epoch in progress.
  void start_epoch(int64_t epoch);
  // The next batch of the current epoch, or nullopt at its end. Rethrows an exception raised while
  // preparing a batch. Throws if no epoch was started.
  std::optional<Batch> next();

  int64_t num_batches() const;   // per epoch
  int64_t num_samples() const;   // samples per epoch (after drop_last)
  const ImageClassificationDataset& dataset() const { return dataset_; }
  const DataLoaderOptions& options() const { return opts_; }
  // The dataset rows of `epoch` in the order they are batched (before drop_last truncation).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  // Range-for support: `for (Batch& b : loader.epoch(e))` starts epoch e and iterates it.
  class Iterator {
   public:
    Iterator() = default;
    explicit Iterator(DataLoader* loader) : loader_(loader) { ++*this; }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
    Iterator& operator++() {
      current_ = loader_->next();
      if (!current_) loader_ = nullptr;
      return *this;
    }
    bool operator!=(const Iterator& o) const { return loader_ != o.loader_; }
    bool operator==(const Iterator& o) const { return loader_ == o.loader_; }

   private:
    DataLoader* loader_ = nullptr;
    std::optional<Batch> current_;
  };
  struct EpochRange {
    DataLoader* loader;
    Iterator begin() { return Iterator(loader); }
    Iterator end() { return Iterator(); }
  };
  EpochRange epoch(int64_t e) {
    start_epoch(e);
    return EpochRange{this};
  }

 private:
  Batch make_batch(int64_t b) const;  // builds batch b of the current epoch (thread-safe: reads only)
  void worker_loop();
  void stop_worker();

  ImageClassificationDataset dataset_;
  DataLoaderOptions opts_;

  // The current epoch. Written only while no worker runs.
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
  int64_t next_batch_ = 0;  // prefetch == 0: next batch to build

  // Worker state, guarded by mu_.
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool stop_ = false;
  bool done_ = false;  // the worker produced every batch (or failed)
  std::exception_ptr error_;
};

}  // namespace orbit::data

// Learning-rate schedulers with torch.optim.lr_scheduler's values: StepLR, MultiStepLR,
// ExponentialLR, CosineAnnealingLR, LinearLR, and WarmupLR (a linear warm-up followed by any of
// them, as SequentialLR([LinearLR, main], milestones=[warmup])).
//
// Each scheduler computes the lr of a group in closed form from the group's base lr and the epoch
// counter (PyTorch computes most of them recursively; the values agree to rounding). Base lrs are
// the groups' initial_lr, set from their lr by the first scheduler built on the optimizer, so
// schedulers built on one optimizer share them as in PyTorch. Like PyTorch, construction performs
// the initial step: last_epoch becomes 0 and the groups' lrs are set to the epoch-0 values.
// "Epoch" is whatever unit step() is called per (epoch or iteration).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layers/ordered_dict.h"
#include "train/optim.h"

namespace orbit {

// A scheduler's state for checkpoints: "last_epoch" and "base_lrs.<g>".
struct SchedulerState {
  std::string kind;
  OrderedDict<double> scalars;
};

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Advances the epoch counter and sets every group's lr.
  void step();
  // The lrs set by the last step (or by construction), one per group.
  const std::vector<double>& last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  const std::string& kind() const { return kind_; }
  // The lr of a group with base lr `base_lr` at `epoch` >= 0.
  virtual double lr_at(double base_lr, int64_t epoch) const = 0;

  SchedulerState state_dict() const;
  // Restores the epoch counter and base lrs and sets the groups' lrs to the values at that epoch.
  void load_state_dict(const SchedulerState& state);

 protected:
  LRScheduler(std::string kind, Optimizer& optimizer);
  // Called at the end of each concrete constructor (lr_at is virtual, so the base cannot).
  void initial_step() { step(); }

 private:
  std::string kind_;
  Optimizer& opt_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  std::vector<double> last_lr_;
};

// lr = base * gamma^(epoch / step_size)  (integer division)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(double base_lr, int64_t epoch) const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = base * gamma^(number of milestones <= epoch); a repeated milestone counts repeatedly.
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);
  double lr_at(double base_lr, int64_t epoch) const override;

 private:
  std::vector<int64_t> milestones_;  // sorted
  double gamma_;
};

// lr = base * gamma^epoch
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);
  double lr_at(double base_lr, int64_t epoch) const override;

 private:
  double gamma_;
};

// lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (periodic past T_max, as
// PyTorch's recursive form).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);
  double lr_at(double base_lr, int64_t epoch) const override;

 private:
  int64_t T_max_;
  double eta_min_;
};

// lr = base * (start + (end - start) * min(epoch, total_iters) / total_iters)
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3.0, double end_factor = 1.0,
           int64_t total_iters = 5);
  double lr_at(double base_lr, int64_t epoch) const override;

 private:
  double start_, end_;
  int64_t total_;
};

// Linear warm-up from start_factor * base to base over warmup_steps steps, then `main` restarted at
// its epoch 0:  epoch < W: base * (start + (1 - start) * epoch / W);  else main.lr_at(base, epoch - W).
// Equals SequentialLR([LinearLR(start_factor, 1, W), main], milestones=[W]). `main` is only used
// for its formula (its own counter is not stepped); build it on the same optimizer first.
class WarmupLR : public LRScheduler {
 public:
  WarmupLR(Optimizer& optimizer, std::shared_ptr<const LRScheduler> main, int64_t warmup_steps,
           double start_factor = 1.0 / 3.0);
  double lr_at(double base_lr, int64_t epoch) const override;

 private:
  std::shared_ptr<const LRScheduler> main_;
  int64_t warmup_;
  double start_;
};

}  // namespace orbit

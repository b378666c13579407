// Learning-rate schedulers (closed forms of torch.optim.lr_scheduler).
#include "train/scheduler.h"

#include <algorithm>
#include <cmath>

namespace orbit {

LRScheduler::LRScheduler(std::string kind, Optimizer& optimizer) : kind_(std::move(kind)), opt_(optimizer) {
  for (auto& g : opt_.param_groups()) {
    if (!g.initial_lr) g.initial_lr = g.lr;  // group.setdefault('initial_lr', group['lr'])
    base_lrs_.push_back(*g.initial_lr);
  }
}

void LRScheduler::step() {
  ++last_epoch_;
  auto& groups = opt_.param_groups();
  ORBIT_CHECK(groups.size() == base_lrs_.size(), kind_, ": the optimizer has ", groups.size(),
              " parameter groups, but the scheduler was built for ", base_lrs_.size());
  last_lr_.clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    const double lr = lr_at(base_lrs_[g], last_epoch_);
    groups[g].lr = lr;
    last_lr_.push_back(lr);
  }
}

SchedulerState LRScheduler::state_dict() const {
  SchedulerState st;
  st.kind = kind_;
  st.scalars.insert("last_epoch", static_cast<double>(last_epoch_));
  for (size_t g = 0; g < base_lrs_.size(); ++g) st.scalars.insert(str_cat("base_lrs.", g), base_lrs_[g]);
  return st;
}

void LRScheduler::load_state_dict(const SchedulerState& st) {
  ORBIT_CHECK(st.kind == kind_, kind_, ": load_state_dict: the state was saved by a '", st.kind,
              "' scheduler, this one is '", kind_, "'");
  const double* epoch = st.scalars.find("last_epoch");
  ORBIT_CHECK(epoch != nullptr && *epoch >= 0 && *epoch == std::floor(*epoch), kind_,
              ": load_state_dict: missing or invalid 'last_epoch'");
  std::vector<double> base;
  while (const double* b = st.scalars.find(str_cat("base_lrs.", base.size()))) base.push_back(*b);
  ORBIT_CHECK(base.size() == base_lrs_.size(), kind_, ": load_state_dict: the state has ", base.size(),
              " base lrs, the optimizer has ", base_lrs_.size(), " parameter groups");
  base_lrs_ = base;
  last_epoch_ = static_cast<int64_t>(*epoch) - 1;
  step();
}

// ---------------------------------------------------------------------- StepLR

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler("StepLR", optimizer), step_size_(step_size), gamma_(gamma) {
  ORBIT_CHECK(step_size > 0, "StepLR: invalid step_size ", step_size, " (expected > 0)");
  ORBIT_CHECK(gamma > 0, "StepLR: invalid gamma ", gamma, " (expected > 0)");
  initial_step();
}

double StepLR::lr_at(double base_lr, int64_t epoch) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

// ---------------------------------------------------------------------- MultiStepLR

MultiStepLR::MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler("MultiStepLR", optimizer), milestones_(std::move(milestones)), gamma_(gamma) {
  ORBIT_CHECK(gamma > 0, "MultiStepLR: invalid gamma ", gamma, " (expected > 0)");
  for (int64_t m : milestones_) ORBIT_CHECK(m >= 0, "MultiStepLR: invalid milestone ", m, " (expected >= 0)");
  std::sort(milestones_.begin(), milestones_.end());
  initial_step();
}

double MultiStepLR::lr_at(double base_lr, int64_t epoch) const {
  // bisect_right: the number of milestones <= epoch.
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
  return base_lr * std::pow(gamma_, static_cast<double>(passed));
}

// ---------------------------------------------------------------------- ExponentialLR

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma) : LRScheduler("ExponentialLR", optimizer), gamma_(gamma) {
  ORBIT_CHECK(gamma > 0, "ExponentialLR: invalid gamma ", gamma, " (expected > 0)");
  initial_step();
}

double ExponentialLR::lr_at(double base_lr, int64_t epoch) const {
  return base_lr * std::pow(gamma_, static_cast<double>(epoch));
}

// ---------------------------------------------------------------------- CosineAnnealingLR

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler("CosineAnnealingLR", optimizer), T_max_(T_max), eta_min_(eta_min) {
  ORBIT_CHECK(T_max > 0, "CosineAnnealingLR: invalid T_max ", T_max, " (expected > 0)");
  ORBIT_CHECK(eta_min >= 0, "CosineAnnealingLR: invalid eta_min ", eta_min, " (expected >= 0)");
  initial_step();
}

double CosineAnnealingLR::lr_at(double base_lr, int64_t epoch) const {
  if (epoch == 0) return base_lr;
  return eta_min_ + (base_lr - eta_min_) * (1.0 + std::cos(M_PI * static_cast<double>(epoch) /
                                                           static_cast<double>(T_max_))) / 2.0;
}

// ---------------------------------------------------------------------- LinearLR

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor, int64_t total_iters)
    : LRScheduler("LinearLR", optimizer), start_(start_factor), end_(end_factor), total_(total_iters) {
  ORBIT_CHECK(start_factor > 0 && start_factor <= 1, "LinearLR: invalid start_factor ", start_factor,
              " (expected in (0, 1])");
  ORBIT_CHECK(end_factor >= 0 && end_factor <= 1, "LinearLR: invalid end_factor ", end_factor,
              " (expected in [0, 1])");
  ORBIT_CHECK(total_iters > 0, "LinearLR: invalid total_iters ", total_iters, " (expected > 0)");
  initial_step();
}

double LinearLR::lr_at(double base_lr, int64_t epoch) const {
  const double t = static_cast<double>(std::min(epoch, total_)) / static_cast<double>(total_);
  return base_lr * (start_ + (end_ - start_) * t);
}

// ---------------------------------------------------------------------- WarmupLR

WarmupLR::WarmupLR(Optimizer& optimizer, std::shared_ptr<const LRScheduler> main, int64_t warmup_steps,
                   double start_factor)
    : LRScheduler("WarmupLR", optimizer), main_(std::move(main)), warmup_(warmup_steps), start_(start_factor) {
  ORBIT_CHECK(main_ != nullptr, "WarmupLR: the main scheduler is null");
  ORBIT_CHECK(warmup_steps > 0, "WarmupLR: invalid warmup_steps ", warmup_steps, " (expected > 0)");
  ORBIT_CHECK(start_factor > 0 && start_factor <= 1, "WarmupLR: invalid start_factor ", start_factor,
              " (expected in (0, 1])");
  ORBIT_CHECK(main_->base_lrs() == base_lrs(), "WarmupLR: the main scheduler (", main_->kind(),
              ") has other base lrs than this optimizer's groups; build both on the same optimizer");
  initial_step();
}

double WarmupLR::lr_at(double base_lr, int64_t epoch) const {
  if (epoch < warmup_)
    return base_lr * (start_ + (1.0 - start_) * static_cast<double>(epoch) / static_cast<double>(warmup_));
  return main_->lr_at(base_lr, epoch - warmup_);
}

}  // namespace orbit

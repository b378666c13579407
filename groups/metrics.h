// Task and equivariance metrics of a classifier, accumulated batch by batch:
//
//   accuracy             on the inputs as given (upright)
//   orbit accuracy       mean over the elements g of G of the accuracy on g·x
//   orbit consistency    share of inputs whose predicted class is the same for every g·x
//   equivariance error   mean over items and non-identity g of ||f(g·x) − ρ(g)f(x)|| / ||f(x)||
//                        (ρ = identity: class logits are invariant)
//   accuracy by angle    accuracy on x rotated by 0°, step, 2·step, ... < 360° (bilinear, zero fill;
//                        multiples of 90° are exact rot90)
//
// Each distinct transform is run once per batch even when several groups share it (C4 ⊂ C8 ⊂ the
// 15° angle sweep), so evaluating C4, C8 and the sweep costs 24 forward passes per input, not 36.
// The model function is called without gradients; put the model in eval mode before.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "groups/action.h"

namespace orbit::groups {

struct OrbitMetrics {
  std::string group;
  double orbit_accuracy = 0, consistency = 0, equivariance_error = 0;
  std::vector<std::string> element_names;
  std::vector<double> element_accuracy;
};

struct EvaluationMetrics {
  int64_t count = 0;
  double accuracy = 0, loss = 0;  // upright; loss = mean cross-entropy
  std::vector<OrbitMetrics> orbits;
  std::vector<double> angles, angle_accuracy;  // degrees, accuracy
};

class OrbitEvaluator {
 public:
  // angle_step_degrees: 0 for no sweep; otherwise it must divide 360.
  OrbitEvaluator(std::function<Tensor(const Tensor&)> f, std::vector<Group> groups, double angle_step_degrees = 15.0);
  // Not copyable: the transforms point into this object's own groups.
  OrbitEvaluator(const OrbitEvaluator&) = delete;
  OrbitEvaluator& operator=(const OrbitEvaluator&) = delete;
  // images [N, C, H, W] (the group acts on them as Scalar fields), labels int64 [N].
  void add(const Tensor& images, const Tensor& labels);
  EvaluationMetrics result() const;
  // Distinct transforms (forward passes) per input.
  int64_t transforms_per_input() const { return static_cast<int64_t>(transforms_.size()); }

 private:
  struct Transform {
    std::string key;
    const Group* group;  // the action is act(*group, element, x)
    int64_t element;
    double degrees;      // for the angle sweep: rotate() when group == nullptr
  };
  std::function<Tensor(const Tensor&)> f_;
  std::vector<Group> groups_;
  std::vector<double> angles_;
  Group c4_;
  std::vector<Transform> transforms_;
  std::map<std::string, int64_t> key_index_;
  std::vector<std::vector<int64_t>> group_transform_;  // per group, per element: index into transforms_
  std::vector<int64_t> angle_transform_;

  int64_t count_ = 0;
  double loss_sum_ = 0;
  std::vector<int64_t> transform_correct_;
  std::vector<int64_t> group_consistent_;
  std::vector<double> group_error_sum_;
};

}  // namespace orbit::groups

#include "groups/metrics.h"

#include <cmath>

#include "engine/error.h"
#include "engine/ops.h"

namespace orbit::groups {

namespace {
std::string element_key(const Group& G, int64_t g) {
  const Element& e = G.element(g);
  const int64_t p = G.translation_steps();
  // Two transforms with the same key act identically: same angle, flip and pixel shift per step count.
  char buf[160];
  std::snprintf(buf, sizeof buf, "a%.6f f%d t%lld/%lld,%lld/%lld b%d", G.angle_degrees(g), e.reflect ? 1 : 0,
                static_cast<long long>(e.tx), static_cast<long long>(p), static_cast<long long>(e.ty),
                static_cast<long long>(p), p > 1 ? static_cast<int>(G.boundary()) : 0);
  return buf;
}
}  // namespace

OrbitEvaluator::OrbitEvaluator(std::function<Tensor(const Tensor&)> f, std::vector<Group> groups,
                               double angle_step_degrees)
    : f_(std::move(f)), groups_(std::move(groups)), c4_(4, false) {
  ORBIT_CHECK(static_cast<bool>(f_), "OrbitEvaluator: empty model function");
  ORBIT_CHECK(angle_step_degrees >= 0, "OrbitEvaluator: angle step must be >= 0, got ", angle_step_degrees);
  auto add_transform = [&](const std::string& key, const Group* G, int64_t g, double deg) {
    auto it = key_index_.find(key);
    if (it != key_index_.end()) return it->second;
    const int64_t idx = static_cast<int64_t>(transforms_.size());
    transforms_.push_back({key, G, g, deg});
    key_index_[key] = idx;
    return idx;
  };
  add_transform(element_key(c4_, 0), &c4_, 0, 0.0);  // identity first
  for (const Group& G : groups_) {
    std::vector<int64_t> idx;
    for (int64_t g = 0; g < G.order(); ++g) idx.push_back(add_transform(element_key(G, g), &G, g, G.angle_degrees(g)));
    group_transform_.push_back(idx);
  }
  if (angle_step_degrees > 0) {
    const double n = 360.0 / angle_step_degrees;
    ORBIT_CHECK(std::fabs(n - std::round(n)) < 1e-9, "OrbitEvaluator: the angle step must divide 360, got ",
                angle_step_degrees);
    for (int64_t k = 0; k < static_cast<int64_t>(std::round(n)); ++k) {
      const double deg = k * angle_step_degrees;
      angles_.push_back(deg);
      const double quarter = deg / 90.0;
      if (std::fabs(quarter - std::round(quarter)) < 1e-9) {  // exact rot90 (same key as C4's element)
        angle_transform_.push_back(add_transform(element_key(c4_, static_cast<int64_t>(std::round(quarter)) % 4), &c4_,
                                                 static_cast<int64_t>(std::round(quarter)) % 4, deg));
      } else {
        char key[64];
        std::snprintf(key, sizeof key, "a%.6f f0 t0/1,0/1 b0", deg);
        angle_transform_.push_back(add_transform(key, nullptr, 0, deg));
      }
    }
  }
  transform_correct_.assign(transforms_.size(), 0);
  group_consistent_.assign(groups_.size(), 0);
  group_error_sum_.assign(groups_.size(), 0.0);
}

void OrbitEvaluator::add(const Tensor& images, const Tensor& labels) {
  ORBIT_CHECK(images.dim() == 4, "OrbitEvaluator: expected images [N, C, H, W], got ", shape_str(images.shape()));
  ORBIT_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0) && labels.dtype() == DType::I64,
              "OrbitEvaluator: expected int64 labels [", images.size(0), "], got ", labels.str());
  NoGradGuard ng;
  const int64_t N = images.size(0);
  std::vector<Tensor> logits(transforms_.size());
  std::vector<std::vector<int64_t>> pred(transforms_.size());
  const std::vector<int64_t> truth = labels.to_vector<int64_t>();
  for (size_t t = 0; t < transforms_.size(); ++t) {
    const Transform& T = transforms_[t];
    const Tensor x = T.group ? act(*T.group, T.element, images, FieldKind::Scalar) : rotate(images, T.degrees);
    logits[t] = f_(x);
    ORBIT_CHECK(logits[t].dim() == 2 && logits[t].size(0) == N, "OrbitEvaluator: expected logits [", N,
                ", classes], got ", shape_str(logits[t].shape()));
    pred[t] = argmax(logits[t], 1).to_vector<int64_t>();
    for (int64_t i = 0; i < N; ++i) transform_correct_[t] += pred[t][i] == truth[i];
  }
  loss_sum_ += cross_entropy(logits[0], labels, Tensor(), Reduction::Sum).item();

  // ||f(x)|| per item, and the relative error of every transform against it.
  const Tensor ref = logits[0].to(DType::F64);
  const std::vector<double> ref_norm = sqrt(sum(square(ref), {1})).to_vector<double>();
  std::vector<std::vector<double>> rel_err(transforms_.size());
  for (size_t t = 1; t < transforms_.size(); ++t) {
    const std::vector<double> d = sqrt(sum(square(sub(logits[t].to(DType::F64), ref)), {1})).to_vector<double>();
    rel_err[t].resize(N);
    for (int64_t i = 0; i < N; ++i) rel_err[t][i] = d[i] / std::max(ref_norm[i], 1e-12);
  }
  for (size_t k = 0; k < groups_.size(); ++k) {
    const std::vector<int64_t>& idx = group_transform_[k];
    for (int64_t i = 0; i < N; ++i) {
      bool same = true;
      for (int64_t t : idx) same &= pred[t][i] == pred[idx[0]][i];
      group_consistent_[k] += same;
      for (size_t e = 1; e < idx.size(); ++e) group_error_sum_[k] += idx[e] == 0 ? 0.0 : rel_err[idx[e]][i];
    }
  }
  count_ += N;
}

EvaluationMetrics OrbitEvaluator::result() const {
  EvaluationMetrics m;
  m.count = count_;
  if (count_ == 0) return m;
  const double n = static_cast<double>(count_);
  m.accuracy = transform_correct_[0] / n;
  m.loss = loss_sum_ / n;
  for (size_t k = 0; k < groups_.size(); ++k) {
    const Group& G = groups_[k];
    OrbitMetrics o;
    o.group = G.name();
    double acc_sum = 0;
    for (int64_t g = 0; g < G.order(); ++g) {
      o.element_names.push_back(G.element_name(g));
      o.element_accuracy.push_back(transform_correct_[group_transform_[k][g]] / n);
      acc_sum += o.element_accuracy.back();
    }
    o.orbit_accuracy = acc_sum / G.order();
    o.consistency = group_consistent_[k] / n;
    o.equivariance_error = G.order() > 1 ? group_error_sum_[k] / (n * (G.order() - 1)) : 0.0;
    m.orbits.push_back(o);
  }
  m.angles = angles_;
  for (int64_t t : angle_transform_) m.angle_accuracy.push_back(transform_correct_[t] / n);
  return m;
}

}  // namespace orbit::groups

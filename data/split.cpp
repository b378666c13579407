// Class selection, stratified subsamples and stratified k-fold splits (data/split.h).
#include "data/split.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/random.h"

namespace orbit::data {

namespace {
std::string who(const ImageClassificationDataset& ds) {
  return ds.name.empty() ? std::string("dataset") : "dataset '" + ds.name + "'";
}

// The row indices of each class, ascending: rows[c] lists the rows labelled c.
std::vector<std::vector<int64_t>> rows_by_class(const ImageClassificationDataset& ds) {
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(std::max<int64_t>(ds.num_classes(), 0)));
  const int64_t* y = ds.labels.data<int64_t>();
  for (int64_t i = 0; i < ds.size(); ++i) rows[static_cast<size_t>(y[i])].push_back(i);
  return rows;
}
}  // namespace

ImageClassificationDataset select_classes(const ImageClassificationDataset& ds,
                                          const std::vector<int64_t>& classes, const std::string& name) {
  ds.validate();
  const int64_t nc = ds.num_classes();
  ORBIT_CHECK(!classes.empty(), "select_classes: ", who(ds), ": expected at least one class, got an empty list");
  // new_label[c] = position of class c in `classes`, or -1 when c is not selected.
  std::vector<int64_t> new_label(static_cast<size_t>(nc), -1);
  for (size_t i = 0; i < classes.size(); ++i) {
    const int64_t c = classes[i];
    ORBIT_CHECK(c >= 0 && c < nc, "select_classes: class ", c, " is out of range for ", who(ds), " with ", nc,
                " classes (expected 0..", nc - 1, ")");
    ORBIT_CHECK(new_label[c] < 0, "select_classes: class ", c, " is listed twice (positions ", new_label[c],
                " and ", i, "); expected distinct classes");
    new_label[c] = static_cast<int64_t>(i);
  }
  std::vector<int64_t> rows, labels;
  const int64_t* y = ds.labels.data<int64_t>();
  for (int64_t i = 0; i < ds.size(); ++i)
    if (new_label[y[i]] >= 0) {
      rows.push_back(i);
      labels.push_back(new_label[y[i]]);
    }
  ImageClassificationDataset out;
  out.name = name.empty() ? ds.name : name;
  out.images = take_rows(ds.images, rows, "select_classes");
  out.labels = Tensor::from_vector(labels, {static_cast<int64_t>(labels.size())});
  for (int64_t c : classes)
    out.class_names.push_back(ds.class_names.empty() ? std::to_string(c) : ds.class_names[c]);
  return out;
}

std::vector<int64_t> stratified_fraction(const ImageClassificationDataset& ds, double fraction, uint64_t seed) {
  ds.validate();
  ORBIT_CHECK(std::isfinite(fraction) && fraction > 0 && fraction <= 1, "stratified_fraction: ", who(ds),
              ": fraction ", fraction, " is outside the allowed range (0, 1]");
  Generator gen(seed);
  std::vector<int64_t> out;
  for (const auto& rows : rows_by_class(ds)) {
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n == 0) continue;
    const int64_t take = std::min(n, std::max<int64_t>(1, std::llround(fraction * static_cast<double>(n))));
    const std::vector<int64_t> perm = gen.permutation(n);
    for (int64_t j = 0; j < take; ++j) out.push_back(rows[perm[j]]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Fold> stratified_kfold(const ImageClassificationDataset& ds, int64_t k, uint64_t seed) {
  ds.validate();
  const int64_t n = ds.size();
  ORBIT_CHECK(k >= 2 && k <= n, "stratified_kfold: ", who(ds), ": k = ", k, " is outside the allowed range [2, ",
              n, "] (at least 2 folds, at most one per row)");
  Generator gen(seed);
  // fold_of[row] = the fold whose val set holds the row.
  std::vector<int64_t> fold_of(static_cast<size_t>(n), -1);
  int64_t next = 0;  // the deal continues across classes
  for (const auto& rows : rows_by_class(ds)) {
    const std::vector<int64_t> perm = gen.permutation(static_cast<int64_t>(rows.size()));
    for (int64_t j : perm) {
      fold_of[rows[j]] = next;
      next = (next + 1) % k;
    }
  }
  std::vector<Fold> folds(static_cast<size_t>(k));
  for (int64_t row = 0; row < n; ++row)  // ascending, so every list comes out sorted
    for (int64_t f = 0; f < k; ++f) (fold_of[row] == f ? folds[f].val : folds[f].train).push_back(row);
  for (int64_t f = 0; f < k; ++f)
    ORBIT_ASSERT(!folds[f].train.empty() && !folds[f].val.empty(), "fold ", f, " of ", k, " for ", n, " rows");
  return folds;
}

}  // namespace orbit::data

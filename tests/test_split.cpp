// data/split.h: select_classes (row choice, relabelling, names, errors), stratified_fraction and
// stratified_kfold (per-class counts, disjointness, coverage, determinism per seed, errors).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "data/split.h"
#include "tests/test_util.h"

using namespace orbit;
using namespace orbit::data;
using orbit::testing::expect_error;

namespace {

// n rows with labels from `labels`; every pixel of row i equals i, so a row can be traced after
// selection.
ImageClassificationDataset labelled(const std::vector<int64_t>& labels, int64_t num_classes) {
  const int64_t n = static_cast<int64_t>(labels.size());
  std::vector<float> px(n * 2);
  for (int64_t i = 0; i < n; ++i) px[2 * i] = px[2 * i + 1] = static_cast<float>(i);
  ImageClassificationDataset ds;
  ds.name = "toy";
  ds.images = Tensor::from_vector(px, {n, 2, 1, 1});
  ds.labels = Tensor::from_vector(labels, {n});
  for (int64_t c = 0; c < num_classes; ++c) ds.class_names.push_back("class" + std::to_string(c));
  return ds;
}

// Class sizes 7, 0, 3, 12, 1 (class 1 empty), labels in a scrambled order.
ImageClassificationDataset uneven() {
  std::vector<int64_t> y;
  const std::vector<int64_t> sizes = {7, 0, 3, 12, 1};
  for (size_t c = 0; c < sizes.size(); ++c)
    for (int64_t i = 0; i < sizes[c]; ++i) y.push_back(static_cast<int64_t>(c));
  // A fixed interleaving (a stride walk, 23 rows, stride 5 is coprime to 23).
  std::vector<int64_t> z(y.size());
  for (size_t i = 0; i < y.size(); ++i) z[(i * 5) % y.size()] = y[i];
  return labelled(z, 5);
}

std::map<int64_t, int64_t> count_labels(const ImageClassificationDataset& ds, const std::vector<int64_t>& rows) {
  std::map<int64_t, int64_t> m;
  const auto y = ds.labels.to_vector<int64_t>();
  for (int64_t r : rows) ++m[y[r]];
  return m;
}

}  // namespace

// ====================================================================== select_classes

TEST(DataSplit, SelectClassesKeepsRowsAndRelabelsInGivenOrder) {
  const auto ds = uneven();
  const auto sel = select_classes(ds, {3, 0});
  const auto y = ds.labels.to_vector<int64_t>();
  // Expected rows: those labelled 3 or 0, in original order; new label = position in {3, 0}.
  std::vector<float> want_px;
  std::vector<int64_t> want_y;
  for (size_t i = 0; i < y.size(); ++i)
    if (y[i] == 3 || y[i] == 0) {
      want_px.push_back(static_cast<float>(i));
      want_y.push_back(y[i] == 3 ? 0 : 1);
    }
  ASSERT_EQ(sel.size(), 19);
  EXPECT_EQ(sel.labels.to_vector<int64_t>(), want_y);
  const auto px = sel.images.to_vector<float>();
  for (size_t i = 0; i < want_px.size(); ++i) {
    EXPECT_EQ(px[2 * i], want_px[i]);
    EXPECT_EQ(px[2 * i + 1], want_px[i]);
  }
  EXPECT_EQ(sel.class_names, (std::vector<std::string>{"class3", "class0"}));
  EXPECT_EQ(sel.num_classes(), 2);
  EXPECT_EQ(sel.name, "toy");
  EXPECT_EQ(select_classes(ds, {1}, "empty one").name, "empty one");
  EXPECT_EQ(select_classes(ds, {1}).size(), 0);  // class 1 has no rows: an empty dataset
  sel.validate();
}

TEST(DataSplit, SelectClassesWithoutNamesUsesIndices) {
  auto ds = uneven();
  ds.class_names.clear();
  const auto sel = select_classes(ds, {4, 2});
  EXPECT_EQ(sel.class_names, (std::vector<std::string>{"4", "2"}));
  EXPECT_EQ(sel.class_counts(), (std::vector<int64_t>{1, 3}));
}

TEST(DataSplit, SelectClassesErrors) {
  const auto ds = uneven();
  expect_error([&] { select_classes(ds, {}); }, {"select_classes", "empty", "toy"});
  expect_error([&] { select_classes(ds, {2, 0, 2}); }, {"class 2", "twice"});
  expect_error([&] { select_classes(ds, {0, 5}); }, {"class 5", "toy", "5 classes"});
  expect_error([&] { select_classes(ds, {-1}); }, {"class -1", "5 classes"});
}

// ====================================================================== stratified_fraction

TEST(DataSplit, StratifiedFractionCountsPerClass) {
  const auto ds = uneven();  // sizes 7, 0, 3, 12, 1
  for (double f : {0.1, 0.25, 0.5, 0.7, 1.0}) {
    const auto rows = stratified_fraction(ds, f, 7);
    EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end()));
    EXPECT_EQ(std::set<int64_t>(rows.begin(), rows.end()).size(), rows.size()) << "repeated row";
    const auto counts = count_labels(ds, rows);
    const std::vector<int64_t> sizes = {7, 0, 3, 12, 1};
    for (int64_t c = 0; c < 5; ++c) {
      const int64_t want = sizes[c] == 0 ? 0 : std::max<int64_t>(1, std::llround(f * sizes[c]));
      EXPECT_EQ(counts.count(c) ? counts.at(c) : 0, want) << "fraction " << f << " class " << c;
    }
  }
  // Fraction 1: every row.
  const auto all = stratified_fraction(ds, 1.0, 3);
  ASSERT_EQ(static_cast<int64_t>(all.size()), ds.size());
  for (int64_t i = 0; i < ds.size(); ++i) EXPECT_EQ(all[i], i);
}

TEST(DataSplit, StratifiedFractionIsSeeded) {
  std::vector<int64_t> y;
  for (int64_t i = 0; i < 400; ++i) y.push_back(i % 4);
  const auto ds = labelled(y, 4);
  const auto a = stratified_fraction(ds, 0.3, 11), b = stratified_fraction(ds, 0.3, 11);
  const auto c = stratified_fraction(ds, 0.3, 12);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);  // 30 of 100 per class: two seeds agree with probability ~1e-25 per class
  EXPECT_EQ(a.size(), 120u);
  // Not simply the first rows of each class.
  EXPECT_GT(a.back(), 200);
}

TEST(DataSplit, StratifiedFractionErrors) {
  const auto ds = uneven();
  for (double f : {0.0, -0.5, 1.5, std::nan("")})
    expect_error([&] { stratified_fraction(ds, f, 1); }, {"stratified_fraction", "(0, 1]"});
  expect_error([&] { stratified_fraction(ds, 2.5, 1); }, {"2.5"});
}

// ====================================================================== stratified_kfold

TEST(DataSplit, KFoldPartitionsAndStratifies) {
  const auto ds = uneven();  // 23 rows, sizes 7, 0, 3, 12, 1
  for (int64_t k : {2, 3, 5, 23}) {
    const auto folds = stratified_kfold(ds, k, 5);
    ASSERT_EQ(static_cast<int64_t>(folds.size()), k);
    std::vector<int> seen(ds.size(), 0);
    std::vector<int64_t> sizes;
    std::map<int64_t, std::vector<int64_t>> per_class;  // class -> val count per fold
    for (const auto& f : folds) {
      EXPECT_TRUE(std::is_sorted(f.val.begin(), f.val.end()));
      EXPECT_TRUE(std::is_sorted(f.train.begin(), f.train.end()));
      EXPECT_FALSE(f.train.empty());
      EXPECT_FALSE(f.val.empty());
      // train = complement of val
      std::vector<int64_t> both = f.train;
      both.insert(both.end(), f.val.begin(), f.val.end());
      std::sort(both.begin(), both.end());
      ASSERT_EQ(static_cast<int64_t>(both.size()), ds.size());
      for (int64_t i = 0; i < ds.size(); ++i) EXPECT_EQ(both[i], i);
      for (int64_t r : f.val) ++seen[r];
      sizes.push_back(static_cast<int64_t>(f.val.size()));
      const auto counts = count_labels(ds, f.val);
      for (int64_t c = 0; c < 5; ++c) per_class[c].push_back(counts.count(c) ? counts.at(c) : 0);
    }
    // The val sets are disjoint and cover every row.
    for (int64_t i = 0; i < ds.size(); ++i) EXPECT_EQ(seen[i], 1) << "row " << i << " k " << k;
    // Balanced: fold sizes and per-class counts differ by at most 1.
    EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()) - *std::min_element(sizes.begin(), sizes.end()), 1);
    for (const auto& [c, v] : per_class)
      EXPECT_LE(*std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end()), 1)
          << "class " << c << " k " << k;
  }
}

TEST(DataSplit, KFoldIsSeeded) {
  std::vector<int64_t> y;
  for (int64_t i = 0; i < 90; ++i) y.push_back(i % 3);
  const auto ds = labelled(y, 3);
  const auto a = stratified_kfold(ds, 5, 1), b = stratified_kfold(ds, 5, 1), c = stratified_kfold(ds, 5, 2);
  for (int f = 0; f < 5; ++f) {
    EXPECT_EQ(a[f].val, b[f].val);
    EXPECT_EQ(a[f].train, b[f].train);
  }
  bool differ = false;
  for (int f = 0; f < 5; ++f) differ |= a[f].val != c[f].val;
  EXPECT_TRUE(differ);
  // Each class contributes 30 / 5 = 6 rows to every val fold.
  for (const auto& f : a) {
    const auto counts = count_labels(ds, f.val);
    for (int64_t cl = 0; cl < 3; ++cl) EXPECT_EQ(counts.at(cl), 6);
  }
}

TEST(DataSplit, KFoldErrors) {
  const auto ds = uneven();
  expect_error([&] { stratified_kfold(ds, 1, 0); }, {"stratified_kfold", "k = 1", "[2, 23]"});
  expect_error([&] { stratified_kfold(ds, 24, 0); }, {"k = 24", "[2, 23]"});
  // A class smaller than k (class 4 has 1 row, class 2 has 3) is allowed.
  EXPECT_EQ(stratified_kfold(ds, 4, 0).size(), 4u);
}

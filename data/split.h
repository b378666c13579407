// Class selection and stratified subsets / folds of an ImageClassificationDataset, all as row indices
// chosen by a seeded Generator, so that a split is reproducible from its seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace orbit::data {

// The rows whose label is in `classes`, in their original order, relabelled 0..k-1 in the order the
// classes are given (classes {7, 2}: label 7 becomes 0, label 2 becomes 1). class_names become the
// selected names in that order (the original indices as text when the dataset has no names).
// The result is named `name`, or keeps the dataset's name when `name` is empty.
// Throws for an empty list, a repeated class, and a class outside [0, num_classes()).
ImageClassificationDataset select_classes(const ImageClassificationDataset& ds,
                                          const std::vector<int64_t>& classes,
                                          const std::string& name = "");

// A stratified subsample: from each class with n rows, round(fraction * n) rows (at least 1 when
// n > 0), chosen by a permutation drawn from Generator(seed). Returns the row indices sorted
// ascending. fraction must be in (0, 1]; fraction 1 returns every row.
std::vector<int64_t> stratified_fraction(const ImageClassificationDataset& ds, double fraction,
                                         uint64_t seed);

struct Fold {
  std::vector<int64_t> train, val;  // row indices, each sorted ascending
};

// Stratified k-fold cross-validation. The rows of each class, shuffled by Generator(seed) (one
// generator drawn from class 0 upwards), are dealt round-robin into k folds; the deal continues
// across classes where the previous class stopped, so every fold's size differs from every other
// by at most 1, and so does every fold's count of each class. Fold i: val = the rows dealt to i,
// train = all the others. The val sets are disjoint and cover every row. A class with fewer than k
// rows is allowed (some folds then have none of it in val). k must be in [2, size()].
std::vector<Fold> stratified_kfold(const ImageClassificationDataset& ds, int64_t k, uint64_t seed);

}  // namespace orbit::data

// Plots and text of runs, sweeps and studies: SVG charts (train/plot.h), an SVG grid of images under a
// group with the model's predictions (the images embedded as PNG), and one-line metric summaries.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"

namespace orbit {

// out_dir/loss.svg (loss, task loss and penalty per epoch) and out_dir/angle.svg (test accuracy
// against the rotation angle) from a run's results.json content.
void write_run_plots(const std::string& out_dir, const nlohmann::json& results);
// out_dir/cv.svg (validation score against log10 λ, mean ± std over folds, one line per learning rate)
// and out_dir/cv_equivariance.svg (validation equivariance error against log10 λ).
void write_cv_plot(const std::string& out_dir, const nlohmann::json& cv);
// "accuracy 95.12% | C4: orbit 94.40%, consistency 91.80%, error 0.123 | C8: ..."
std::string summarize_metrics(const nlohmann::json& results);

// PNG bytes of an image [C, H, W] (C = 1 or 3) with values in [0, 1] (clamped).
std::string encode_png(const Tensor& image);

// An SVG grid: one row per (method, input), one column per transform; each cell shows the transformed
// input and below it the predicted class, green when correct, red when not.
struct GridCell {
  Tensor image;       // [C, H, W] in [0, 1]
  std::string label;  // predicted class
  bool correct = false;
};
struct GridRow {
  std::string title;  // "plain · sandal"
  std::vector<GridCell> cells;
};
std::string svg_image_grid(const std::string& title, const std::vector<std::string>& column_titles,
                           const std::vector<GridRow>& rows, int cell_pixels = 56);

}  // namespace orbit

// Image preprocessing for inference on pretrained models, as torchvision's ImageClassification preset
// does it on tensors: resize the shorter side (bilinear, antialiased when shrinking), center crop,
// normalize. Images are [C, H, W] floating tensors (values in [0, 1] from read_image).
#pragma once

#include <vector>

#include "engine/tensor.h"

namespace orbit::data {

// Bilinear resize to [C, out_h, out_w] with half-pixel centers (align_corners = False). With
// antialias, shrinking widens the triangle filter to the scale factor so every input pixel
// contributes (as PIL, and torch's interpolate(..., antialias=True)); without it, or when enlarging,
// it is plain bilinear interpolation between the two nearest pixels. Separable: rows, then columns.
Tensor resize_bilinear(const Tensor& image, int64_t out_h, int64_t out_w, bool antialias = true);

// Resizes so the shorter side is `size`; the longer becomes floor(size * long / short) (torchvision's
// Resize(size) rule).
Tensor resize_shorter(const Tensor& image, int64_t size, bool antialias = true);

// The central crop_h x crop_w window; the top-left corner at round((H - crop_h) / 2), round((W -
// crop_w) / 2), rounding halves to even (as torchvision's center_crop). The image must be at least
// as large as the crop.
Tensor center_crop(const Tensor& image, int64_t crop_h, int64_t crop_w);

// Every value rounded to the nearest of the 256 levels k / 255 (clamped to [0, 1]): what resizing an
// 8-bit image gives in torchvision (a uint8 tensor is resized in float, then rounded back to uint8).
Tensor quantize_8bit(const Tensor& image);

// (image - mean[c]) / std[c] per channel.
Tensor normalize_channels(const Tensor& image, const std::vector<double>& mean, const std::vector<double>& std);

}  // namespace orbit::data

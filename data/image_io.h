// Reading images (PNG, JPEG, BMP, GIF, TGA, PSD, HDR, PIC, PNM, through stb_image) into tensors
// [C, H, W] float32 in [0, 1], and writing tensors as 8-bit PNG files (through stb_image_write).
// Row 0 is the top of the image; channels are in the file's order (grey, grey+alpha, RGB, RGBA).
#pragma once

#include <string>

#include "engine/tensor.h"

namespace orbit::data {

// Reads an image file. channels: 0 keeps the file's channel count (1 grey, 2 grey + alpha, 3 RGB,
// 4 RGBA), 1 converts to grey, 3 to RGB (stb's conversions: grey = (77 r + 150 g + 29 b) >> 8,
// alpha dropped). 8-bit samples become value / 255; 16-bit PNGs are reduced to 8 bits first.
// Throws naming the file and stb's reason when the file is missing or cannot be decoded.
Tensor read_image(const std::string& path, int channels = 0);

// Writes `image` ([C, H, W] with C in 1..4, or [H, W] for grey), any floating dtype, as an 8-bit
// PNG: values are clamped to [0, 1] (NaN as 0) and stored as round(255 v). The file is written to a
// temporary name beside `path` and renamed over it, so a reader never sees a half-written file; the
// parent directory must exist. read_image(path) gives the image back exactly when its values are
// float32 k / 255.
void write_png(const std::string& path, const Tensor& image);

}  // namespace orbit::data

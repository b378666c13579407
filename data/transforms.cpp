// Resize, crop and normalization of images for inference (data/transforms.h).
#include "data/transforms.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "engine/ops.h"

namespace orbit::data {

namespace {

void check_image(const Tensor& image, const char* what) {
  ORBIT_CHECK(image.defined() && image.dim() == 3 && image.size(0) > 0 && image.size(1) > 0 && image.size(2) > 0, what,
              ": expected an image [C, H, W] with C, H, W > 0, got ",
              image.defined() ? shape_str(image.shape()) : std::string("an undefined tensor"));
  ORBIT_CHECK(is_floating(image.dtype()), what, ": expected a floating image, got ", dtype_name(image.dtype()));
}

// For each output index along one axis: the first input index and the normalized weights of the
// input pixels it mixes. Triangle filter of half-width `support` (1 for plain bilinear; the scale
// factor when shrinking with antialias), centered at the output pixel's center mapped to the input.
struct Taps {
  std::vector<int64_t> first;
  std::vector<std::vector<double>> weights;
};

Taps make_taps(int64_t in, int64_t out, bool antialias) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const bool widen = antialias && scale > 1.0;
  const double support = widen ? scale : 1.0;
  const double inv = widen ? 1.0 / scale : 1.0;
  Taps t;
  t.first.resize(static_cast<size_t>(out));
  t.weights.resize(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    std::vector<double>& w = t.weights[static_cast<size_t>(i)];
    if (widen) {
      // Every input pixel whose center lies within `support` of the center, weighted by the triangle.
      const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
      const int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
      double total = 0;
      for (int64_t j = lo; j < hi; ++j) {
        const double x = (static_cast<double>(j) - center + 0.5) * inv;
        w.push_back(std::max(0.0, 1.0 - std::abs(x)));
        total += w.back();
      }
      for (double& v : w) v = total > 0 ? v / total : 0.0;
      t.first[static_cast<size_t>(i)] = lo;
    } else {
      // Plain bilinear: the source coordinate center - 0.5, clamped at the border.
      const double src = std::max(center - 0.5, 0.0);
      const int64_t j0 = std::min<int64_t>(static_cast<int64_t>(src), in - 1);
      const int64_t j1 = std::min<int64_t>(j0 + 1, in - 1);
      const double f = src - static_cast<double>(j0);
      t.first[static_cast<size_t>(i)] = j0;
      w = {1.0 - f};
      if (j1 != j0) w.push_back(f);
      else w[0] = 1.0;
    }
  }
  return t;
}

}  // namespace

Tensor resize_bilinear(const Tensor& image, int64_t out_h, int64_t out_w, bool antialias) {
  check_image(image, "resize_bilinear");
  ORBIT_CHECK(out_h > 0 && out_w > 0, "resize_bilinear: expected a positive output size, got ", out_h, "x", out_w);
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  const std::vector<double> src = image.contiguous().to_vector<double>();
  const Taps tw = make_taps(W, out_w, antialias), th = make_taps(H, out_h, antialias);
  // Along rows first: [C, H, out_w].
  std::vector<double> mid(static_cast<size_t>(C * H * out_w));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < out_w; ++x) {
        const auto& w = tw.weights[static_cast<size_t>(x)];
        const double* row = &src[static_cast<size_t>((c * H + y) * W + tw.first[static_cast<size_t>(x)])];
        double s = 0;
        for (size_t k = 0; k < w.size(); ++k) s += w[k] * row[k];
        mid[static_cast<size_t>((c * H + y) * out_w + x)] = s;
      }
  // Then along columns: [C, out_h, out_w].
  std::vector<double> out(static_cast<size_t>(C * out_h * out_w));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < out_h; ++y) {
      const auto& w = th.weights[static_cast<size_t>(y)];
      const int64_t y0 = th.first[static_cast<size_t>(y)];
      for (int64_t x = 0; x < out_w; ++x) {
        double s = 0;
        for (size_t k = 0; k < w.size(); ++k) s += w[k] * mid[static_cast<size_t>((c * H + y0 + static_cast<int64_t>(k)) * out_w + x)];
        out[static_cast<size_t>((c * out_h + y) * out_w + x)] = s;
      }
    }
  return Tensor::from_vector(out, {C, out_h, out_w}).to(image.dtype());
}

Tensor resize_shorter(const Tensor& image, int64_t size, bool antialias) {
  check_image(image, "resize_shorter");
  ORBIT_CHECK(size > 0, "resize_shorter: expected a positive size, got ", size);
  const int64_t H = image.size(1), W = image.size(2);
  const int64_t s = std::min(H, W), l = std::max(H, W);
  const int64_t new_long = static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(l) / static_cast<double>(s));
  return H <= W ? resize_bilinear(image, size, new_long, antialias) : resize_bilinear(image, new_long, size, antialias);
}

Tensor center_crop(const Tensor& image, int64_t crop_h, int64_t crop_w) {
  check_image(image, "center_crop");
  const int64_t H = image.size(1), W = image.size(2);
  ORBIT_CHECK(crop_h > 0 && crop_w > 0 && crop_h <= H && crop_w <= W, "center_crop: a ", crop_h, "x", crop_w,
              " crop needs a positive size within the image of ", H, "x", W);
  const int64_t top = static_cast<int64_t>(std::nearbyint(static_cast<double>(H - crop_h) / 2.0));
  const int64_t left = static_cast<int64_t>(std::nearbyint(static_cast<double>(W - crop_w) / 2.0));
  return image.narrow(1, top, crop_h).narrow(2, left, crop_w).contiguous();
}

Tensor quantize_8bit(const Tensor& image) {
  ORBIT_CHECK(image.defined() && is_floating(image.dtype()), "quantize_8bit: expected a floating tensor");
  std::vector<double> v = image.contiguous().to_vector<double>();
  for (double& x : v) x = std::nearbyint(std::clamp(x, 0.0, 1.0) * 255.0) / 255.0;
  return Tensor::from_vector(v, image.shape()).to(image.dtype());
}

Tensor normalize_channels(const Tensor& image, const std::vector<double>& mean, const std::vector<double>& std) {
  check_image(image, "normalize_channels");
  const int64_t C = image.size(0);
  ORBIT_CHECK(static_cast<int64_t>(mean.size()) == C && static_cast<int64_t>(std.size()) == C, "normalize_channels: an image of ",
              C, " channels needs ", C, " means and stds, got ", mean.size(), " and ", std.size());
  for (double s : std) ORBIT_CHECK(s > 0, "normalize_channels: stds must be positive, got ", s);
  const Tensor m = Tensor::from_vector(mean, {C, 1, 1}).to(image.dtype());
  const Tensor s = Tensor::from_vector(std, {C, 1, 1}).to(image.dtype());
  return div(sub(image, m), s);
}

}  // namespace orbit::data

// Image files through stb_image / stb_image_write (data/image_io.h). The stb implementations are
// compiled here and only here.
#include "data/image_io.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "engine/file_io.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG  // "PNG file corrupt" rather than "bad png sig"-style codes
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace orbit::data {

namespace fs = std::filesystem;

Tensor read_image(const std::string& path, int channels) {
  ORBIT_CHECK(channels == 0 || channels == 1 || channels == 3, "read_image: '", path, "': channels = ", channels,
              "; expected 0 (as stored), 1 (grey) or 3 (RGB)");
  std::error_code ec;
  ORBIT_CHECK(fs::exists(path, ec), "read_image: missing file '", path, "'");
  ORBIT_CHECK(!fs::is_directory(path, ec), "read_image: '", path, "' is a directory, expected an image file");
  int w = 0, h = 0, stored = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load(path.c_str(), &w, &h, &stored, channels),
                                                   stbi_image_free);
  ORBIT_CHECK(pixels != nullptr, "read_image: cannot decode '", path, "': ", stbi_failure_reason(),
              " (supported: PNG, JPEG, BMP, GIF, TGA, PSD, HDR, PIC, PNM)");
  const int64_t C = channels == 0 ? stored : channels, H = h, W = w;
  Tensor out = Tensor::empty({C, H, W});
  float* dst = out.data<float>();
  const stbi_uc* src = pixels.get();
  // stb returns interleaved pixels [H, W, C]; the tensor is planar [C, H, W].
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c)
        dst[(c * H + y) * W + x] = static_cast<float>(src[(y * W + x) * C + c]) / 255.0f;
  return out;
}

void write_png(const std::string& path, const Tensor& image) {
  ORBIT_CHECK(image.defined(), "write_png: '", path, "': the image tensor is undefined");
  ORBIT_CHECK(image.dim() == 2 || image.dim() == 3, "write_png: '", path,
              "': expected an image [C, H, W] or [H, W], got shape ", shape_str(image.shape()));
  ORBIT_CHECK(is_floating(image.dtype()), "write_png: '", path, "': expected a floating image with values in [0, 1], got ",
              dtype_name(image.dtype()));
  const Tensor img = image.dim() == 2 ? image.unsqueeze(0) : image;
  const int64_t C = img.size(0), H = img.size(1), W = img.size(2);
  ORBIT_CHECK(C >= 1 && C <= 4, "write_png: '", path, "': expected 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels, got ",
              C, " (shape ", shape_str(image.shape()), ")");
  ORBIT_CHECK(H > 0 && W > 0 && H <= (1 << 24) && W <= (1 << 24), "write_png: '", path,
              "': expected a non-empty image, got shape ", shape_str(image.shape()));
  const std::vector<double> v = img.detach().to(Device::cpu()).to_vector<double>();
  std::vector<uint8_t> bytes(static_cast<size_t>(C * H * W));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const double p = v[static_cast<size_t>((c * H + y) * W + x)];
        const double clamped = std::isnan(p) ? 0.0 : std::min(1.0, std::max(0.0, p));  // NaN -> 0
        bytes[static_cast<size_t>((y * W + x) * C + c)] = static_cast<uint8_t>(std::lround(clamped * 255.0));
      }
  std::vector<unsigned char> png;
  const int ok = stbi_write_png_to_func(
      [](void* context, void* data, int size) {
        auto* out = static_cast<std::vector<unsigned char>*>(context);
        out->insert(out->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
      },
      &png, static_cast<int>(W), static_cast<int>(H), static_cast<int>(C), bytes.data(), static_cast<int>(W * C));
  ORBIT_CHECK(ok, "write_png: stb_image_write could not encode the ", W, "x", H, " image for '", path, "'");
  write_file_atomically(path, {ByteSpan{png.data(), png.size()}}, "write_png");
}

}  // namespace orbit::data

// Datasets stored as one folder of images per class (data/image_folder.h).
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <exception>
#include <filesystem>
#include <utility>

#include "data/image_io.h"
#include "engine/parallel.h"

namespace orbit::data {

namespace fs = std::filesystem;

namespace {
bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// The image files of one class folder, sorted by name.
std::vector<fs::path> image_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path());
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return files;
}
}  // namespace

std::vector<std::string> image_folder_classes(const std::string& root) {
  std::error_code ec;
  ORBIT_CHECK(fs::is_directory(root, ec), "load_image_folder: '", root,
              "' is not a directory; expected one subfolder of images per class");
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && !n.empty() && n[0] != '.') classes.push_back(n);
  }
  std::sort(classes.begin(), classes.end());
  ORBIT_CHECK(!classes.empty(), "load_image_folder: '", root,
              "' holds no class folder; expected one subfolder of images per class (ROOT/<class>/<image>.png)");
  return classes;
}

ImageClassificationDataset load_image_folder(const std::string& root, const ImageFormat& format,
                                             const std::string& name, const LoadProgress& progress) {
  check_image_format(format, "load_image_folder: '" + root + "'");
  const std::vector<std::string> classes = image_folder_classes(root);
  std::vector<std::pair<fs::path, int64_t>> files;  // every image with its label, listed before any is read
  for (size_t c = 0; c < classes.size(); ++c) {
    const std::vector<fs::path> in_class = image_files(fs::path(root) / classes[c]);
    ORBIT_CHECK(!in_class.empty(), "load_image_folder: '", root, "': class folder '", classes[c],
                "' holds no image (expected .png, .jpg, .jpeg or .bmp files)");
    for (const auto& f : in_class) files.emplace_back(f, static_cast<int64_t>(c));
  }
  // Decoded on every thread, a block of images at a time; the checks and the progress calls run on this
  // thread, in file order, after each block, so the first bad file in order is the one named, whatever
  // the thread count.
  const int64_t total = static_cast<int64_t>(files.size());
  std::vector<Tensor> images(files.size());
  std::vector<std::exception_ptr> failed(files.size());
  const int64_t block = 32 * std::max(1, num_threads());
  for (int64_t start = 0; start < total; start += block) {
    const int64_t stop = std::min(total, start + block);
    parallel_for(start, stop, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const std::string f = files[static_cast<size_t>(i)].first.string();
        try {
          images[static_cast<size_t>(i)] = to_image_format(read_image(f, format.channels), format, f);
        } catch (...) {
          failed[static_cast<size_t>(i)] = std::current_exception();
        }
      }
    });
    for (int64_t i = start; i < stop; ++i) {
      if (failed[static_cast<size_t>(i)]) std::rethrow_exception(failed[static_cast<size_t>(i)]);
      const Tensor& img = images[static_cast<size_t>(i)];
      ORBIT_CHECK(img.shape() == images.front().shape(), "load_image_folder: '", files[static_cast<size_t>(i)].first.string(),
                  "' is ", shape_str(img.shape()), " [C, H, W]; expected ", shape_str(images.front().shape()), " like '",
                  files.front().first.string(), "' (all images must have the same size and channels",
                  format.channels == 0 || format.size == 0
                      ? "; set the format's channels (1 or 3) and size (S for S x S) to convert them as they "
                        "are read: the run config's keys \"image_channels\" and \"image_size\""
                      : "",
                  ")");
    }
    if (progress) progress(stop, total);
  }
  std::vector<int64_t> labels;
  labels.reserve(files.size());
  for (const auto& f : files) labels.push_back(f.second);
  const Shape& s = images.front().shape();
  const int64_t N = static_cast<int64_t>(images.size()), per = shape_numel(s);
  ImageClassificationDataset ds;
  ds.name = name.empty() ? root : name;
  ds.class_names = classes;
  ds.images = Tensor::empty({N, s[0], s[1], s[2]});
  float* dst = ds.images.data<float>();
  for (int64_t i = 0; i < N; ++i) std::memcpy(dst + i * per, images[i].data<float>(), sizeof(float) * per);
  ds.labels = Tensor::from_vector(labels, {N});
  return ds;
}

}  // namespace orbit::data

// The CIFAR-10 binary format (data/cifar.h).
#include "data/cifar.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace orbit::data {

namespace fs = std::filesystem;

namespace {
constexpr int64_t kPlane = kCifarImageSize * kCifarImageSize;  // pixels per channel

// The number of records in a batch file, after checking that it exists and is a non-empty whole
// number of records.
int64_t count_records(const std::string& path, const char* op) {
  std::error_code ec;
  ORBIT_CHECK(fs::exists(path, ec), op, ": missing file '", path,
              "'; expected a CIFAR-10 binary batch (cifar-10-binary.tar.gz, see data/README.md)");
  ORBIT_CHECK(fs::is_regular_file(path, ec), op, ": '", path, "' is not a regular file");
  const uint64_t size = fs::file_size(path, ec);
  ORBIT_CHECK(!ec, op, ": cannot read the size of '", path, "': ", ec.message());
  ORBIT_CHECK(size > 0, op, ": '", path, "' is empty; expected records of ", kCifarRecordBytes, " bytes");
  ORBIT_CHECK(size % kCifarRecordBytes == 0, op, ": '", path, "' has ", size,
              " bytes, which is not a multiple of the record size ", kCifarRecordBytes,
              " (1 label byte + 3 * 32 * 32 pixel bytes); is the file truncated, or not the binary version?");
  return static_cast<int64_t>(size / kCifarRecordBytes);
}

// Reads `n` records of `path` into images (n * 3 * 1024 floats) and labels (n int64).
void read_records(const std::string& path, int64_t n, float* images, int64_t* labels, const char* op) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw Error(str_cat(op, ": cannot open '", path, "': ", std::strerror(err)));
  }
  // The same division as idx_images_to_tensor, so pixels match torchvision's ToTensor bit for bit.
  float table[256];
  for (int k = 0; k < 256; ++k) table[k] = static_cast<float>(k) / 255.0f;
  std::vector<uint8_t> rec(static_cast<size_t>(kCifarRecordBytes));
  for (int64_t i = 0; i < n; ++i) {
    in.read(reinterpret_cast<char*>(rec.data()), kCifarRecordBytes);
    ORBIT_CHECK(in.good(), op, ": read error in '", path, "' at record ", i);
    ORBIT_CHECK(rec[0] <= 9, op, ": '", path, "': record ", i, " has label ", static_cast<int>(rec[0]),
                "; expected 0..9");
    labels[i] = rec[0];
    // Bytes 1.. are already channel-major (R plane, G plane, B plane), i.e. [3, 32, 32].
    float* dst = images + i * 3 * kPlane;
    for (int64_t p = 0; p < 3 * kPlane; ++p) dst[p] = table[rec[static_cast<size_t>(1 + p)]];
  }
}

ImageClassificationDataset load_files(const std::vector<std::string>& paths, const char* op) {
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (const auto& p : paths) {
    counts.push_back(count_records(p, op));
    total += counts.back();
  }
  ImageClassificationDataset ds;
  ds.images = Tensor::empty({total, 3, kCifarImageSize, kCifarImageSize});
  ds.labels = Tensor::empty({total}, DType::I64);
  float* x = ds.images.data<float>();
  int64_t* y = ds.labels.data<int64_t>();
  int64_t at = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    read_records(paths[f], counts[f], x + at * 3 * kPlane, y + at, op);
    at += counts[f];
  }
  ds.class_names = cifar10_classes();
  return ds;
}

std::vector<std::string> read_class_names(const std::string& path) {
  std::ifstream in(path);
  ORBIT_CHECK(in.good(), "load_cifar10: cannot open '", path, "'");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    const auto b = line.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) continue;  // the official file ends with blank lines
    const auto e = line.find_last_not_of(" \t\r\n");
    names.push_back(line.substr(b, e - b + 1));
  }
  ORBIT_CHECK(names.size() == 10, "load_cifar10: '", path, "' lists ", names.size(),
              " class names; expected 10 (one per line)");
  return names;
}
}  // namespace

const std::vector<std::string>& cifar10_classes() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

ImageClassificationDataset load_cifar10_file(const std::string& path) {
  ImageClassificationDataset ds = load_files({path}, "load_cifar10_file");
  ds.name = path;
  return ds;
}

std::vector<std::string> cifar10_file_names(Split split) {
  if (split == Split::Test) return {"test_batch.bin"};
  std::vector<std::string> v;
  for (int i = 1; i <= 5; ++i) v.push_back("data_batch_" + std::to_string(i) + ".bin");
  return v;
}

ImageClassificationDataset load_cifar10(const std::string& dir, Split split) {
  std::vector<std::string> paths, missing;
  for (const auto& f : cifar10_file_names(split)) {
    paths.push_back((fs::path(dir) / f).string());
    if (!fs::exists(paths.back())) missing.push_back(paths.back());
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    throw Error(str_cat("load_cifar10: ", split_name(split), " split: missing ", list,
                        ". Download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
                        "unpack it so that these files are in ", dir, " (see data/README.md)"));
  }
  ImageClassificationDataset ds = load_files(paths, "load_cifar10");
  ds.name = std::string("cifar10/") + split_name(split);
  const fs::path meta = fs::path(dir) / "batches.meta.txt";
  if (fs::exists(meta)) ds.class_names = read_class_names(meta.string());
  return ds;
}

}  // namespace orbit::data

// Image classification datasets in memory (data/dataset.h).
#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/cifar.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "data/transforms.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace orbit::data {

namespace {
std::string label_of(const ImageClassificationDataset& ds) {
  return ds.name.empty() ? std::string("dataset") : "dataset '" + ds.name + "'";
}
}  // namespace

int64_t ImageClassificationDataset::num_classes() const {
  if (!class_names.empty()) return static_cast<int64_t>(class_names.size());
  int64_t mx = -1;
  if (labels.defined()) {
    const int64_t* y = labels.contiguous().data<int64_t>();
    for (int64_t i = 0; i < labels.numel(); ++i) mx = std::max(mx, y[i]);
  }
  return mx + 1;
}

void ImageClassificationDataset::validate() const {
  const std::string who = label_of(*this);
  ORBIT_CHECK(images.defined() && labels.defined(), who, ": images and labels must both be set");
  ORBIT_CHECK(images.dim() == 4, who, ": images must be [N, C, H, W], got shape ", shape_str(images.shape()));
  ORBIT_CHECK(is_floating(images.dtype()), who, ": images must be floating, got ", dtype_name(images.dtype()));
  ORBIT_CHECK(images.device().is_cpu() && labels.device().is_cpu(), who,
              ": datasets live on the CPU (the loader moves batches to the device), got images on ",
              images.device().str(), " and labels on ", labels.device().str());
  ORBIT_CHECK(images.is_contiguous(), who, ": images must be contiguous (call .contiguous())");
  ORBIT_CHECK(labels.dim() == 1 && labels.dtype() == DType::I64 && labels.is_contiguous(), who,
              ": labels must be a contiguous int64 [N] tensor, got ", labels.str());
  ORBIT_CHECK(images.size(0) == labels.size(0), who, ": ", images.size(0), " images but ", labels.size(0),
              " labels");
  const int64_t nc = num_classes();
  const int64_t* y = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    ORBIT_CHECK(y[i] >= 0 && y[i] < nc, who, ": label ", y[i], " at index ", i, " is outside [0, ", nc,
                ")", class_names.empty() ? "" : " (the number of class names)");
}

Tensor take_rows(const Tensor& x, const std::vector<int64_t>& rows, const char* what) {
  ORBIT_CHECK(x.defined() && x.dim() >= 1, what, ": expected a tensor with at least one dim");
  ORBIT_CHECK(x.device().is_cpu(), what, ": expected a CPU tensor, got ", x.device().str());
  const Tensor src = x.is_contiguous() ? x : x.detach().contiguous();
  Shape shape = src.shape();
  const int64_t n = shape[0];
  shape[0] = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty(shape, src.dtype());
  const size_t row_bytes = static_cast<size_t>(n == 0 ? 0 : src.numel() / n) * dtype_size(src.dtype());
  const auto* s = static_cast<const uint8_t*>(src.raw_data());
  auto* d = static_cast<uint8_t*>(out.raw_data());
  for (size_t i = 0; i < rows.size(); ++i) {
    ORBIT_CHECK(rows[i] >= 0 && rows[i] < n, what, ": index ", rows[i], " (position ", i,
                ") is out of range for ", n, " rows");
    std::memcpy(d + i * row_bytes, s + static_cast<size_t>(rows[i]) * row_bytes, row_bytes);
  }
  return out;
}

ImageClassificationDataset ImageClassificationDataset::subset(const std::vector<int64_t>& indices) const {
  const std::string what = label_of(*this) + ".subset";
  ImageClassificationDataset out;
  out.name = name;
  out.class_names = class_names;
  out.images = take_rows(images, indices, what.c_str());
  out.labels = take_rows(labels, indices, what.c_str());
  return out;
}

ImageClassificationDataset ImageClassificationDataset::slice(int64_t start, int64_t count) const {
  ORBIT_CHECK(start >= 0 && count >= 0 && start + count <= size(), label_of(*this), ".slice: rows [", start,
              ", ", start + count, ") are outside [0, ", size(), ")");
  std::vector<int64_t> idx(count);
  for (int64_t i = 0; i < count; ++i) idx[i] = start + i;
  return subset(idx);
}

ImageClassificationDataset ImageClassificationDataset::normalized(const std::vector<double>& mean,
                                                                  const std::vector<double>& std) const {
  const std::string who = label_of(*this) + ".normalized";
  const int64_t C = channels();
  auto per_channel = [&](const std::vector<double>& v, const char* what) {
    ORBIT_CHECK(static_cast<int64_t>(v.size()) == C || v.size() == 1, who, ": expected 1 or ", C, " ",
                what, " values (one per channel), got ", v.size());
    std::vector<double> full(C);
    for (int64_t c = 0; c < C; ++c) full[c] = v.size() == 1 ? v[0] : v[c];
    return full;
  };
  const std::vector<double> m = per_channel(mean, "mean"), s = per_channel(std, "std");
  for (int64_t c = 0; c < C; ++c)
    ORBIT_CHECK(s[c] > 0 && std::isfinite(s[c]), who, ": std must be positive, got ", s[c], " for channel ", c);
  NoGradGuard ng;
  const Tensor mt = Tensor::from_vector(m, {1, C, 1, 1}).to(images.dtype());
  const Tensor st = Tensor::from_vector(s, {1, C, 1, 1}).to(images.dtype());
  ImageClassificationDataset out = *this;
  out.images = div(sub(images.detach(), mt), st).contiguous();
  return out;
}

void check_image_format(const ImageFormat& format, const std::string& where) {
  ORBIT_CHECK(format.channels == 0 || format.channels == 1 || format.channels == 3, where, ": channels = ",
              format.channels, "; expected 0 (as stored), 1 (grey) or 3 (RGB)");
  ORBIT_CHECK(format.size >= 0, where, ": size = ", format.size, "; expected 0 (as stored) or S > 0 (S x S images)");
}

Tensor to_image_format(const Tensor& image, const ImageFormat& format, const std::string& what) {
  check_image_format(format, what);
  ORBIT_CHECK(image.defined() && image.dim() == 3 && is_floating(image.dtype()), what,
              ": expected a floating image [C, H, W], got ", image.defined() ? shape_str(image.shape()) : "undefined");
  Tensor img = image;
  const int64_t C = img.size(0), H = img.size(1), W = img.size(2);
  if (format.channels != 0 && format.channels != C) {
    ORBIT_CHECK(C == 1 || C == 3, what, ": has ", C, " channels; only 1 (grey) and 3 (RGB) convert to ", format.channels);
    NoGradGuard ng;
    const Tensor x = img.to(DType::F32).contiguous();
    Tensor out = Tensor::empty({format.channels, H, W});
    const float* src = x.data<float>();
    float* dst = out.data<float>();
    const int64_t plane = H * W;
    if (C == 1) {  // grey -> RGB: the same plane three times
      for (int c = 0; c < 3; ++c) std::memcpy(dst + c * plane, src, sizeof(float) * plane);
    } else {  // RGB -> grey with stb_image's integer weights
      for (int64_t i = 0; i < plane; ++i)
        dst[i] = (77.0f * src[i] + 150.0f * src[plane + i] + 29.0f * src[2 * plane + i]) / 256.0f;
    }
    img = out.to(image.dtype());
  }
  if (format.size > 0 && (H != format.size || W != format.size))
    img = center_crop(resize_shorter(img, format.size), format.size, format.size);
  return img;
}

ImageClassificationDataset to_image_format(const ImageClassificationDataset& ds, const ImageFormat& format) {
  const std::string who = label_of(ds);
  check_image_format(format, who);
  const bool same_channels = format.channels == 0 || format.channels == ds.channels();
  const bool same_size = format.size == 0 || (ds.height() == format.size && ds.width() == format.size);
  if (same_channels && same_size) return ds;
  const int64_t N = ds.size();
  ImageClassificationDataset out = ds;
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < N; ++i)
    rows.push_back(to_image_format(ds.images.select(0, i), format, str_cat(who, " image ", i)).contiguous());
  const Shape s = N > 0 ? rows.front().shape()
                        : Shape{format.channels ? format.channels : ds.channels(), format.size ? format.size : ds.height(),
                                format.size ? format.size : ds.width()};
  out.images = Tensor::empty({N, s[0], s[1], s[2]}, ds.images.dtype());
  const size_t bytes = static_cast<size_t>(shape_numel(s)) * dtype_size(ds.images.dtype());
  for (int64_t i = 0; i < N; ++i)
    std::memcpy(static_cast<char*>(out.images.raw_data()) + i * bytes, rows[i].raw_data(), bytes);
  return out;
}

std::vector<int64_t> ImageClassificationDataset::class_counts() const {
  std::vector<int64_t> counts(std::max<int64_t>(num_classes(), 0), 0);
  const Tensor y = labels.contiguous();
  const int64_t* p = y.data<int64_t>();
  for (int64_t i = 0; i < y.numel(); ++i)
    if (p[i] >= 0 && p[i] < static_cast<int64_t>(counts.size())) ++counts[p[i]];
  return counts;
}

ChannelStats channel_stats(const ImageClassificationDataset& ds) {
  ds.validate();
  const Tensor x = ds.images.to(DType::F64);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const double* p = x.data<double>();
  ChannelStats st{std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  const double count = static_cast<double>(N * HW);
  ORBIT_CHECK(count > 0, "channel_stats: ", label_of(ds), " has no pixels");
  // Two passes (mean, then squared deviations): numerically safer than E[x^2] - E[x]^2.
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const double* q = p + (n * C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) st.mean[c] += q[i];
    }
  for (auto& m : st.mean) m /= count;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const double* q = p + (n * C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) st.std[c] += (q[i] - st.mean[c]) * (q[i] - st.mean[c]);
    }
  for (auto& s : st.std) s = std::sqrt(s / count);
  return st;
}

ImageClassificationDataset load_idx_dataset(const std::string& images_path, const std::string& labels_path,
                                            const std::vector<std::string>& class_names,
                                            const std::string& name) {
  const IdxArray img = read_idx(images_path);
  const IdxArray lab = read_idx(labels_path);
  ORBIT_CHECK(img.type == IdxType::U8, "load_idx_dataset: ", images_path, ": expected ubyte (0x08) pixels, got ",
              idx_type_name(img.type));
  ORBIT_CHECK(img.shape.size() == 3 || img.shape.size() == 4, "load_idx_dataset: ", images_path,
              ": expected images [N, H, W] or [N, C, H, W], got dims ", shape_str(img.shape));
  ORBIT_CHECK(lab.shape.size() == 1, "load_idx_dataset: ", labels_path, ": expected labels [N], got dims ",
              shape_str(lab.shape));
  ORBIT_CHECK(lab.type != IdxType::F32 && lab.type != IdxType::F64, "load_idx_dataset: ", labels_path,
              ": expected integer labels, got ", idx_type_name(lab.type));
  ORBIT_CHECK(img.shape[0] == lab.shape[0], "load_idx_dataset: image count ", img.shape[0], " (", images_path,
              ") differs from label count ", lab.shape[0], " (", labels_path,
              "); expected one label per image. Are the files from the same split?");
  ImageClassificationDataset ds;
  ds.name = name.empty() ? images_path : name;
  ds.class_names = class_names;
  Tensor x = idx_images_to_tensor(img);
  if (img.shape.size() == 3) x = x.view({img.shape[0], 1, img.shape[1], img.shape[2]});
  ds.images = x;
  ds.labels = idx_labels_to_tensor(lab);
  if (!class_names.empty()) {
    const int64_t nc = static_cast<int64_t>(class_names.size());
    const int64_t* y = ds.labels.data<int64_t>();
    for (int64_t i = 0; i < ds.size(); ++i)
      ORBIT_CHECK(y[i] >= 0 && y[i] < nc, "load_idx_dataset: ", labels_path, ": label ", y[i], " at index ", i,
                  " is outside [0, ", nc, ") (", nc, " classes)");
  }
  ds.validate();
  return ds;
}

const char* split_name(Split s) { return s == Split::Train ? "train" : "test"; }

std::pair<std::string, std::string> idx_file_names(Split split) {
  const std::string p = split == Split::Train ? "train" : "t10k";
  return {p + "-images-idx3-ubyte", p + "-labels-idx1-ubyte"};
}

std::vector<std::string> known_datasets() { return {"mnist", "fashion-mnist", "cifar10"}; }

namespace {
const char kFolderPrefix[] = "folder:";
constexpr size_t kFolderPrefixLen = sizeof(kFolderPrefix) - 1;

bool is_folder_name(const std::string& name) {
  return name.size() > kFolderPrefixLen && name.compare(0, kFolderPrefixLen, kFolderPrefix) == 0;
}

const char kIdxPrefix[] = "idx:";
constexpr size_t kIdxPrefixLen = sizeof(kIdxPrefix) - 1;

bool is_idx_name(const std::string& name) {
  return name.size() > kIdxPrefixLen && name.compare(0, kIdxPrefixLen, kIdxPrefix) == 0;
}

// "idx:PATH": the four IDX files under PATH; the class names from PATH/classes.txt (one per line),
// else the label numbers 0 .. K-1 with K one more than the largest label of either split, so that
// both splits have the same classes.
ImageClassificationDataset load_idx_folder_dataset(const std::string& name, Split split) {
  const std::filesystem::path base = name.substr(kIdxPrefixLen);
  auto files_of = [&](Split s) {
    const auto [img, lab] = idx_file_names(s);
    return std::make_pair(base / img, base / lab);
  };
  const auto [img_path, lab_path] = files_of(split);
  for (const auto& f : {img_path, lab_path})
    ORBIT_CHECK(std::filesystem::is_regular_file(f), "load_dataset: ", name, " (", split_name(split), "): missing ",
                f.string(), "; an idx:PATH dataset is the files ", idx_file_names(Split::Train).first, ", ",
                idx_file_names(Split::Train).second, ", ", idx_file_names(Split::Test).first, " and ",
                idx_file_names(Split::Test).second, " in PATH (uncompressed), and optionally classes.txt (see data/README.md)");
  std::vector<std::string> classes;
  const std::filesystem::path names_path = base / "classes.txt";
  if (std::filesystem::exists(names_path)) {
    std::ifstream in(names_path);
    ORBIT_CHECK(in.good(), "load_dataset: ", name, ": cannot read ", names_path.string());
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) classes.push_back(line);
    }
    ORBIT_CHECK(!classes.empty(), "load_dataset: ", name, ": ", names_path.string(),
                " names no class; expected one class name per line, in label order");
  } else {
    int64_t largest = -1;
    for (Split s : {Split::Train, Split::Test}) {
      const std::filesystem::path lp = files_of(s).second;
      if (!std::filesystem::is_regular_file(lp)) continue;
      const Tensor y = idx_labels_to_tensor(read_idx(lp.string()));
      const int64_t* p = y.data<int64_t>();
      for (int64_t i = 0; i < y.numel(); ++i) {
        ORBIT_CHECK(p[i] >= 0, "load_dataset: ", lp.string(), ": label ", p[i], " at index ", i, " is negative");
        largest = std::max(largest, p[i]);
      }
    }
    for (int64_t k = 0; k <= largest; ++k) classes.push_back(std::to_string(k));
  }
  return load_idx_dataset(img_path.string(), lab_path.string(), classes, name + "/" + split_name(split));
}

// "folder:PATH": PATH/<split>/, whose class folders must match the other split's when it exists.
ImageClassificationDataset load_folder_dataset(const std::string& name, Split split, const ImageFormat& format,
                                               const LoadProgress& progress) {
  const std::filesystem::path base = name.substr(kFolderPrefixLen);
  const std::filesystem::path dir = base / split_name(split);
  const std::filesystem::path other = base / split_name(split == Split::Train ? Split::Test : Split::Train);
  ORBIT_CHECK(std::filesystem::is_directory(dir), "load_dataset: ", name, " (", split_name(split), "): missing folder ",
              dir.string(), "; expected ", (base / "train").string(), "/<class>/<image> and ",
              (base / "test").string(), "/<class>/<image> (see data/README.md)");
  if (std::filesystem::is_directory(other)) {
    const auto a = image_folder_classes(dir.string()), b = image_folder_classes(other.string());
    if (a != b) {
      auto list = [](const std::vector<std::string>& v) {
        std::string s;
        for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
        return s;
      };
      throw Error(str_cat("load_dataset: ", name, ": the class folders of ", dir.string(), " (", list(a),
                          ") differ from those of ", other.string(), " (", list(b),
                          "); both splits need the same classes so that labels agree"));
    }
  }
  return load_image_folder(dir.string(), format, name + "/" + split_name(split), progress);
}
}  // namespace

bool is_known_dataset(const std::string& name) {
  const auto k = known_datasets();
  return std::find(k.begin(), k.end(), name) != k.end() || is_folder_name(name) || is_idx_name(name);
}

const std::vector<std::string>& mnist_classes() {
  static const std::vector<std::string> names = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  return names;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

namespace {
ImageClassificationDataset load_named_dataset(const std::string& name, Split split, const std::string& root);
}  // namespace

ImageClassificationDataset load_dataset(const std::string& name, Split split, const std::string& root,
                                        const ImageFormat& format, const LoadProgress& progress) {
  check_image_format(format, str_cat("load_dataset: ", name));
  if (is_folder_name(name)) return load_folder_dataset(name, split, format, progress);
  if (is_idx_name(name)) return to_image_format(load_idx_folder_dataset(name, split), format);
  return to_image_format(load_named_dataset(name, split, root), format);
}

namespace {
ImageClassificationDataset load_named_dataset(const std::string& name, Split split, const std::string& root) {
  if (name == "cifar10") {
    const std::filesystem::path dir = std::filesystem::path(root) / "cifar-10-batches-bin";
    ORBIT_CHECK(std::filesystem::is_directory(dir), "load_dataset: cifar10 (", split_name(split), "): missing folder ",
                dir.string(), ". Download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
                "and unpack it in ", root, " (see data/README.md)");
    return load_cifar10(dir.string(), split);
  }
  const std::vector<std::string>* classes = nullptr;
  if (name == "mnist") classes = &mnist_classes();
  if (name == "fashion-mnist") classes = &fashion_mnist_classes();
  if (!classes) {
    std::string known;
    for (const auto& k : known_datasets()) known += (known.empty() ? "" : ", ") + k;
    throw Error(str_cat("load_dataset: unknown dataset '", name, "'", did_you_mean(name, known_datasets()), " (known datasets: ", known,
                        ", or folder:PATH for image folders PATH/train/<class>/ and PATH/test/<class>/, or idx:PATH for "
                        "the IDX files PATH/{train,t10k}-{images-idx3,labels-idx1}-ubyte)"));
  }
  const auto [img_file, lab_file] = idx_file_names(split);
  const std::filesystem::path dir = std::filesystem::path(root) / name;
  for (const auto& f : {img_file, lab_file}) {
    const auto p = dir / f;
    ORBIT_CHECK(std::filesystem::exists(p), "load_dataset: ", name, " (", split_name(split), "): missing ",
                p.string(), ". Run `make data` to create it, or put the official IDX files in ", dir.string(),
                " (see data/README.md)");
  }
  return load_idx_dataset((dir / img_file).string(), (dir / lab_file).string(), *classes,
                          name + "/" + split_name(split));
}
}  // namespace

}  // namespace orbit::data

// In-memory image classification datasets: images [N, C, H, W] float32 and int64 labels [N], loaded
// from IDX file pairs (MNIST, Fashion-MNIST), CIFAR-10 batches (data/cifar.h) or image folders
// (data/image_folder.h), with subsets and per-channel normalization. Class selection, stratified
// subsets and k-fold splits are in data/split.h.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace orbit::data {

struct ImageClassificationDataset {
  std::string name;                      // used in messages, e.g. "fashion-mnist/train"
  Tensor images;                         // [N, C, H, W], floating, contiguous, on the CPU
  Tensor labels;                         // [N] int64 in [0, num_classes())
  std::vector<std::string> class_names;  // may be empty: then num_classes() = max label + 1

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  int64_t num_classes() const;
  int64_t channels() const { return images.size(1); }
  int64_t height() const { return images.size(2); }
  int64_t width() const { return images.size(3); }

  // Throws orbit::Error (naming the dataset) unless images are a contiguous floating CPU [N, C, H, W]
  // tensor, labels a contiguous int64 [N] tensor with the same N, and every label is in
  // [0, num_classes()).
  void validate() const;
  // The rows `indices` (any order, repeats allowed), copied; the class names are kept.
  ImageClassificationDataset subset(const std::vector<int64_t>& indices) const;
  // Rows [start, start + count).
  ImageClassificationDataset slice(int64_t start, int64_t count) const;
  // (x - mean[c]) / std[c] per channel; mean and std hold one value per channel or one for all.
  ImageClassificationDataset normalized(const std::vector<double>& mean,
                                        const std::vector<double>& std) const;
  // Number of samples per class, [num_classes()].
  std::vector<int64_t> class_counts() const;
};

// How images are brought to one format as a dataset is loaded (the run config's "image_channels" and
// "image_size"), so a folder of mixed grey and colour images of different sizes can be read.
struct ImageFormat {
  int channels = 0;  // 0: as stored; 1: grey; 3: RGB (as stb_image converts: grey copied to R, G and B;
                     // RGB to grey as (77 R + 150 G + 29 B) / 256; an alpha channel dropped)
  int64_t size = 0;  // 0: as stored; S > 0: every image whose size is not S x S has its shorter side
                     // resized to S (bilinear, antialiased when shrinking), then its central S x S crop
                     // (torchvision's Resize(S) then CenterCrop(S))
};
// Throws naming `where` unless channels is 0, 1 or 3 and size >= 0.
void check_image_format(const ImageFormat& format, const std::string& where);
// One image [C, H, W] in `format` (data/transforms.h resize_shorter and center_crop). `what` names the
// image in errors: a channel count other than 1 or 3 cannot be converted.
Tensor to_image_format(const Tensor& image, const ImageFormat& format, const std::string& what);
// Every image of a loaded dataset in `format` (a copy; the dataset itself when nothing changes).
ImageClassificationDataset to_image_format(const ImageClassificationDataset& ds, const ImageFormat& format);

// Per-channel mean and (population) standard deviation over all pixels of a dataset.
struct ChannelStats {
  std::vector<double> mean, std;
};
ChannelStats channel_stats(const ImageClassificationDataset& ds);

// Copies the rows `rows` of x (any dtype, contiguous, dim >= 1) into a new contiguous tensor
// [rows.size(), ...]; throws naming `what` for an index out of range.
Tensor take_rows(const Tensor& x, const std::vector<int64_t>& rows, const char* what = "take_rows");

// Loads an IDX image file ([N, H, W] -> [N, 1, H, W], or [N, C, H, W]; ubyte pixels scaled to [0, 1])
// and an IDX label file ([N], integer). Throws naming both paths when the counts differ, and naming
// the label path for labels outside [0, class_names.size()) (when class_names is not empty).
ImageClassificationDataset load_idx_dataset(const std::string& images_path,
                                            const std::string& labels_path,
                                            const std::vector<std::string>& class_names = {},
                                            const std::string& name = "");

enum class Split { Train, Test };
const char* split_name(Split s);  // "train" / "test"

// The standard file names of a split: {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"} or
// {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}.
std::pair<std::string, std::string> idx_file_names(Split split);

// Told how far a long load has come: `done` of `total` images read (called as an image folder is read,
// after each block of images; a caller shows it, e.g. as a progress bar). Empty: nothing is told.
using LoadProgress = std::function<void(int64_t done, int64_t total)>;

// The named datasets: "mnist", "fashion-mnist" (made by `make data`) and "cifar10" (the official
// binary files, see data/README.md). load_dataset also accepts "folder:PATH" and "idx:PATH" (not
// listed here, as PATH is free): an image folder tree PATH/train/<class>/<image> and
// PATH/test/<class>/<image>, or a folder of IDX files.
std::vector<std::string> known_datasets();
// True for a name load_dataset accepts: one of known_datasets(), or "folder:" or "idx:" followed by a path.
bool is_known_dataset(const std::string& name);
const std::vector<std::string>& mnist_classes();          // "0" ... "9"
const std::vector<std::string>& fashion_mnist_classes();  // "T-shirt/top", "Trouser", ...
// Loads a named dataset, named "<name>/<split>":
//   "mnist", "fashion-mnist": ROOT/NAME/{train,t10k}-{images,labels}-idx*-ubyte with the dataset's
//       class names; missing files point at `make data`;
//   "cifar10": ROOT/cifar-10-batches-bin/ (the folder of the official archive), see data/cifar.h;
//   "folder:PATH": PATH/train/ or PATH/test/ read by load_image_folder (data/image_folder.h), each
//       image brought to `format` as it is read; PATH is relative to the working directory, not ROOT.
//       When the other split's folder exists too, both must have the same class folders (so labels
//       agree).
//   "idx:PATH": PATH/{train,t10k}-{images,labels}-idx*-ubyte (a user's own IDX files, uncompressed);
//       the class names from PATH/classes.txt (one per line, in label order) when it exists, else
//       "0" ... "K-1" with K one more than the largest label of either split; PATH as for folder:.
// The named datasets are brought to `format` after loading (to_image_format). An unknown name lists
// the accepted ones. `progress` is told how many images of an image folder are read (the other forms
// are read whole from one or a few files, and tell nothing).
ImageClassificationDataset load_dataset(const std::string& name, Split split,
                                        const std::string& root = "data", const ImageFormat& format = {},
                                        const LoadProgress& progress = {});

}  // namespace orbit::data

// A dataset stored as image files, one subfolder per class (torchvision's ImageFolder layout):
//
//   ROOT/cat/001.png  ROOT/cat/002.png  ...
//   ROOT/dog/001.jpg  ...
//
// Classes are the subfolders' names in sorted (byte-wise) order, so label i is the i-th name;
// folders whose name starts with '.' are skipped. Within a class, the files with the extensions
// .png, .jpg, .jpeg or .bmp (any case) are read in sorted name order; other files are ignored.
// Rows are class-major: all of class 0, then all of class 1, ...
#pragma once

#include <string>
#include <vector>

#include "data/dataset.h"

namespace orbit::data {

// The class folder names of ROOT, sorted. Throws naming ROOT when it is not a directory or holds no
// class folder.
std::vector<std::string> image_folder_classes(const std::string& root);

// Reads every image (data/image_io.h read_image) into images [N, C, H, W] float32 in [0, 1] and
// labels [N], each brought to `format` (data/dataset.h: the channels, 1 grey or 3 RGB, and the size S
// x S) as it is read. After that all images must have the same size and channel count (an error names
// the file, its shape and the expected shape with the file that set it). An empty class folder or no
// class folder is an error naming ROOT. Named `name`, or ROOT when empty. The files are listed first,
// then decoded on every thread (engine/parallel.h), a block of 32 images per thread at a time; the
// result, and which bad file an error names (the first in order), do not depend on the thread count.
// `progress` (when not empty) is told (i, N) after each block: i of the N images are read.
ImageClassificationDataset load_image_folder(const std::string& root, const ImageFormat& format = {},
                                             const std::string& name = "", const LoadProgress& progress = {});

}  // namespace orbit::data

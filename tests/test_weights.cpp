// The safetensors reader/writer: round trips, conversions, and every kind of corrupt file.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "tests/test_util.h"
#include "weights/safetensors.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::read_file_bytes;

namespace {
std::string tmp_path(const std::string& name) { return std::string(ORBIT_BINARY_DIR) + "/test_weights_" + name; }

std::string file_bytes(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  return s + header + data;
}

void expect_error(const std::string& bytes, const std::string& needle) {
  try {
    parse_safetensors(bytes, "test.safetensors");
    FAIL() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Safetensors, RoundTrip) {
  Generator g(1);
  NamedTensors in = {{"conv.weight", Tensor::randn({4, 3, 3, 3}, &g)},
                     {"bn.num_batches_tracked", Tensor::scalar(7, DType::I64)},
                     {"double", Tensor::randn({5}, &g, DType::F64)},
                     {"strided", Tensor::randn({3, 4}, &g).t()},
                     {"empty", Tensor::zeros({0, 2})}};
  const std::string path = tmp_path("roundtrip.safetensors");
  save_safetensors(path, in, {{"epoch", "3"}});
  Metadata meta;
  NamedTensors out = load_safetensors(path, &meta);
  ASSERT_EQ(out.size(), in.size());
  EXPECT_EQ(meta.at("epoch"), "3");
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);  // data order = save order
    EXPECT_EQ(out[i].second.dtype(), in[i].second.dtype());
    EXPECT_TRUE(all_close(out[i].second, in[i].second, 0)) << in[i].first;
  }
}

TEST(Safetensors, HalfAndBfloat16ConvertToFloat32) {
  // 1.0, -2.0, 0.5 and the smallest subnormal in F16; 1.0 and -3.0 in BF16.
  const uint16_t f16[] = {0x3c00, 0xc000, 0x3800, 0x0001};
  const uint16_t bf16[] = {0x3f80, 0xc040};
  std::string data(reinterpret_cast<const char*>(f16), 8);
  data.append(reinterpret_cast<const char*>(bf16), 4);
  const std::string h = R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})";
  auto t = parse_safetensors(file_bytes(h, data), "mem");
  auto a = t[0].second.to_vector<float>(), b = t[1].second.to_vector<float>();
  EXPECT_EQ(a[0], 1.0f);
  EXPECT_EQ(a[1], -2.0f);
  EXPECT_EQ(a[2], 0.5f);
  EXPECT_EQ(a[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(b, (std::vector<float>{1.0f, -3.0f}));
}

TEST(Safetensors, CorruptFilesAreReportedWithTheTensorName) {
  const std::string good_h = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\0');
  EXPECT_NO_THROW(parse_safetensors(file_bytes(good_h, data), "mem"));
  expect_error(std::string("\x01\x02", 2), "too short");
  std::string beyond = file_bytes(good_h, data);
  beyond[0] = static_cast<char>(0xff);
  beyond[3] = 0x7f;
  expect_error(beyond, "beyond the end");
  // Another kind of file (here JSON) is named as not a safetensors file.
  expect_error(std::string(R"({"model": "resnet_small", "lambda": 3})"), "not a safetensors file");
  expect_error(file_bytes("{\"w\": [", data), "malformed JSON");
  expect_error(file_bytes(R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", data), "'w' has unsupported dtype");
  expect_error(file_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data), "'w'");
  expect_error(file_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data), "outside the data section");
  expect_error(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data), "overlap");
  expect_error(file_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-negative");
  expect_error(file_bytes(R"([1,2])", data), "JSON object");
  // Truncated data: the file ends before the tensor's bytes.
  expect_error(file_bytes(good_h, data).substr(0, 8 + good_h.size() + 5), "outside the data section");
  EXPECT_THROW(load_safetensors(tmp_path("does_not_exist")), Error);
}

TEST(Safetensors, RandomCorruptionNeverCrashes) {
  // Flip bytes, truncate and extend a valid file many times: parsing must either succeed or throw
  // orbit::Error, never crash or read out of bounds (run under a sanitizer to check the latter).
  Generator g(9);
  const std::string path = tmp_path("fuzz.safetensors");
  save_safetensors(path, {{"a", Tensor::randn({3, 2}, &g)}, {"b", Tensor::arange(4, DType::I64)}}, {{"k", "v"}});
  const std::string good = read_file_bytes(path);
  int errors = 0, ok = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s = good;
    const int edits = 1 + g.randint(4);
    for (int e = 0; e < edits; ++e) {
      switch (g.randint(3)) {
        case 0: s[g.randint(static_cast<int64_t>(s.size()))] = static_cast<char>(g.randint(256)); break;
        case 1: s.resize(g.randint(static_cast<int64_t>(s.size()) + 1)); break;
        case 2: s += std::string(g.randint(16), static_cast<char>(g.randint(256))); break;
      }
      if (s.empty()) break;
    }
    try {
      parse_safetensors(s, "fuzz");
      ++ok;
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 100);  // most corruptions are caught
  EXPECT_EQ(ok + errors, 3000);
}

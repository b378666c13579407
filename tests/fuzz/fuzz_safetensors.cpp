// The safetensors parser (weights/safetensors.h) on corrupted files, built with AddressSanitizer
// and UndefinedBehaviorSanitizer (tests/CMakeLists.txt; a ctest test of `make test`). Every input
// is copied into a heap buffer of exactly its size, so a read one byte past the end is reported.
// Parsing must either succeed or throw orbit::Error: any other exception, a crash or a sanitizer
// report fails.
//
//   orbit_fuzz_safetensors [--iterations N] [--seed S]
//
// Built with clang and -DORBIT_LIBFUZZER -fsanitize=fuzzer,address, the same file is a libFuzzer
// target (LLVMFuzzerTestOneInput) instead.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/tensor.h"
#include "weights/safetensors.h"

using namespace orbit;

namespace {

// Parses exactly [data, data + size); returns whether it succeeded.
bool parse_exact(const uint8_t* data, size_t size) {
  std::unique_ptr<char[]> buf(new char[size == 0 ? 1 : size]);
  if (size) std::memcpy(buf.get(), data, size);
  try {
    parse_safetensors(buf.get(), size, "fuzz");
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

#ifdef ORBIT_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parse_exact(data, size);
  return 0;
}
#else

namespace {

// A valid file with every dtype, an empty tensor, a scalar and metadata.
std::string valid_file() {
  const std::string path = "/tmp/orbit_fuzz_seed_" + std::to_string(::getpid()) + ".safetensors";
  save_safetensors(path,
                   {{"conv.weight", Tensor::arange(24, DType::F32).reshape({2, 3, 2, 2})},
                    {"bn.num_batches_tracked", Tensor::scalar(7, DType::I64)},
                    {"empty", Tensor::zeros({0, 3})},
                    {"f64", Tensor::arange(5, DType::F64)}},
                   {{"format", "pt"}, {"model", "x"}});
  FILE* f = std::fopen(path.c_str(), "rb");
  std::string s;
  char buf[4096];
  size_t n;
  while (f && (n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  if (f) std::fclose(f);
  std::remove(path.c_str());
  return s;
}

// F16 and BF16 tensors, written by hand (save_safetensors writes the engine's own dtypes).
std::string half_file() {
  const std::string header = R"({"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]}})";
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  s += header;
  const uint16_t vals[7] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x3f80, 0xff80, 0x0000};
  for (uint16_t v : vals) s.push_back(static_cast<char>(v & 0xff)), s.push_back(static_cast<char>(v >> 8));
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = 20000;
  unsigned seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--iterations")) iterations = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed")) seed = static_cast<unsigned>(std::atol(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: orbit_fuzz_safetensors [--iterations N] [--seed S]\n");
      return 2;
    }
  }
  const std::vector<std::string> seeds = {valid_file(), half_file()};
  for (const auto& s : seeds)
    if (!parse_exact(reinterpret_cast<const uint8_t*>(s.data()), s.size())) {
      std::fprintf(stderr, "a valid seed file failed to parse\n");
      return 1;
    }
  std::mt19937_64 rng(seed);
  auto below = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  const char* tokens[] = {"0", "1", "9", "-1", "18446744073709551615", "1e30", "\"F32\"", "\"F16\"", "\"BF16\"", "\"I64\"",
                          "\"Q7\"", "[", "]", "{", "}", ",", ":", "null", "\"__metadata__\"", "[0,0]", "[]", "\""};
  long ok = 0, rejected = 0;
  for (long it = 0; it < iterations; ++it) {
    std::string s = seeds[below(seeds.size())];
    const int edits = 1 + static_cast<int>(below(4));
    for (int e = 0; e < edits && !s.empty(); ++e) {
      switch (below(6)) {
        case 0: s[below(s.size())] = static_cast<char>(rng()); break;                         // a random byte
        case 1: s.resize(below(s.size() + 1)); break;                                          // truncation
        case 2: s.append(below(24), static_cast<char>(rng())); break;                          // extension
        case 3: {                                                                               // the length field
          uint64_t len = 0;
          for (int i = 0; i < 8 && i < static_cast<int>(s.size()); ++i) len |= uint64_t(uint8_t(s[size_t(i)])) << (8 * i);
          const uint64_t choices[] = {len + 1, len - 1, 0, uint64_t(-1), s.size(), uint64_t(1) << 40, len + below(64)};
          len = choices[below(7)];
          for (int i = 0; i < 8 && i < static_cast<int>(s.size()); ++i) s[size_t(i)] = static_cast<char>(len >> (8 * i));
          break;
        }
        case 4: {  // a JSON token in the header
          const size_t at = 8 + below(s.size() > 8 ? s.size() - 8 : 1);
          if (at <= s.size()) s.insert(at, tokens[below(sizeof tokens / sizeof *tokens)]);
          break;
        }
        case 5: {  // a digit of the header replaced by another number
          std::vector<size_t> digits;
          for (size_t i = 8; i < s.size(); ++i)
            if (s[i] >= '0' && s[i] <= '9') digits.push_back(i);
          if (!digits.empty()) s.replace(digits[below(digits.size())], 1, std::to_string(rng() % 100000));
          break;
        }
      }
    }
    (parse_exact(reinterpret_cast<const uint8_t*>(s.data()), s.size()) ? ok : rejected)++;
  }
  std::printf("orbit_fuzz_safetensors: %ld corrupted files, %ld parsed, %ld rejected with orbit::Error, no crash\n", iterations,
              ok, rejected);
  return rejected > iterations / 10 ? 0 : 1;  // most corruptions must be caught
}
#endif

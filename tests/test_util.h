// Shared test helpers: tolerance comparisons, finite-difference gradient checks and fixture loading.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "layers/module.h"

namespace orbit::testing {

// |a - b| <= atol + rtol * |b| elementwise; on failure reports the worst element.
inline ::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, double rtol, double atol = 0.0) {
  if (a.shape() != b.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double excess = std::abs(x[i] - y[i]) - (atol + rtol * std::abs(y[i]));
    if (std::isnan(x[i]) != std::isnan(y[i]) || excess > worst) {
      worst = std::isnan(x[i]) != std::isnan(y[i]) ? INFINITY : excess;
      at = i;
    }
  }
  if (worst > 0)
    return ::testing::AssertionFailure() << "element " << at << ": " << x[at] << " vs " << y[at]
                                         << " (rtol " << rtol << ", atol " << atol << ")";
  return ::testing::AssertionSuccess();
}

// max |a - b| / max(max |b|, tiny): the error normalized by the reference's scale.
inline double scaled_error(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
  }
  return num / den;
}

// Float32 results against the PyTorch fixtures: the largest error, scaled by the reference's largest
// magnitude, may be 1e-4 (float32 rounding through a few hundred operations stays well below that).
constexpr double kFixtureTol = 1e-4;

inline ::testing::AssertionResult matches(const Tensor& got, const Tensor& ref, double tol = kFixtureTol) {
  if (got.shape() != ref.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs " << shape_str(ref.shape());
  const double e = scaled_error(got, ref);
  if (e <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "scaled error " << e << " > " << tol;
}

// Expects `f` to throw orbit::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an orbit::Error mentioning '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

struct GradCheckOptions {
  double eps = 1e-6;        // central-difference step (inputs are float64)
  double threshold = 1e-5;  // |analytic - numeric| <= threshold * max(|analytic|, |numeric|, 1)
  bool mask_kinks = true;   // skip elements where the one-sided slopes disagree (ReLU at 0, ...)
  double kink_tolerance = 1e-3;
  double max_masked_fraction = 0.25;  // more masked elements than this fails the check
  uint64_t seed = 1234;
};

// Checks the gradients of f with respect to every input that requires grad, against central
// finite differences. The output is reduced to a scalar with fixed random weights, so every output
// element's gradient takes part. Inputs must be float64 CPU leaves.
inline ::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                            const std::vector<Tensor>& inputs,
                                            GradCheckOptions opt = {}) {
  Generator gen(opt.seed);
  Tensor weights;
  auto loss = [&]() -> Tensor {
    Tensor y = f(inputs);
    if (!weights.defined()) weights = Tensor::randn(y.shape(), &gen, DType::F64);
    return sum(mul(y, weights));
  };
  for (const auto& x : inputs)
    if (x.requires_grad()) x.zero_grad();
  Tensor L = loss();
  if (!L.requires_grad()) return ::testing::AssertionFailure() << "output does not require grad";
  L.backward();
  size_t checked = 0, masked = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    if (x.dtype() != DType::F64) return ::testing::AssertionFailure() << "input " << k << " is not float64";
    Tensor g = x.grad();
    std::vector<double> analytic = g.defined() ? g.to_vector<double>() : std::vector<double>(x.numel(), 0.0);
    double* p = x.data<double>();
    ORBIT_CHECK(x.is_contiguous(), "gradcheck: inputs must be contiguous");
    NoGradGuard ng;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = p[i];
      p[i] = orig + opt.eps;
      const double lp = loss().item();
      p[i] = orig - opt.eps;
      const double lm = loss().item();
      p[i] = orig;
      const double numeric = (lp - lm) / (2 * opt.eps);
      if (opt.mask_kinks) {
        const double l0 = loss().item();
        const double right = (lp - l0) / opt.eps, left = (l0 - lm) / opt.eps;
        if (std::abs(right - left) > opt.kink_tolerance * std::max({1.0, std::abs(right), std::abs(left)})) {
          ++masked;
          continue;
        }
      }
      ++checked;
      const double a = analytic[i];
      const double scale = std::max({std::abs(a), std::abs(numeric), 1.0});
      if (!(std::abs(a - numeric) <= opt.threshold * scale))
        return ::testing::AssertionFailure() << "input " << k << " element " << i << ": analytic " << a
                                             << ", numeric " << numeric << " (threshold " << opt.threshold << ")";
    }
  }
  if (checked == 0) return ::testing::AssertionFailure() << "no element was checked";
  if (masked > opt.max_masked_fraction * (checked + masked))
    return ::testing::AssertionFailure() << masked << " of " << checked + masked
                                         << " elements sat on kinks; move the inputs away from them";
  return ::testing::AssertionSuccess();
}

// A float64 leaf with standard-normal values (seeded), requiring grad.
// Standard normal values without autograd history.
inline Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  Generator gen(seed);
  return Tensor::randn(shape, &gen, dtype);
}

// A fresh directory under the system temp dir, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("orbit_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The whole content of a file ("" when it cannot be read).
inline std::string read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline Tensor random_input(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  Tensor t = mul(Tensor::randn(shape, &g, DType::F64), scale);
  t.requires_grad_(true);
  return t;
}

// ------------------------------------------------------------------ fixtures
// A fixture file (tests/fixtures/NAME.json, written by tests/fixtures/gen_*.py with PyTorch):
// {"meta": {...}, "tensors": {"name": {"dtype": "float32"|"float64"|"int64", "shape": [...], "data": [...]}}}
struct Fixture {
  nlohmann::json meta;
  std::map<std::string, Tensor> tensors;
  const Tensor& at(const std::string& name) const {
    auto it = tensors.find(name);
    ORBIT_CHECK(it != tensors.end(), "fixture has no tensor '", name, "'");
    return it->second;
  }
};

inline Tensor tensor_from_json(const nlohmann::json& j) {
  Shape shape = j.at("shape").get<Shape>();
  const std::string dt = j.at("dtype").get<std::string>();
  if (dt == "int64") return Tensor::from_vector(j.at("data").get<std::vector<int64_t>>(), shape);
  Tensor t = Tensor::from_vector(j.at("data").get<std::vector<double>>(), shape);
  return dt == "float64" ? t : t.to(DType::F32);
}

inline Fixture load_fixture(const std::string& name) {
  const std::string path = std::string(ORBIT_FIXTURE_DIR) + "/" + name + ".json";
  std::ifstream in(path);
  ORBIT_CHECK(in.good(), "cannot open fixture ", path);
  nlohmann::json j;
  in >> j;
  Fixture fx;
  if (j.contains("meta")) fx.meta = j["meta"];
  for (auto& [k, v] : j.at("tensors").items()) fx.tensors[k] = tensor_from_json(v);
  return fx;
}

// ------------------------------------------------------------------ seeded weights
// The same values as tests/fixtures/seeded_weights.py (see there): element i of the tensor `name` is a
// float32 in [-1, 1) with 24 bits from splitmix64, so a fixture of a large model needs no committed
// weights.
inline uint64_t splitmix_finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline std::vector<float> seeded_uniform(const std::string& name, int64_t n, uint64_t seed) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a, 64 bits
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  const uint64_t golden = 0x9E3779B97F4A7C15ull;
  const uint64_t key = splitmix_finalize(h ^ (seed * golden));
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(splitmix_finalize(key + static_cast<uint64_t>(i + 1) * golden) >> 40) * 0x1p-23f - 1.0f;
  return v;
}

inline Tensor seeded_tensor(const std::string& name, const Shape& shape, uint64_t seed) {
  return Tensor::from_vector(seeded_uniform(name, shape_numel(shape), seed), shape);
}

// Every entry of the module's state_dict replaced by its seeded value, scaled by its role as
// seeded_weights.py does.
inline StateDict seeded_state_dict(const Module& module, uint64_t seed) {
  StateDict out;
  for (const auto& [k, t] : module.state_dict()) {
    auto ends = [&](const std::string& s) { return k.size() >= s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0; };
    if (ends("num_batches_tracked")) {
      out.insert(k, Tensor::zeros(t.shape(), DType::I64));
      continue;
    }
    std::vector<float> u = seeded_uniform(k, t.numel(), seed);
    float scale, offset = 0.0f;
    if (ends("running_var")) {
      scale = 0.25f, offset = 1.0f;
    } else if (ends("running_mean")) {
      scale = 0.1f;
    } else if (t.dim() == 1) {
      scale = 0.1f, offset = ends("weight") ? 1.0f : 0.0f;
    } else {
      scale = static_cast<float>(std::sqrt(3.0 / static_cast<double>(t.numel() / t.size(0))));
    }
    for (float& x : u) x = x * scale + offset;
    out.insert(k, Tensor::from_vector(u, t.shape()));
  }
  return out;
}

// The fixture cases of a file whose meta holds {"cases": [{"name": ..., ...}, ...]}.
inline std::vector<nlohmann::json> fixture_cases(const Fixture& fx) {
  std::vector<nlohmann::json> v;
  if (fx.meta.contains("cases"))
    for (auto& c : fx.meta["cases"]) v.push_back(c);
  return v;
}

}  // namespace orbit::testing

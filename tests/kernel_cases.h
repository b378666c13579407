// Op cases for the CUDA kernels: each computes some ops (forward, and backward through autograd) on
// inputs placed on a given device and returns the results. The same case runs on the CPU backend (the
// reference) and then
//   - on the CUDA kernels run on the host (test_cuda_kernels.cpp, every build), and
//   - on a GPU (test_cuda.cpp, when a CUDA device is present),
// and every result must agree with the reference within the case's tolerance on the scaled error
// (max |got - ref| / max |ref|, test_util.h).
//
// Cases are defined with ORBIT_KERNEL_CASE(name, tolerance) { ... return {outputs}; } in the
// test_cuda_kernels_*.cpp files; `dev` is the device to compute on.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

namespace orbit::testing {

struct KernelCase {
  std::string name;
  double tol;
  std::function<std::vector<Tensor>(Device)> run;
};

inline std::vector<KernelCase>& kernel_cases() {
  static std::vector<KernelCase> cases;
  return cases;
}

struct RegisterKernelCase {
  RegisterKernelCase(const char* name, double tol, std::vector<Tensor> (*f)(Device)) {
    kernel_cases().push_back({name, tol, f});
  }
};

#define ORBIT_KERNEL_CASE(NAME, TOL)                                                               \
  static std::vector<::orbit::Tensor> NAME##_kernel_case(::orbit::Device dev);                     \
  static const ::orbit::testing::RegisterKernelCase NAME##_kernel_case_registration(#NAME, (TOL), \
                                                                                   NAME##_kernel_case); \
  static std::vector<::orbit::Tensor> NAME##_kernel_case(::orbit::Device dev)

// Seeded standard-normal input on dev (generated on the CPU, so every device sees the same values).
inline Tensor input_on(Device dev, const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  return randn(shape, seed, dtype).to(dev);
}
// The same, as a leaf that requires grad.
inline Tensor leaf_on(Device dev, const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  Tensor t = input_on(dev, shape, seed, dtype);
  t.requires_grad_();
  return t;
}

// Runs the case on dev and compares with the reference results; failures name the case and output.
inline ::testing::AssertionResult case_matches(const KernelCase& c, const std::vector<Tensor>& ref, Device dev) {
  std::vector<Tensor> got;
  try {
    got = c.run(dev);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << c.name << ": threw " << e.what();
  }
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << c.name << ": " << got.size() << " outputs, reference has " << ref.size();
  for (size_t i = 0; i < ref.size(); ++i) {
    const Tensor g = got[i].to(Device::cpu());
    if (g.dtype() != ref[i].dtype() || g.shape() != ref[i].shape())
      return ::testing::AssertionFailure() << c.name << " output " << i << ": " << g.str() << ", reference "
                                           << ref[i].str();
    if (g.dtype() == DType::I64) {
      if (g.to_vector<int64_t>() != ref[i].to_vector<int64_t>())
        return ::testing::AssertionFailure() << c.name << " output " << i << ": integer values differ";
      continue;
    }
    // NaN and infinities must sit where the reference has them (scaled_error alone would not see a NaN).
    const auto gv = g.to_vector<double>(), rv = ref[i].to_vector<double>();
    for (size_t j = 0; j < rv.size(); ++j) {
      const bool special = !std::isfinite(rv[j]) || !std::isfinite(gv[j]);
      if (special && !(std::isnan(rv[j]) ? std::isnan(gv[j]) : gv[j] == rv[j]))
        return ::testing::AssertionFailure() << c.name << " output " << i << " element " << j << ": " << gv[j]
                                             << ", reference " << rv[j];
    }
    const double e = scaled_error(g, ref[i]);
    if (!(e <= c.tol))
      return ::testing::AssertionFailure() << c.name << " output " << i << ": scaled error " << e << " > " << c.tol;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace orbit::testing

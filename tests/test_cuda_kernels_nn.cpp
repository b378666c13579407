// Kernel cases (tests/kernel_cases.h) for the pooling and batch-normalization kernels of the CUDA
// backend (engine/cuda/kernels/pool.h, norm.h): forward and backward of every op against the CPU
// backend. The backward passes are driven by a seeded upstream gradient, y.backward(g), so that they
// do not depend on the reduction kernels.
#include "kernel_cases.h"

namespace orbit {
namespace {

using namespace testing;

// Pooling: the kernels add each window's values (forward) and each input's window gradients
// (backward) in the CPU's order and divide by the same divisors, so the results are bit-identical.
constexpr double kPoolTol = 0;
// Batch norm, float32: the per-channel sums are accumulated in double in another order than on the
// CPU (~1e-16 relative, which almost never survives the rounding of the statistics to float32; on the
// host these cases agree exactly), and a GPU contracts x * scale + shift and dx = kk gy - ka - kb (x - m)
// into fused multiply-adds: a few float32 ulps (6e-8 each) of the terms, which are at most a few times
// the result's scale.
constexpr double kNormTol32 = 1e-6;
// Batch norm, float64: the same in double (ulp 1.1e-16; up to 9e-16 measured on the host).
constexpr double kNormTol64 = 1e-13;

// y.backward(g) with a seeded upstream gradient of y's shape and dtype.
void backward_with(const Tensor& y, Device dev, uint64_t seed) { y.backward(input_on(dev, y.shape(), seed, y.dtype())); }

// A leaf whose values have ties: relu of a normal sample, so about half are exactly 0.
Tensor leaf_with_ties(Device dev, const Shape& shape, uint64_t seed) {
  Tensor t = orbit::relu(input_on(dev, shape, seed)).detach();
  t.requires_grad_();
  return t;
}

// ---------------------------------------------------------------------------- max pooling

ORBIT_KERNEL_CASE(max_pool2d_overlapping_windows_with_padding, kPoolTol) {
  // ResNet's stem: 3x3, stride 2, padding 1 (overlapping windows, an input can be the maximum of
  // several); then the same in ceil mode on sizes where the last window hangs over.
  Tensor a = leaf_on(dev, {2, 3, 13, 12}, 101);
  const Tensor ya = orbit::max_pool2d(a, 3, 2, 1);
  backward_with(ya, dev, 102);
  Tensor b = leaf_on(dev, {2, 2, 10, 9}, 103);
  const Tensor yb = orbit::max_pool2d(b, 3, 2, 1, 1, /*ceil_mode=*/true);
  backward_with(yb, dev, 104);
  Tensor c = leaf_on(dev, {1, 2, 8, 8}, 105);  // non-overlapping 2x2, stride defaulting to the kernel
  const Tensor yc = orbit::max_pool2d(c, 2);
  backward_with(yc, dev, 106);
  return {ya, a.grad(), yb, b.grad(), yc, c.grad()};
}

ORBIT_KERNEL_CASE(max_pool2d_dilation_and_rectangular_windows, kPoolTol) {
  Tensor a = leaf_on(dev, {2, 2, 11, 10}, 111);
  const Tensor ya = orbit::max_pool2d(a, 3, 1, 1, /*dilation=*/2);
  backward_with(ya, dev, 112);
  Pool2dParams p;
  p.kernel_h = 3, p.kernel_w = 2;
  p.stride_h = 2, p.stride_w = 1;
  p.pad_h = 1, p.pad_w = 1;
  p.dilation_h = 2, p.dilation_w = 3;
  p.ceil_mode = true;
  Tensor b = leaf_on(dev, {1, 3, 12, 13}, 113, DType::F64);
  const Tensor yb = orbit::max_pool2d(b, p);
  backward_with(yb, dev, 114);
  return {ya, a.grad(), yb, b.grad()};
}

ORBIT_KERNEL_CASE(max_pool2d_ties_strided_and_unbatched, kPoolTol) {
  // Ties (many exact zeros): the first maximum in window order gets the gradient.
  Tensor a = leaf_with_ties(dev, {2, 3, 9, 11}, 121);
  const Tensor ya = orbit::max_pool2d(a, 3, 2, 1);
  backward_with(ya, dev, 122);
  // A strided (transposed) input of odd size.
  Tensor b = leaf_on(dev, {2, 3, 8, 7}, 123);
  const Tensor yb = orbit::max_pool2d(b.transpose(2, 3), 3, 2, 0, 1, true);
  backward_with(yb, dev, 124);
  // Unbatched [C, H, W], and a window as large as the input (one output per plane).
  Tensor c = leaf_on(dev, {4, 7, 7}, 125);
  const Tensor yc = orbit::max_pool2d(c, 7);
  backward_with(yc, dev, 126);
  return {ya, a.grad(), yb, b.grad(), yc, c.grad()};
}

// ---------------------------------------------------------------------------- average pooling

ORBIT_KERNEL_CASE(avg_pool2d_padding_divisors_and_ceil_mode, kPoolTol) {
  std::vector<Tensor> out;
  uint64_t seed = 131;
  // (kernel, stride, padding, ceil_mode, count_include_pad) on a 10x9 input: the ceil-mode windows at
  // the end are cut at H + padding, which sets the divisor with count_include_pad.
  const struct { int64_t k, s, p; bool ceil, include_pad; } configs[] = {
      {3, 2, 1, false, true}, {3, 2, 1, false, false}, {3, 2, 1, true, true}, {3, 2, 1, true, false},
      {2, 2, 0, false, true}, {4, 3, 2, true, true},   {3, 1, 1, false, false}};
  for (const auto& cf : configs) {
    Tensor x = leaf_on(dev, {2, 3, 10, 9}, seed++);
    const Tensor y = orbit::avg_pool2d(x, cf.k, cf.s, cf.p, cf.ceil, cf.include_pad);
    backward_with(y, dev, seed++);
    out.push_back(y);
    out.push_back(x.grad());
  }
  return out;
}

ORBIT_KERNEL_CASE(avg_pool2d_rectangular_strided_float64, kPoolTol) {
  Pool2dParams p;
  p.kernel_h = 3, p.kernel_w = 2;
  p.stride_h = 2, p.stride_w = 1;
  p.pad_h = 1, p.pad_w = 1;
  p.ceil_mode = true;
  p.count_include_pad = false;
  Tensor a = leaf_on(dev, {3, 2, 7, 11}, 141, DType::F64);
  const Tensor ya = orbit::avg_pool2d(a.transpose(2, 3), p);  // strided [3, 2, 11, 7]
  backward_with(ya, dev, 142);
  Tensor b = leaf_on(dev, {2, 5, 5}, 143);  // unbatched
  const Tensor yb = orbit::avg_pool2d(b, 5);
  backward_with(yb, dev, 144);
  return {ya, a.grad(), yb, b.grad()};
}

// ---------------------------------------------------------------------------- adaptive average pooling

ORBIT_KERNEL_CASE(adaptive_avg_pool2d_dividing_and_not, kPoolTol) {
  std::vector<Tensor> out;
  uint64_t seed = 151;
  // (input H, W) -> (output H, W): global, non-dividing (overlapping windows), mixed, and larger
  // than the input (windows of one element shared by several outputs).
  const struct { int64_t h, w, oh, ow; } configs[] = {{7, 7, 1, 1}, {7, 7, 3, 3}, {5, 6, 3, 4}, {3, 4, 5, 7}, {8, 8, 4, 4}};
  for (const auto& cf : configs) {
    Tensor x = leaf_on(dev, {2, 3, cf.h, cf.w}, seed++);
    const Tensor y = orbit::adaptive_avg_pool2d(x, cf.oh, cf.ow);
    backward_with(y, dev, seed++);
    out.push_back(y);
    out.push_back(x.grad());
  }
  Tensor d = leaf_on(dev, {2, 9, 7}, seed++, DType::F64);  // unbatched float64, strided
  const Tensor yd = orbit::adaptive_avg_pool2d(d.transpose(1, 2), 3, 4);
  backward_with(yd, dev, seed++);
  out.push_back(yd);
  out.push_back(d.grad());
  return out;
}

// ---------------------------------------------------------------------------- batch normalization

// Training mode (batch statistics) with weight, bias and running statistics: y, the gradients of x,
// weight and bias, and the updated running statistics.
std::vector<Tensor> batch_norm_training(Device dev, const Shape& shape, uint64_t seed, DType dtype, double offset) {
  const int64_t C = shape[1];
  Tensor x = leaf_on(dev, shape, seed, dtype);
  Tensor w = leaf_on(dev, {C}, seed + 1, dtype);
  Tensor b = leaf_on(dev, {C}, seed + 2, dtype);
  Tensor rm = Tensor::zeros({C}, dtype, dev), rv = Tensor::ones({C}, dtype, dev);
  const Tensor y = orbit::batch_norm(x + offset, rm, rv, w, b, /*training=*/true);
  backward_with(y, dev, seed + 3);
  return {y, x.grad(), w.grad(), b.grad(), rm, rv};
}

ORBIT_KERNEL_CASE(batch_norm_training_affine_float32, kNormTol32) {
  auto out = batch_norm_training(dev, {4, 3, 5, 7}, 201, DType::F32, 0.0);
  // Many lanes per channel (8 * 1023 values, 128 lanes), blocks not a multiple of the lanes, and an
  // offset mean (the variance from deviations, not E[x^2] - E[x]^2).
  for (const Tensor& t : batch_norm_training(dev, {8, 2, 33, 31}, 211, DType::F32, 3.0)) out.push_back(t);
  // 5 * 1763 values, 138 lanes: the combining pass adds runs of 64, 64 and 10 partial sums.
  for (const Tensor& t : batch_norm_training(dev, {5, 2, 41, 43}, 215, DType::F32, -2.0)) out.push_back(t);
  return out;
}

ORBIT_KERNEL_CASE(batch_norm_training_affine_float64, kNormTol64) {
  auto out = batch_norm_training(dev, {4, 3, 5, 7}, 221, DType::F64, 0.0);
  for (const Tensor& t : batch_norm_training(dev, {8, 2, 33, 31}, 231, DType::F64, 3.0)) out.push_back(t);
  return out;
}

ORBIT_KERNEL_CASE(batch_norm_training_without_affine, kNormTol32) {
  // No weight or bias and no running statistics: [N, C, L] and [N, C] (one value per block), and a
  // strided (transposed) input.
  Tensor a = leaf_on(dev, {3, 4, 9}, 241);
  const Tensor ya = orbit::batch_norm(a, Tensor(), Tensor(), Tensor(), Tensor(), true);
  backward_with(ya, dev, 242);
  Tensor b = leaf_on(dev, {5, 2}, 243);
  const Tensor yb = orbit::batch_norm(b, Tensor(), Tensor(), Tensor(), Tensor(), true);
  backward_with(yb, dev, 244);
  Tensor c = leaf_on(dev, {4, 6, 5, 3}, 245);
  const Tensor yc = orbit::batch_norm(c.transpose(1, 3), Tensor(), Tensor(), Tensor(), Tensor(), true);  // [4, 3, 5, 6]
  backward_with(yc, dev, 246);
  return {ya, a.grad(), yb, b.grad(), yc, c.grad()};
}

ORBIT_KERNEL_CASE(batch_norm_training_without_affine_float64, kNormTol64) {
  Tensor a = leaf_on(dev, {2, 3, 1, 1}, 251, DType::F64);  // two values per channel
  const Tensor ya = orbit::batch_norm(a, Tensor(), Tensor(), Tensor(), Tensor(), true);
  backward_with(ya, dev, 252);
  Tensor b = leaf_on(dev, {3, 5, 7, 9}, 253, DType::F64);
  const Tensor yb = orbit::batch_norm(b, Tensor(), Tensor(), Tensor(), Tensor(), true);
  backward_with(yb, dev, 254);
  return {ya, a.grad(), yb, b.grad()};
}

// Eval mode (running statistics): dx = weight * invstd * gy, and the weight and bias gradients.
std::vector<Tensor> batch_norm_eval(Device dev, DType dtype, uint64_t seed) {
  const int64_t C = 3;
  Tensor x = leaf_on(dev, {4, 6, 5, 3}, seed, dtype);
  Tensor w = leaf_on(dev, {C}, seed + 1, dtype);
  Tensor b = leaf_on(dev, {C}, seed + 2, dtype);
  const Tensor rm = input_on(dev, {C}, seed + 3, dtype);
  const Tensor rv = orbit::abs(input_on(dev, {C}, seed + 4, dtype)) + 0.5;
  const Tensor y = orbit::batch_norm(x.transpose(1, 3), rm, rv, w, b, /*training=*/false);  // strided [4, 3, 5, 6]
  backward_with(y, dev, seed + 5);
  // Weight wanted, bias defined but not (gbias undefined).
  Tensor x2 = leaf_on(dev, {3, 3, 7}, seed + 6, dtype);
  Tensor w2 = leaf_on(dev, {C}, seed + 7, dtype);
  const Tensor b2 = input_on(dev, {C}, seed + 8, dtype);
  const Tensor y2 = orbit::batch_norm(x2, rm, rv, w2, b2, false);
  backward_with(y2, dev, seed + 9);
  // No affine parameters.
  Tensor x3 = leaf_on(dev, {2, 3, 4, 4}, seed + 10, dtype);
  const Tensor y3 = orbit::batch_norm(x3, rm, rv, Tensor(), Tensor(), false);
  backward_with(y3, dev, seed + 11);
  return {y, x.grad(), w.grad(), b.grad(), y2, x2.grad(), w2.grad(), y3, x3.grad()};
}

ORBIT_KERNEL_CASE(batch_norm_eval_running_stats_float32, kNormTol32) { return batch_norm_eval(dev, DType::F32, 261); }
ORBIT_KERNEL_CASE(batch_norm_eval_running_stats_float64, kNormTol64) { return batch_norm_eval(dev, DType::F64, 281); }

ORBIT_KERNEL_CASE(batch_norm_training_with_weight_only, kNormTol32) {
  // Training with a weight that wants its gradient and a bias that does not.
  Tensor x = leaf_on(dev, {6, 4, 3, 5}, 301);
  Tensor w = leaf_on(dev, {4}, 302);
  const Tensor b = input_on(dev, {4}, 303);
  const Tensor y = orbit::batch_norm(x, Tensor(), Tensor(), w, b, true);
  backward_with(y, dev, 304);
  return {y, x.grad(), w.grad()};
}

}  // namespace
}  // namespace orbit

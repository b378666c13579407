// Cases of tests/kernel_cases.h for the reduction family of the CUDA kernels
// (engine/cuda/kernels/reduce.h): sum / mean / amax / amin over any dims (one-pass and two-pass
// paths, strided inputs, float32 / float64 / int64, NaN, empty reductions), max / min / argmax /
// argmin along a dim, softmax and log-softmax forward and backward, and the losses built on them.
//
// Tolerances: the kernels sum float32 in double like the CPU backend, but the two-pass path (and
// reductions over non-mergeable dims) add in another order, so float32 results agree to an ulp or so
// of the result: 1e-6 of the scale. Selections (max, min, arg*) and int64 sums are exact.
#include <cmath>
#include <limits>

#include "kernel_cases.h"

namespace orbit {
namespace {

using namespace testing;

// Float32 reductions: double accumulation on both sides, summed in another order in the two-pass
// path, then rounded to float32; about 1 ulp of the largest output, so 1e-6 of the scale. The same
// bound holds for softmax and the losses: the CPU's formulas, with a GPU's exp / log a few ulps off
// (on the host the results are bit-identical to the CPU backend's).
constexpr double kReduceTol = 1e-6;
// Float64 sums of up to 1e5 terms added in another order (two-pass, non-mergeable dims): observed
// 1e-14 of the scale; 1e-12 leaves room for the GPU's own exp / log and fused multiply-adds.
constexpr double kReduce64Tol = 1e-12;
// A selection (max / min / argmax) copies an input element: no rounding at all.
constexpr double kExact = 0.0;

// 1 where t is a number, 0 where it is NaN: scaled_error does not see NaN (std::max drops it), so
// the positions of NaN are compared through this mask.
Tensor number_mask(const Tensor& t) { return orbit::eq(t, t); }

// A float32 tensor of small integers (many ties) from a seed.
Tensor ties_on(Device dev, const Shape& shape, uint64_t seed) {
  std::vector<float> v = randn(shape, seed).to_vector<float>();
  for (float& f : v) f = std::round(f * 1.5f);
  return Tensor::from_vector(v, shape).to(dev);
}

// ---------------------------------------------------------------------------- sum / mean

// One-pass path (short blocks) over single dims, contiguous input, with and without keepdim; the
// gradient of sum / mean is an expand, but it checks the case end to end.
ORBIT_KERNEL_CASE(reduce_sum_mean_single_dims, kReduceTol) {
  Tensor x = leaf_on(dev, {6, 7, 8}, 101);
  const Tensor w0 = input_on(dev, {7, 8}, 102), w2 = input_on(dev, {6, 7, 1}, 103);
  (orbit::sum(x, {0}) * w0).sum().backward();
  (orbit::mean(x, {2}, true) * w2).sum().backward();
  return {orbit::sum(x, {0}), orbit::sum(x, {1}), orbit::sum(x, {2}), orbit::sum(x, {-1}, true),
          orbit::mean(x, {0}), orbit::mean(x, {1}, true), orbit::mean(x, {2}), x.grad()};
}

// Several dims (mergeable and not), all dims, keepdim, variance (mean, then sum of squares).
ORBIT_KERNEL_CASE(reduce_sum_mean_several_and_all_dims, kReduceTol) {
  Tensor x = leaf_on(dev, {5, 6, 7, 3}, 111);
  const Tensor w = input_on(dev, {6, 3}, 112);
  (orbit::sum(x, {0, 2}) * w).sum().backward();
  orbit::mean(x).backward();
  return {orbit::sum(x, {0, 2}),      orbit::sum(x, {1, 3}, true), orbit::sum(x, {2, 3}),
          orbit::sum(x, {0, 1, 2, 3}), orbit::sum(x),               orbit::mean(x),
          orbit::mean(x, {0, 3}, true), orbit::var(x, {1, 3}),      orbit::var(x, {0}, false),
          x.grad()};
}

// Strided inputs: transposed, permuted, sliced with a step, expanded (stride 0).
ORBIT_KERNEL_CASE(reduce_strided_inputs, kReduceTol) {
  const Tensor x = input_on(dev, {6, 5, 9}, 121);
  const Tensor xt = x.transpose(0, 2);               // [9, 5, 6]
  const Tensor xp = x.permute({1, 2, 0});            // [5, 9, 6]
  const Tensor xs = x.slice(2, 1, 9, 2);             // [6, 5, 4], last stride 2
  const Tensor xe = input_on(dev, {5, 1}, 122).expand({5, 9});
  Tensor l = leaf_on(dev, {8, 7}, 123);
  (orbit::sum(l.t(), {1}) * input_on(dev, {7}, 124)).sum().backward();
  return {orbit::sum(xt, {0}), orbit::sum(xt, {2}),     orbit::sum(xt, {0, 2}), orbit::sum(xt),
          orbit::sum(xp, {1}), orbit::mean(xp, {0, 2}), orbit::sum(xs, {2}),    orbit::sum(xs, {0, 1}, true),
          orbit::sum(xe, {1}), orbit::sum(xe),          orbit::amax(xt, {0, 2}), orbit::amin(xp, {1}),
          l.grad()};
}

// Long reduced extents with few outputs: the two-pass path, in both item layouts (output-major
// when the reduced dim is the contiguous one, lane-major when the kept dim is), over a
// non-mergeable pair of reduced dims, and on a transposed input.
ORBIT_KERNEL_CASE(reduce_long_extent_two_pass, kReduceTol) {
  Tensor x = leaf_on(dev, {1, 100000}, 131);
  orbit::mean(x).backward();
  const Tensor flat = input_on(dev, {100000}, 132);
  const Tensor tall = input_on(dev, {20000, 6}, 133);   // reduce dim 0: lane-major
  const Tensor wide = input_on(dev, {6, 20000}, 134);   // reduce dim 1: output-major
  const Tensor blocks = input_on(dev, {4, 50, 3, 40}, 135);
  return {orbit::sum(x, {1}),         orbit::sum(x),            orbit::mean(x, {1}, true), orbit::amax(x, {1}),
          orbit::amin(x, {}),          orbit::sum(flat),         orbit::amax(flat, {0}),    orbit::sum(tall, {0}),
          orbit::amin(tall, {0}),     orbit::sum(wide, {1}),    orbit::amax(wide, {1}),    orbit::sum(tall.t(), {1}),
          orbit::sum(blocks, {1, 3}), orbit::mean(blocks, {0, 1, 3}, true),                   x.grad()};
}

// Many outputs with short blocks: one work item per output (and a middle case with a few lanes).
ORBIT_KERNEL_CASE(reduce_many_small_outputs, kReduceTol) {
  const Tensor a = input_on(dev, {40000, 5}, 141);
  const Tensor b = input_on(dev, {200, 300, 3}, 142);
  return {orbit::sum(a, {1}), orbit::amax(a, {1}), orbit::sum(a.t(), {0}), orbit::sum(b, {1}), orbit::amin(b, {1}),
          orbit::mean(b, {2})};
}

ORBIT_KERNEL_CASE(reduce_float64_sums, kReduce64Tol) {
  const Tensor x = input_on(dev, {7, 9, 11}, 151, DType::F64);
  const Tensor y = input_on(dev, {3, 40000}, 152, DType::F64);
  Tensor l = leaf_on(dev, {4, 6}, 153, DType::F64);
  (orbit::mean(l, {1}) * input_on(dev, {4}, 154, DType::F64)).sum().backward();
  return {orbit::sum(x, {1}), orbit::sum(x, {0, 2}), orbit::sum(x.transpose(0, 2), {1}), orbit::sum(y, {1}),
          orbit::sum(y),      orbit::amax(y, {1}),   orbit::mean(y, {0}),                   l.grad()};
}

// int64: exact sums (no rounding), max / min, the two-pass path, an empty sum.
ORBIT_KERNEL_CASE(reduce_int64, kExact) {
  std::vector<int64_t> iv(60), bv(100000);
  for (int64_t k = 0; k < 60; ++k) iv[k] = (k * 37) % 61 - 30;
  for (int64_t k = 0; k < 100000; ++k) bv[k] = (k * 7919) % 100003 - 50000;  // a permutation, shifted
  const Tensor i = Tensor::from_vector(iv, {3, 4, 5}).to(dev);
  const Tensor big = Tensor::from_vector(bv, {100000}).to(dev);
  const Tensor empty = Tensor::zeros({3, 0}, DType::I64, dev);
  return {orbit::sum(i, {1}),   orbit::sum(i, {0, 2}),  orbit::sum(i),         orbit::sum(i.transpose(0, 2), {0}),
          orbit::amax(i, {2}),  orbit::amin(i, {0, 1}), orbit::sum(big),       orbit::amax(big, {0}),
          orbit::amin(big, {0}), orbit::sum(empty, {1}), orbit::argmax(i, 1),  orbit::max(big.reshape({2, 50000}), 1).second};
}

// Empty reduced blocks: Sum gives 0; Max / Min give NaN (the ops reject them, so the backend is
// called directly).
ORBIT_KERNEL_CASE(reduce_empty_blocks, kExact) {
  const Tensor x = Tensor::zeros({3, 0, 2}, DType::F32, dev);
  const std::vector<bool> mask = {false, true, false};
  Tensor mx = Tensor::empty({3, 1, 2}, DType::F32, dev), mn = Tensor::empty({3, 1, 2}, DType::F32, dev);
  backend(dev).reduce(ReduceOp::Max, x, mask, mx);
  backend(dev).reduce(ReduceOp::Min, x, mask, mn);
  return {orbit::sum(x, {1}), orbit::sum(x), number_mask(mx), number_mask(mn)};
}

// ---------------------------------------------------------------------------- max / min

// NaN propagates through amax / amin (one- and two-pass) and is the extreme of max / min (first one).
ORBIT_KERNEL_CASE(reduce_max_min_nan, kExact) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v = randn({4, 6}, 161).to_vector<float>();
  v[1 * 6 + 2] = nan;
  v[1 * 6 + 4] = nan;
  v[3 * 6 + 0] = nan;
  const Tensor x = Tensor::from_vector(v, {4, 6}).to(dev);
  std::vector<float> lv = randn({2, 5000}, 162).to_vector<float>();
  lv[4321] = nan;  // row 0 only
  const Tensor lx = Tensor::from_vector(lv, {2, 5000}).to(dev);
  const auto [mv, mi] = orbit::max(x, 1);
  const auto [nv, ni] = orbit::min(x, 0);
  const Tensor outs[] = {orbit::amax(x, {1}), orbit::amin(x, {0}), orbit::amax(x, {}), orbit::amin(x.t(), {1}),
                         orbit::amax(lx, {1}), orbit::amin(lx, {1}), orbit::amax(lx, {}), mv, nv};
  std::vector<Tensor> res;
  for (const Tensor& t : outs) {
    res.push_back(t);
    res.push_back(number_mask(t));
  }
  res.push_back(mi);
  res.push_back(ni);
  res.push_back(orbit::argmax(lx, 1));
  return res;
}

// Ties: amax / amin share the gradient among tied elements; max / min / argmax / argmin pick the
// first index, along the first, middle and last dim.
ORBIT_KERNEL_CASE(reduce_arg_extremes_with_ties, kExact) {
  Tensor x = ties_on(dev, {5, 8, 6}, 171);
  x.requires_grad_();
  const auto [mv, mi] = orbit::max(x, 1);
  const auto [nv, ni] = orbit::min(x, 2, true);
  const Tensor w = ties_on(dev, {5, 6}, 172);
  (mv * w).sum().backward();
  const Tensor g_max = x.grad();
  x.zero_grad();
  (orbit::amax(x, {1}) * w).sum().backward();
  const Tensor g_amax = x.grad();
  x.zero_grad();
  (orbit::amin(x, {0, 2}) * ties_on(dev, {8}, 173)).sum().backward();
  return {mv, mi, nv, ni, orbit::argmax(x, 0), orbit::argmin(x, 0), orbit::argmax(x, -1, true), orbit::argmin(x, 1),
          orbit::argmax(x.transpose(0, 2), 1), g_max, g_amax, x.grad()};
}

// ---------------------------------------------------------------------------- softmax

// Softmax and log-softmax over dim 1 of [N, C], forward and backward (gradients of both through
// weighted sums), float32 and float64; also logits of large magnitude, where log-softmax must keep
// the digits of log(sum).
ORBIT_KERNEL_CASE(softmax_rows_forward_backward, kReduceTol) {
  Tensor x = leaf_on(dev, {16, 10}, 181);
  const Tensor w1 = input_on(dev, {16, 10}, 182), w2 = input_on(dev, {16, 10}, 183);
  const Tensor y = orbit::softmax(x, 1), lp = orbit::log_softmax(x, 1);
  (y * w1).sum().backward();
  const Tensor g_soft = x.grad();
  x.zero_grad();
  (lp * w2).sum().backward();
  Tensor d = leaf_on(dev, {5, 7}, 184, DType::F64);
  (orbit::log_softmax(d, -1) * input_on(dev, {5, 7}, 185, DType::F64)).sum().backward();
  const Tensor big = input_on(dev, {4, 6}, 186) * 0.5 + 10000.0;  // ulp(1e4) ~ 1e-3 >> log_softmax's digits
  return {y, lp, g_soft, x.grad(), orbit::softmax(d, 1).to(DType::F32), d.grad().to(DType::F32),
          orbit::log_softmax(big, 1), orbit::softmax(big, 1), orbit::softmax(x, 0)};
}

// Over the middle dim of a 3-D tensor (rows of stride inner > 1), forward and backward.
ORBIT_KERNEL_CASE(softmax_middle_dim, kReduceTol) {
  Tensor x = leaf_on(dev, {3, 7, 5}, 191);
  const Tensor w = input_on(dev, {3, 7, 5}, 192);
  const Tensor y = orbit::softmax(x, 1);
  (y * w).sum().backward();
  const Tensor g_soft = x.grad();
  x.zero_grad();
  const Tensor lp = orbit::log_softmax(x, 1);
  (lp * w).sum().backward();
  return {y, lp, g_soft, x.grad(), orbit::softmax(x.transpose(1, 2), 1)};
}

// ---------------------------------------------------------------------------- losses

// Cross entropy (mean, sum, none; class weights; label smoothing; ignore_index; [N, C, d] logits)
// and nll_loss, forward and backward: log-softmax, gather and sums.
ORBIT_KERNEL_CASE(loss_cross_entropy_and_nll, kReduceTol) {
  Tensor logits = leaf_on(dev, {12, 5}, 201);
  const Tensor target = Tensor::from_vector(std::vector<int64_t>{0, 4, 2, 2, 1, 3, -100, 0, 4, 1, 3, 2}, {12}).to(dev);
  const Tensor weight = orbit::abs(input_on(dev, {5}, 202)) + 0.5;
  const Tensor ce_mean = orbit::cross_entropy(logits, target);
  const Tensor ce_w = orbit::cross_entropy(logits, target, weight, Reduction::Sum, 0.1);
  const Tensor ce_none = orbit::cross_entropy(logits, target, Tensor(), Reduction::None);
  (ce_mean + ce_w * 0.3 + (ce_none * input_on(dev, {12}, 203)).sum()).backward();
  Tensor spatial = leaf_on(dev, {3, 4, 6}, 204);
  const Tensor st = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 3, 2, 1, 0, 1, 1, 2, 0, 3, 3, 0, 2, 1, 0},
                                        {3, 6}).to(dev);
  const Tensor ce_sp = orbit::cross_entropy(spatial, st, weight.narrow(0, 0, 4), Reduction::Mean, 0.2);
  ce_sp.backward();
  Tensor lp = leaf_on(dev, {12, 5}, 205);
  const Tensor nll = orbit::nll_loss(orbit::log_softmax(lp, 1), target, weight);
  nll.backward();
  return {ce_mean, ce_w, ce_none, logits.grad(), ce_sp, spatial.grad(), nll, lp.grad()};
}

// The other losses: their mean / sum reductions go through reduce.
ORBIT_KERNEL_CASE(loss_mse_smooth_l1_bce, kReduceTol) {
  Tensor a = leaf_on(dev, {9, 4}, 211);
  const Tensor t = input_on(dev, {9, 4}, 212);
  const Tensor prob = orbit::sigmoid(input_on(dev, {9, 4}, 213));
  const Tensor mse = orbit::mse_loss(a, t);
  const Tensor sl1 = orbit::smooth_l1_loss(a, t, Reduction::Sum, 0.5);
  const Tensor bce = orbit::binary_cross_entropy_with_logits(a, prob, Tensor(), Reduction::Mean,
                                                             orbit::abs(input_on(dev, {4}, 214)) + 0.5);
  (mse + sl1 * 0.1 + bce).backward();
  return {mse, sl1, bce, a.grad()};
}

}  // namespace
}  // namespace orbit

// Kernel cases (tests/kernel_cases.h) for the ops that run on cuBLAS and cuDNN on a GPU — matmul,
// linear, conv2d in all its options — and for the shape ops, dropout, one_hot and the rotations. On
// the host (test_cuda_kernels.cpp) GEMM and convolution stay on the CPU backend, so these cases check
// the elementwise and reduction parts around them; on a GPU (test_cuda.cpp) they check the cuBLAS and
// cuDNN calls: operand order, transposes, leading dimensions, batch strides and broadcast, padding,
// stride, dilation, groups, and the three convolution directions.
#include "kernel_cases.h"

namespace orbit {
namespace {

using namespace testing;

// Float32 products of up to a few hundred terms summed in another order (cuBLAS / cuDNN against the
// CPU's blocked GEMM and im2col): about 1e-6 of the scale; 1e-5 leaves room. Float64: 1e-12.
constexpr double kProductTol = 1e-5;
constexpr double kProductTol64 = 1e-12;

// Outputs, then the gradients of every leaf for a seeded upstream gradient of each output.
struct Recorder {
  Device dev;
  DType dt;
  int seed;
  std::vector<Tensor> leaves, outputs;
  Tensor leaf(const Shape& s) {
    leaves.push_back(leaf_on(dev, s, seed++, dt));
    return leaves.back();
  }
  void out(const Tensor& y) { outputs.push_back(y); }
  std::vector<Tensor> finish() {
    Tensor total;
    for (const Tensor& y : outputs) {
      const Tensor t = sum(y * input_on(dev, y.shape(), seed++, dt));
      total = total.defined() ? total + t : t;
    }
    total.backward();
    std::vector<Tensor> r = outputs;
    for (const Tensor& l : leaves) r.push_back(l.grad().defined() ? l.grad() : Tensor::zeros(l.shape(), dt, dev));
    return r;
  }
};

std::vector<Tensor> matmul_cases(Device dev, DType dt) {
  Recorder r{dev, dt, 300, {}, {}};
  // Plain; transposed operands (views, so the GEMM gets its transpose flags); batched; broadcast of a
  // matrix over a batch; matrix-vector; linear with and without bias on 2-D and 3-D inputs.
  Tensor a = r.leaf({7, 5}), b = r.leaf({5, 3}), at = r.leaf({5, 7}), bt = r.leaf({3, 5});
  Tensor ba = r.leaf({4, 7, 5}), bb = r.leaf({4, 5, 3}), v = r.leaf({5});
  Tensor x = r.leaf({6, 5}), w = r.leaf({4, 5}), bias = r.leaf({4}), x3 = r.leaf({2, 3, 5});
  r.out(matmul(a, b));
  r.out(matmul(at.t(), b));
  r.out(matmul(a, bt.t()));
  r.out(matmul(at.t(), bt.t()));
  r.out(matmul(ba, bb));
  r.out(matmul(ba, b));
  r.out(matmul(a, v));
  r.out(linear(x, w, bias));
  r.out(linear(x3, w));
  // A larger product, so that cuBLAS picks a tiled kernel.
  Tensor big_a = r.leaf({65, 130}), big_b = r.leaf({130, 97});
  r.out(matmul(big_a, big_b));
  return r.finish();
}

ORBIT_KERNEL_CASE(matmul_and_linear, kProductTol) { return matmul_cases(dev, DType::F32); }
ORBIT_KERNEL_CASE(matmul_and_linear_float64, kProductTol64) { return matmul_cases(dev, DType::F64); }

std::vector<Tensor> conv_cases(Device dev, DType dt) {
  Recorder r{dev, dt, 400, {}, {}};
  Tensor x = r.leaf({2, 4, 11, 9});
  // stride 2 with padding (3x3), dilation 2, groups 2, depthwise, 1x1, the 7x7 stride-2 stem,
  // circular padding, and no bias.
  Tensor w3 = r.leaf({6, 4, 3, 3}), b3 = r.leaf({6});
  r.out(conv2d(x, w3, b3, 2, 1));
  Tensor wd = r.leaf({5, 4, 3, 3});
  r.out(conv2d(x, wd, Tensor(), 1, 2, 2));
  Tensor wg = r.leaf({6, 2, 3, 3}), bg = r.leaf({6});
  r.out(conv2d(x, wg, bg, 1, 1, 1, 2));
  Tensor wdw = r.leaf({4, 1, 3, 3});
  r.out(conv2d(x, wdw, Tensor(), 1, 1, 1, 4));
  Tensor w1 = r.leaf({8, 4, 1, 1}), b1 = r.leaf({8});
  r.out(conv2d(x, w1, b1));
  Tensor w7 = r.leaf({3, 4, 7, 7});
  r.out(conv2d(x, w7, Tensor(), 2, 3));
  Tensor wc = r.leaf({3, 4, 3, 3});
  r.out(conv2d(x, wc, Tensor(), 1, 1, 1, 1, ConvPadding::Circular));
  return r.finish();
}

ORBIT_KERNEL_CASE(conv2d_all_options, kProductTol) { return conv_cases(dev, DType::F32); }
ORBIT_KERNEL_CASE(conv2d_all_options_float64, kProductTol64) { return conv_cases(dev, DType::F64); }

// Data movement only: exact.
ORBIT_KERNEL_CASE(shape_ops, 0.0) {
  Recorder r{dev, DType::F32, 500, {}, {}};
  Tensor a = r.leaf({2, 3, 4}), b = r.leaf({2, 5, 4}), c = r.leaf({2, 3, 4});
  r.out(cat({a, b}, 1));
  r.out(stack({a, c}, 2));
  const std::vector<Tensor> parts = split(b, 2, 1);
  r.out(parts[0] * 2.0);
  r.out(parts[2] * 3.0);
  r.out(chunk(a, 2, 2)[1] * 1.5);
  r.out(pad(a, {1, 2, 0, 1}));
  r.out(pad(a, {2, 1}, PadMode::Reflect));
  r.out(pad(a, {1, 1, 1, 1}, PadMode::Replicate));
  r.out(pad(a, {3, 2}, PadMode::Circular));
  r.out(a.permute({2, 0, 1}).contiguous());
  r.out(a.slice(2, 0, 4, 2) * 1.0);
  r.out(a.narrow(1, 1, 2).expand({3, 2, 2, 4}) * 1.0);
  return r.finish();
}

// The mask is drawn on the host from the generator, so both devices drop the same elements: exact.
ORBIT_KERNEL_CASE(dropout_and_one_hot, 0.0) {
  Recorder r{dev, DType::F32, 600, {}, {}};
  Tensor x = r.leaf({5, 7});
  Generator gen(9);
  r.out(dropout(x, 0.3, true, &gen));
  const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 3, 2, 3, 1}, {5}).to(dev);
  std::vector<Tensor> out = r.finish();
  out.push_back(one_hot(labels, 4));
  return out;
}

// rot90 moves data (exact); rotate samples bilinearly (a few roundings per pixel: 1e-5).
ORBIT_KERNEL_CASE(rot90_and_rotate, 1e-5) {
  Recorder r{dev, DType::F32, 700, {}, {}};
  Tensor x = r.leaf({2, 3, 6, 6});
  r.out(rot90(x, 1));
  r.out(rot90(x, 3));
  r.out(rot90(x, 2, {-1, -2}));
  r.out(rotate(x, 30.0));
  r.out(rotate(x, -135.0, true));
  return r.finish();
}

}  // namespace
}  // namespace orbit

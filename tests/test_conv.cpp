// conv2d: the fast CPU kernels (im2col + GEMM, depthwise) against the direct reference convolution,
// hand-computed values, PyTorch fixtures (tests/fixtures/nn_conv.json), finite-difference gradients
// and argument errors.
#include <gtest/gtest.h>

#include <string>

#include "engine/cpu/conv_reference.h"
#include "engine/parallel.h"
#include "tests/test_util.h"

using namespace orbit;
using orbit::testing::all_close;
using orbit::testing::gradcheck;
using orbit::testing::random_input;
using orbit::testing::scaled_error;

namespace {

struct ConvCase {
  const char* name;
  int64_t N, C, H, W, O, kh, kw;
  Conv2dParams p;
};

Conv2dParams params(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  Conv2dParams p;
  p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
  p.dilation_h = dh, p.dilation_w = dw, p.groups = groups;
  return p;
}

// Configurations that exercise every path of the fast kernels: im2col edges (odd sizes, strides,
// dilation, padding larger than half the kernel), groups, depthwise (direct loop), the 1x1 stride-1
// path without im2col, non-square kernels, batch sizes that do and do not split evenly over
// threads (N = 1, 3, 5; the split needs at least 1M multiply-adds), several small images per GEMM
// (N >= 4: two or more images per thread with outputs far below the 512-column target), and large
// images whose column matrix exceeds the 1M element budget and is built in bands of output rows,
// and outputs as wide as the inputs at stride 1 (a plane-at-a-time im2col and col2im).
const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
      {"basic3x3", 2, 3, 7, 9, 4, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},
      {"single_image", 1, 3, 8, 8, 5, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},
      {"odd_batch", 3, 16, 12, 11, 32, 3, 3, params(1, 1, 0, 0, 1, 1, 1)},
      {"stride2", 2, 3, 9, 10, 4, 3, 3, params(2, 2, 1, 1, 1, 1, 1)},
      {"stride3", 2, 2, 11, 10, 3, 3, 3, params(3, 3, 1, 1, 1, 1, 1)},
      {"dilation2", 2, 3, 10, 9, 4, 3, 3, params(1, 1, 2, 2, 2, 2, 1)},
      {"dilation2_stride2", 3, 2, 11, 12, 3, 3, 3, params(2, 2, 1, 0, 2, 2, 1)},
      {"pad_over_half", 2, 2, 5, 6, 3, 3, 3, params(1, 1, 3, 2, 1, 1, 1)},
      {"pad_1x1", 2, 3, 4, 5, 2, 1, 1, params(1, 1, 1, 2, 1, 1, 1)},
      {"groups2", 2, 4, 7, 7, 6, 3, 3, params(1, 1, 1, 1, 1, 1, 2)},
      {"groups3_stride2", 2, 6, 8, 9, 3, 3, 3, params(2, 2, 1, 1, 1, 1, 3)},
      {"depthwise", 2, 5, 8, 9, 5, 3, 3, params(1, 1, 1, 1, 1, 1, 5)},
      {"depthwise_mult3", 3, 2, 7, 8, 6, 3, 3, params(1, 1, 1, 1, 1, 1, 2)},
      {"depthwise_s2_d2", 2, 4, 11, 10, 4, 3, 3, params(2, 2, 2, 2, 2, 2, 4)},
      {"depthwise_5x5_s3", 1, 3, 12, 11, 3, 5, 5, params(3, 3, 2, 2, 1, 1, 3)},
      {"pointwise", 2, 6, 7, 5, 4, 1, 1, params(1, 1, 0, 0, 1, 1, 1)},
      {"pointwise_groups2", 3, 4, 5, 6, 6, 1, 1, params(1, 1, 0, 0, 1, 1, 2)},
      {"pointwise_single_image", 1, 6, 7, 5, 4, 1, 1, params(1, 1, 0, 0, 1, 1, 1)},
      {"pointwise_split", 2, 32, 24, 24, 32, 1, 1, params(1, 1, 0, 0, 1, 1, 1)},
      {"pointwise_stride2", 2, 5, 9, 8, 3, 1, 1, params(2, 2, 0, 0, 1, 1, 1)},
      {"nonsquare", 2, 3, 9, 11, 4, 2, 5, params(1, 2, 1, 2, 1, 1, 1)},
      {"nonsquare_dilation", 2, 2, 10, 9, 3, 3, 2, params(2, 1, 0, 1, 1, 3, 1)},
      {"kernel_fills_input", 2, 3, 5, 4, 2, 5, 4, params(1, 1, 0, 0, 1, 1, 1)},
      {"stem7x7_s2", 2, 3, 15, 14, 4, 7, 7, params(2, 2, 3, 3, 1, 1, 1)},
      {"wide_channels", 2, 40, 9, 9, 24, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},
      {"depthwise_large", 4, 32, 20, 20, 64, 3, 3, params(1, 1, 1, 1, 1, 1, 32)},
      {"multi_image_blocks", 5, 16, 10, 11, 32, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},
      {"multi_image_groups_s2", 6, 32, 11, 10, 64, 3, 3, params(2, 2, 1, 1, 1, 1, 2)},
      {"multi_image_pointwise", 5, 64, 6, 7, 96, 1, 1, params(1, 1, 0, 0, 1, 1, 1)},
      {"row_bands", 2, 16, 90, 90, 3, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},
      {"row_bands_s2_d2", 1, 8, 151, 150, 2, 5, 5, params(2, 2, 3, 2, 2, 1, 1)},
      // Stride 1 with outputs as wide as the inputs: im2col and col2im copy whole planes (their
      // contiguous path). A 5x5 kernel (two wrapped columns per edge), rows entirely in the padding
      // (pad_h 3 > kh / 2, taller outputs than inputs), a one-pixel-wide input (no column inside),
      // and 28x28 images several to a block, as in the study's model.
      {"same_width_5x5", 2, 3, 7, 6, 4, 5, 5, params(1, 1, 2, 2, 1, 1, 1)},
      {"same_width_tall_padding", 3, 4, 9, 8, 5, 5, 3, params(1, 1, 3, 1, 1, 1, 1)},
      {"same_width_one_column", 2, 3, 5, 1, 4, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},
      {"same_width_28x28_blocks", 6, 16, 28, 28, 16, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},
      // Strided convolutions through phase planes (im2col and col2im deinterleave each input plane
      // by stride phase). The study's 3x3 stride-2 convolutions on 28x28 and on 7x7 images (phases
      // of 4 and 3 columns for 4 outputs), a stride of (1, 2), and 3x3 stride 2 without padding,
      // whose last tap reads past the kept row and takes the row-by-row gather instead. stride2,
      // stride3, stem7x7_s2, groups3_stride2, multi_image_groups_s2, pointwise_stride2 (one phase
      // of four read) and row_bands_s2_d2 (bands of rows; one row phase read) take phase planes too.
      {"phases_28x28_s2_blocks", 6, 16, 28, 28, 32, 3, 3, params(2, 2, 1, 1, 1, 1, 1)},
      {"phases_7x7_s2", 4, 8, 7, 7, 16, 3, 3, params(2, 2, 1, 1, 1, 1, 1)},
      {"phases_stride_1x2", 2, 3, 8, 12, 4, 3, 3, params(1, 2, 1, 1, 1, 1, 1)},
      {"strided_no_padding", 3, 4, 9, 9, 5, 3, 3, params(2, 2, 0, 0, 1, 1, 1)},
  };
  return cases;
}

// The fast kernels, through the op and autograd, against the reference: y, dL/dx, dL/dw for
// L = sum(y * gy).
void check_against_reference(const ConvCase& c, DType dtype, double tol) {
  SCOPED_TRACE(std::string(c.name) + " " + dtype_name(dtype));
  Generator gen(11);
  Tensor x = Tensor::randn({c.N, c.C, c.H, c.W}, &gen, dtype).requires_grad_();
  Tensor w = Tensor::randn({c.O, c.C / c.p.groups, c.kh, c.kw}, &gen, dtype).requires_grad_();
  Tensor y = conv2d(x, w, Tensor(), c.p);
  const Tensor y_ref = cpu::conv2d_reference(x.detach(), w.detach(), c.p);
  ASSERT_EQ(y.shape(), y_ref.shape());
  EXPECT_LE(scaled_error(y, y_ref), tol) << "forward";
  Tensor gy = Tensor::randn(y.shape(), &gen, dtype);
  auto g = grad({y}, {x, w}, {gy});
  EXPECT_LE(scaled_error(g[0], cpu::conv2d_reference_backward_input(gy, w.detach(), x.shape(), c.p)), tol)
      << "backward input";
  EXPECT_LE(scaled_error(g[1], cpu::conv2d_reference_backward_weight(x.detach(), gy, w.shape(), c.p)), tol)
      << "backward weight";
}

}  // namespace

// float64: the kernels and the reference sum the same terms in different orders, so they agree to
// rounding (1e-12 of the scale). float32: sums of up to a few hundred terms, 1e-5 of the scale.
TEST(Conv2d, FastKernelsMatchReferenceFloat64) {
  for (const auto& c : conv_cases()) check_against_reference(c, DType::F64, 1e-12);
}

TEST(Conv2d, FastKernelsMatchReferenceFloat32) {
  for (const auto& c : conv_cases()) check_against_reference(c, DType::F32, 1e-5);
}

// One thread takes the other branch of the image split (one image at a time); the results must
// not depend on it beyond rounding.
TEST(Conv2d, SingleThreadMatchesReference) {
  const int saved = num_threads();
  set_num_threads(1);
  for (const auto& c : conv_cases()) check_against_reference(c, DType::F64, 1e-12);
  set_num_threads(saved);
}

// The reference itself, on a case small enough to compute by hand: a 2x2 kernel of ones sums each
// 2x2 window; with padding 1 the corner windows see a single element.
TEST(Conv2d, HandComputedValues) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = Tensor::ones({1, 1, 2, 2}, DType::F64);
  Tensor b = Tensor::from_vector(std::vector<double>{0.5}, {1});
  EXPECT_TRUE(all_close(conv2d(x, w, b),
                        Tensor::from_vector(std::vector<double>{12.5, 16.5, 24.5, 28.5}, {1, 1, 2, 2}), 0));
  Tensor y = conv2d(x, w, Tensor(), /*stride=*/2, /*padding=*/1);
  EXPECT_TRUE(all_close(y, Tensor::from_vector(std::vector<double>{1, 5, 11, 28}, {1, 1, 2, 2}), 0));
  // Reference convolution agrees on the same case.
  EXPECT_TRUE(all_close(cpu::conv2d_reference(x, w, params(2, 2, 1, 1, 1, 1, 1)), y, 0));
  // Circular padding wraps around: with a 3x3 kernel of ones every output is the sum of all inputs.
  Tensor w3 = Tensor::ones({1, 1, 3, 3}, DType::F64);
  EXPECT_TRUE(all_close(conv2d(x, w3, Tensor(), 1, 1, 1, 1, ConvPadding::Circular),
                        Tensor::full({1, 1, 3, 3}, 45.0, DType::F64), 1e-15));
}

// Finite differences (float64) through the whole op, bias and circular padding included.
TEST(Conv2d, GradCheck) {
  struct G {
    Conv2dParams p;
    bool bias;
    ConvPadding mode;
    int64_t C, O;
  };
  const std::vector<G> cases = {
      {params(1, 1, 1, 1, 1, 1, 1), true, ConvPadding::Zeros, 2, 3},
      {params(2, 2, 2, 1, 2, 1, 1), true, ConvPadding::Zeros, 2, 2},
      {params(1, 2, 1, 1, 1, 1, 2), false, ConvPadding::Zeros, 4, 2},
      {params(1, 1, 1, 1, 1, 1, 3), true, ConvPadding::Zeros, 3, 6},  // depthwise, multiplier 2
      {params(1, 1, 1, 2, 1, 1, 1), true, ConvPadding::Circular, 2, 2},
      {params(2, 1, 2, 2, 2, 1, 2), false, ConvPadding::Circular, 2, 4},
  };
  uint64_t seed = 100;
  for (const auto& c : cases) {
    Tensor x = random_input({2, c.C, 5, 6}, seed++);
    Tensor w = random_input({c.O, c.C / c.p.groups, 3, 3}, seed++);
    std::vector<Tensor> in = {x, w};
    if (c.bias) in.push_back(random_input({c.O}, seed++));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& t) {
          return conv2d(t[0], t[1], t.size() > 2 ? t[2] : Tensor(), c.p, c.mode);
        },
        in));
  }
  // The int overload with a 1x1 kernel (the path without im2col).
  Tensor x = random_input({2, 3, 4, 4}, seed++), w = random_input({2, 3, 1, 1}, seed++);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return conv2d(t[0], t[1]); }, {x, w}));
}

// Only the inputs that require a gradient get one; the bias gradient is the sum of gy over N, H, W.
TEST(Conv2d, GradientsOnlyWhereRequired) {
  Tensor x = Tensor::ones({2, 2, 4, 4}, DType::F64);  // no grad: the stem of a network
  Tensor w = random_input({3, 2, 3, 3}, 7);
  Tensor b = random_input({3}, 8);
  Tensor y = conv2d(x, w, b, 1, 1);
  Tensor gy = Tensor::ones(y.shape(), DType::F64);
  auto g = grad({y}, {w, b}, {gy});
  EXPECT_TRUE(all_close(g[1], Tensor::full({3}, 2.0 * 16.0, DType::F64), 1e-12));
  EXPECT_FALSE(x.grad().defined());
}

TEST(Conv2d, MatchesPyTorch) {
  const auto fx = orbit::testing::load_fixture("nn_conv");
  const auto cases = orbit::testing::fixture_cases(fx);
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    const std::string n = c["name"];
    SCOPED_TRACE(n);
    Conv2dParams p;
    p.stride_h = c["stride"][0], p.stride_w = c["stride"][1];
    p.pad_h = c["padding"][0], p.pad_w = c["padding"][1];
    p.dilation_h = c["dilation"][0], p.dilation_w = c["dilation"][1];
    p.groups = c["groups"];
    const bool has_bias = c["bias"];
    const ConvPadding mode = c["padding_mode"] == "circular" ? ConvPadding::Circular : ConvPadding::Zeros;
    Tensor x = fx.at(n + ".x").clone().requires_grad_();
    Tensor w = fx.at(n + ".w").clone().requires_grad_();
    Tensor b = has_bias ? fx.at(n + ".b").clone().requires_grad_() : Tensor();
    Tensor y = conv2d(x, w, b, p, mode);
    // float32 against PyTorch's float32: both round sums of at most ~150 products, 1e-4 of the
    // scale leaves ample room.
    EXPECT_LE(scaled_error(y, fx.at(n + ".y")), 1e-4);
    std::vector<Tensor> inputs = {x, w};
    if (has_bias) inputs.push_back(b);
    auto g = grad({y}, inputs, {fx.at(n + ".gy")});
    EXPECT_LE(scaled_error(g[0], fx.at(n + ".gx")), 1e-4) << "gx";
    EXPECT_LE(scaled_error(g[1], fx.at(n + ".gw")), 1e-4) << "gw";
    if (has_bias) EXPECT_LE(scaled_error(g[2], fx.at(n + ".gb")), 1e-4) << "gb";
  }
}

namespace {
// Expects conv2d to throw an orbit::Error whose message names conv2d and contains `fragment`.
void expect_conv_error(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv2d"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}
}  // namespace

TEST(Conv2d, Errors) {
  Tensor x = Tensor::zeros({2, 4, 6, 6});
  Tensor w = Tensor::zeros({6, 4, 3, 3});
  expect_conv_error([&] { conv2d(Tensor::zeros({4, 6, 6}), w); }, "[4, 6, 6]");
  expect_conv_error([&] { conv2d(x, Tensor::zeros({6, 4, 3})); }, "[6, 4, 3]");
  expect_conv_error([&] { conv2d(x, Tensor::zeros({6, 3, 3, 3})); }, "expects 3");
  expect_conv_error([&] { conv2d(x, Tensor::zeros({5, 2, 3, 3}), Tensor(), 1, 0, 1, 2); }, "not divisible");
  expect_conv_error([&] { conv2d(x, Tensor::zeros({6, 4, 7, 7})); }, "larger than the padded input");
  expect_conv_error([&] { conv2d(x, w, Tensor(), 1, 0, 3); }, "larger than the padded input");
  expect_conv_error([&] { conv2d(x, w, Tensor::zeros({5})); }, "bias must be [6]");
  expect_conv_error([&] { conv2d(x, w, Tensor(), 0); }, "stride");
  expect_conv_error([&] { conv2d(x, w, Tensor(), 1, 0, 0); }, "dilation");
  expect_conv_error([&] { conv2d(x, w, Tensor(), 1, -1); }, "padding");
  expect_conv_error([&] { conv2d(x, w, Tensor(), 1, 0, 1, 0); }, "groups");
  expect_conv_error([&] { conv2d(x, w.to(DType::F64)); }, "dtype");
  expect_conv_error([&] { conv2d(x, w, Tensor::zeros({6}, DType::F64)); }, "dtype");
  expect_conv_error([&] { conv2d(x, w, Tensor(), 1, 7, 1, 1, ConvPadding::Circular); }, "circular");
}

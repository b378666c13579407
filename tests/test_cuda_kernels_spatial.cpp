// Cases for the CUDA backend's indexing and spatial kernels (engine/cuda/kernels/index.h and spatial.h):
// gather / scatter_add / index_select / index_add, flip / roll, grid_sample forward and backward, and
// the group actions built from them (groups/action.h). Each case runs through the engine's
// differentiable ops, forward and backward, and is compared with the CPU backend by
// test_cuda_kernels.cpp (emulated on the host) and by the GPU tests where a GPU is present.
//
// Backward passes take an explicit upstream gradient (y.backward(g)) rather than a loss reduced with
// sum(), so that they test these kernels and nothing else.
//
// The ops hand the kernels contiguous operands; the kernels also accept strided ones (as the CPU
// backend does for gather's x, scatter_add's out and flip / roll's x), which the last tests here check
// by calling the kernels directly.
#include <cmath>

#include "emulated_cuda_backend.h"
#include "groups/action.h"
#include "groups/group.h"
#include "kernel_cases.h"

namespace orbit {
namespace {

using namespace testing;

// Pure copies (gather, index_select, flip, roll, rot90 and reflections) and their adjoints where no two
// source elements meet: every value is moved, never computed, so the results are bit-identical.
constexpr double kExact = 0.0;
// Accumulations where repeated indices meet (scatter_add, index_add, the backward of gather and
// index_select): float32 sums of up to 20 standard-normal terms per element, added in an unspecified
// order by the GPU's atomics; any order is within 20 * 2^-24 (1.2e-6) of the largest partial sum,
// which may exceed the final values, so 1e-5 (an indexing error is of order 1).
constexpr double kAccumulateTol = 1e-5;
// Bilinear / nearest sampling in float32: a few roundings per sample, plus on the GPU fused
// multiply-adds in the unnormalization and the corner sums and atomic adds in any order for gx,
// which move results by a few ulps of the largest partial sum.
constexpr double kSampleTol = 1e-5;

// Deterministic int64 indices in [0, hi) of the given shape (with repeats whenever the shape has more
// entries along a dim than hi).
Tensor random_index(Device dev, const Shape& shape, int64_t hi, uint64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(shape)));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& e : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    e = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(hi));
  }
  return Tensor::from_vector(v, shape, dev);
}

Tensor index_of(Device dev, const std::vector<int64_t>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, dev);
}

// y.backward(g) with a seeded standard-normal upstream gradient g.
void backward_with(const Tensor& y, Device dev, uint64_t seed) { y.backward(input_on(dev, y.shape(), seed)); }

// ================================================================================ gather / scatter_add

ORBIT_KERNEL_CASE(gather_along_dims_0_1_and_last, kAccumulateTol) {
  std::vector<Tensor> out;
  // index larger than x along dim (so values repeat) and smaller than x in the other dims.
  const std::vector<std::pair<int64_t, Shape>> plans = {{0, {7, 3, 6}}, {1, {4, 9, 5}}, {-1, {2, 5, 11}}};
  uint64_t seed = 100;
  for (const auto& [dim, ishape] : plans) {
    Tensor x = leaf_on(dev, {4, 5, 6}, seed++);
    const int64_t d = dim < 0 ? dim + 3 : dim;
    const Tensor idx = random_index(dev, ishape, x.shape()[d], seed++);
    const Tensor y = gather(x, dim, idx);
    backward_with(y, dev, seed++);  // the backward is a scatter_add into zeros, with repeats
    out.push_back(y);
    out.push_back(x.grad());
  }
  // A strided input (the op makes it contiguous; its backward goes through the transposed view).
  Tensor x = leaf_on(dev, {6, 5, 4}, seed++);
  const Tensor y = gather(x.transpose(0, 2), 1, random_index(dev, {4, 8, 6}, 5, seed++));
  backward_with(y, dev, seed++);
  out.push_back(y);
  out.push_back(x.grad());
  // Int64 and float64 values.
  const Tensor xi = Tensor::arange(60, DType::I64, dev).reshape({3, 4, 5});
  out.push_back(gather(xi, 2, random_index(dev, {3, 4, 7}, 5, seed++)));
  const Tensor xd = input_on(dev, {3, 4, 5}, seed++, DType::F64);
  out.push_back(gather(xd, 0, random_index(dev, {6, 4, 5}, 3, seed++)));
  return out;
}

ORBIT_KERNEL_CASE(scatter_add_along_dims_0_1_and_last_with_repeats, kAccumulateTol) {
  std::vector<Tensor> out;
  // index: more entries along dim than x has (repeats), at most x's size elsewhere; src larger than
  // the index in every dim (only its leading index-shaped block is used).
  struct Plan {
    int64_t dim;
    Shape index, src;
  };
  const std::vector<Plan> plans = {{0, {8, 3, 5}, {9, 4, 6}}, {1, {5, 10, 4}, {5, 11, 6}}, {-1, {4, 3, 13}, {5, 4, 13}}};
  uint64_t seed = 200;
  for (const Plan& p : plans) {
    Tensor x = leaf_on(dev, {5, 4, 6}, seed++);
    Tensor src = leaf_on(dev, p.src, seed++);
    const int64_t d = p.dim < 0 ? p.dim + 3 : p.dim;
    const Tensor idx = random_index(dev, p.index, x.shape()[d], seed++);
    const Tensor y = scatter_add(x, p.dim, idx, src);
    backward_with(y, dev, seed++);  // gathers the gradient back for src
    out.push_back(y);
    out.push_back(x.grad());
    out.push_back(src.grad());
  }
  // Many repeats into few slots: 40 values into 2 positions per column.
  Tensor x = leaf_on(dev, {2, 3}, seed++);
  Tensor src = leaf_on(dev, {40, 3}, seed++);
  const Tensor y = scatter_add(x, 0, random_index(dev, {40, 3}, 2, seed++), src);
  backward_with(y, dev, seed++);
  out.push_back(y);
  out.push_back(src.grad());
  // Int64 (atomic integer adds on the GPU) and float64.
  const Tensor xi = Tensor::arange(12, DType::I64, dev).reshape({3, 4});
  const Tensor si = Tensor::arange(36, DType::I64, dev).reshape({9, 4});
  out.push_back(scatter_add(xi, 0, random_index(dev, {9, 4}, 3, seed++), si));
  const Tensor xd = input_on(dev, {3, 4}, seed++, DType::F64);
  const Tensor sd = input_on(dev, {3, 10}, seed++, DType::F64);
  out.push_back(scatter_add(xd, 1, random_index(dev, {3, 10}, 4, seed++), sd));
  return out;
}

// ================================================================================ index_select / index_add

ORBIT_KERNEL_CASE(index_select_and_index_add_with_repeated_indices, kAccumulateTol) {
  std::vector<Tensor> out;
  uint64_t seed = 300;
  const std::vector<std::pair<int64_t, std::vector<int64_t>>> plans = {
      {0, {2, 0, 2, 4, 4, 4, 1}},         // x dim 0 has 5
      {1, {5, 5, 0, 3, 5, 1, 1, 2, 5}},   // x dim 1 has 6
      {-1, {6, 0, 6, 6, 3}},              // x dim 2 has 7
      {2, {3}}};                          // a single index (the dim drops out of the kernel's loop)
  for (const auto& [dim, v] : plans) {
    Tensor x = leaf_on(dev, {5, 6, 7}, seed++);
    const Tensor y = index_select(x, dim, index_of(dev, v));
    backward_with(y, dev, seed++);  // index_add into zeros, with repeats
    out.push_back(y);
    out.push_back(x.grad());
  }
  // A strided input and a 1-D input.
  Tensor x = leaf_on(dev, {7, 6, 5}, seed++);
  const Tensor y = index_select(x.transpose(0, 2), 1, index_of(dev, {0, 5, 5, 2, 0}));
  backward_with(y, dev, seed++);
  out.push_back(y);
  out.push_back(x.grad());
  Tensor v1 = leaf_on(dev, {9}, seed++);
  const Tensor y1 = index_select(v1, 0, random_index(dev, {30}, 9, seed++));
  backward_with(y1, dev, seed++);
  out.push_back(y1);
  out.push_back(v1.grad());
  // Int64 and float64.
  out.push_back(index_select(Tensor::arange(24, DType::I64, dev).reshape({4, 6}), 1, index_of(dev, {5, 0, 5, 3})));
  out.push_back(index_select(input_on(dev, {4, 6}, seed++, DType::F64), 0, index_of(dev, {3, 3, 1})));
  return out;
}

// ================================================================================ flip / roll

ORBIT_KERNEL_CASE(flip_over_one_and_several_dims_of_a_strided_input, kExact) {
  std::vector<Tensor> out;
  uint64_t seed = 400;
  const std::vector<std::vector<int64_t>> dims_list = {{-1}, {0}, {1, 2}, {0, 3}, {0, 1, 2, 3}, {2, -1}, {}};
  for (const auto& dims : dims_list) {
    Tensor x = leaf_on(dev, {3, 5, 4, 6}, seed++);
    const Tensor xs = x.permute({0, 2, 1, 3});  // a strided [3, 4, 5, 6] view
    const Tensor y = flip(xs, dims);
    backward_with(y, dev, seed++);
    out.push_back(y);
    out.push_back(x.grad());
  }
  // A size-1 dim, int64, float64 and a 1-D input.
  out.push_back(flip(input_on(dev, {4, 1, 5}, seed++), {0, 1, 2}));
  out.push_back(flip(Tensor::arange(24, DType::I64, dev).reshape({2, 3, 4}), {0, 2}));
  out.push_back(flip(input_on(dev, {3, 7}, seed++, DType::F64), {1}));
  out.push_back(flip(input_on(dev, {11}, seed++), {0}));
  return out;
}

ORBIT_KERNEL_CASE(roll_with_negative_and_oversized_shifts_over_several_dims, kExact) {
  std::vector<Tensor> out;
  uint64_t seed = 500;
  struct Plan {
    std::vector<int64_t> shifts, dims;
  };
  const std::vector<Plan> plans = {
      {{-3}, {0}},                // negative
      {{13}, {-1}},               // larger than the size (6)
      {{-3, 13}, {0, 2}},         // several dims
      {{7, -11, 2}, {0, 1, 2}},   // every dim, both signs, beyond the sizes
      {{2, -5}, {1, 1}},          // one dim twice: the shifts add up
      {{-23}, {}},                // no dims: the flattened tensor
      {{0, 10}, {1, 2}},          // shifts that are multiples of the size (the identity)
  };
  for (const Plan& p : plans) {
    Tensor x = leaf_on(dev, {4, 5, 6}, seed++);
    const Tensor y = roll(x, p.shifts, p.dims);
    backward_with(y, dev, seed++);  // a roll by the negated shifts
    out.push_back(y);
    out.push_back(x.grad());
  }
  // A strided input, int64 and float64.
  out.push_back(roll(input_on(dev, {6, 5}, seed++).t(), {-7, 4}, {0, 1}));
  out.push_back(roll(Tensor::arange(30, DType::I64, dev).reshape({5, 6}), {3, -8}, {0, 1}));
  out.push_back(roll(input_on(dev, {3, 4, 5}, seed++, DType::F64), {-1, 9}, {2, 0}));
  return out;
}

// ================================================================================ grid_sample

// A grid [N, Ho, Wo, 2] that reaches well outside [-1, 1] (scaled standard normals), with a few exact
// values: the corners -1 and 1 (border pixel centres or edges), 0, points just outside, and huge
// coordinates that padding clamps / reflects or that the zeros padding drops.
Tensor test_grid(Device dev, const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  std::vector<double> v = mul(randn(shape, seed, DType::F64), 1.6).to_vector<double>();
  const std::vector<double> special = {-1.0, 1.0, 0.0, 1.0, -1.0, -1.0, 1.0000001, -1.05, 2.5, -3.0, 1e6, -1e6, 0.5, 1e10};
  for (size_t k = 0; k < special.size() && 3 * k < v.size(); ++k) v[3 * k] = special[k];
  return Tensor::from_vector(v, shape, dev).to(dtype);
}

std::vector<Tensor> grid_sample_all_settings(Device dev, DType dtype, uint64_t seed) {
  std::vector<Tensor> out;
  for (GridMode mode : {GridMode::Bilinear, GridMode::Nearest})
    for (GridPadding padding : {GridPadding::Zeros, GridPadding::Border, GridPadding::Reflection})
      for (bool align_corners : {false, true}) {
        // H != W, so that swapping the axes cannot go unnoticed; more output pixels than input pixels
        // in the second item's batch, so that gx collects several contributions per pixel.
        Tensor x = leaf_on(dev, {2, 3, 5, 7}, seed++, dtype);
        Tensor grid = test_grid(dev, {2, 6, 8, 2}, seed++, dtype);
        grid.requires_grad_();
        const Tensor y = grid_sample(x, grid, mode, padding, align_corners);
        y.backward(input_on(dev, y.shape(), seed++, dtype));
        out.push_back(y);
        out.push_back(x.grad());
        out.push_back(grid.grad());  // zeros for nearest sampling
      }
  return out;
}

ORBIT_KERNEL_CASE(grid_sample_modes_paddings_and_align_corners, kSampleTol) {
  return grid_sample_all_settings(dev, DType::F32, 600);
}

// Float64: the same arithmetic, to ~1e-16 per operation.
ORBIT_KERNEL_CASE(grid_sample_float64, 1e-12) { return grid_sample_all_settings(dev, DType::F64, 700); }

ORBIT_KERNEL_CASE(grid_sample_input_gradient_only_and_single_pixel_images, kSampleTol) {
  std::vector<Tensor> out;
  uint64_t seed = 800;
  // Without a grid gradient (ggrid undefined in the kernel), an affine grid, and a 1x1 image (whose
  // reflection is degenerate: every coordinate reflects to 0).
  for (const Shape& xshape : {Shape{2, 4, 6, 6}, Shape{2, 2, 1, 1}, Shape{2, 1, 1, 5}})
    for (GridPadding padding : {GridPadding::Zeros, GridPadding::Border, GridPadding::Reflection})
      for (bool align_corners : {false, true}) {
        Tensor x = leaf_on(dev, xshape, seed++);
        const std::vector<double> t = {0.8, -0.7, 0.3, 0.6, 0.9, -0.2, 1.3, 0.1, -0.4, -0.2, 1.1, 0.5};
        const Tensor theta = Tensor::from_vector(t, {2, 2, 3}).to(DType::F32).to(dev);
        const Tensor grid = affine_grid(theta, 2, 5, 4, align_corners);
        const Tensor y = grid_sample(x, grid, GridMode::Bilinear, padding, align_corners);
        backward_with(y, dev, seed++);
        out.push_back(y);
        out.push_back(x.grad());
      }
  return out;
}

// ================================================================================ group actions

// The image action of every non-identity element of G on a batch [N, C, H, W], forward and backward.
std::vector<Tensor> act_on_images(Device dev, const groups::Group& G, uint64_t seed) {
  std::vector<Tensor> out;
  for (int64_t g = 1; g < G.order(); ++g) {
    Tensor x = leaf_on(dev, {2, 3, 8, 8}, seed++);
    const Tensor y = groups::act(G, g, x, groups::FieldKind::Scalar);
    backward_with(y, dev, seed++);
    out.push_back(y);
    out.push_back(x.grad());
  }
  return out;
}

// Quarter turns are flips and transposes: exact.
ORBIT_KERNEL_CASE(group_c4_rotations_of_an_image_batch, kExact) {
  return act_on_images(dev, groups::Group::parse("C4"), 900);
}

// Reflections and quarter turns: exact.
ORBIT_KERNEL_CASE(group_d4_reflections_of_an_image_batch, kExact) {
  return act_on_images(dev, groups::Group::parse("D4"), 1000);
}

// Turns by 45 degrees are bilinear grid sampling (grid from affine_grid's matmul: cuBLAS on a GPU).
ORBIT_KERNEL_CASE(group_c8_rotations_of_an_image_batch, kSampleTol) {
  return act_on_images(dev, groups::Group::parse("C8"), 1100);
}

// Cyclic translations are rolls: exact.
ORBIT_KERNEL_CASE(group_t4xd4_translations_of_an_image_batch, kExact) {
  const groups::Group G = groups::Group::parse("T4xD4");
  std::vector<Tensor> out;
  uint64_t seed = 1200;
  for (int64_t g : {int64_t(1), int64_t(9), int64_t(8 * 5 + 3), G.order() - 1}) {
    Tensor x = leaf_on(dev, {2, 3, 8, 8}, seed++);
    const Tensor y = groups::act(G, g, x, groups::FieldKind::Scalar);
    backward_with(y, dev, seed++);
    out.push_back(y);
    out.push_back(x.grad());
  }
  return out;
}

// A different element per image (index_select into groups of rows and back): exact, no index repeats.
ORBIT_KERNEL_CASE(group_d4_per_sample_actions, kExact) {
  const groups::Group G = groups::Group::parse("D4");
  Tensor x = leaf_on(dev, {6, 2, 5, 5}, 1300);
  const Tensor y = groups::act_per_sample(G, {3, 0, 5, 3, 7, 1}, x, groups::FieldKind::Scalar);
  backward_with(y, dev, 1301);
  return {y, x.grad()};
}

// ================================================================================ strided operands

// The kernels called directly with strided operands, which the ops never pass (they make inputs
// contiguous) but the backend interface allows: gather's x, scatter_add's out, flip's and roll's x.
// Compared bit for bit with the CPU backend on the same operands.
void expect_same(const Tensor& got, const Tensor& ref, const char* what) {
  EXPECT_EQ(got.shape(), ref.shape()) << what;
  EXPECT_EQ(got.to_vector<double>(), ref.to_vector<double>()) << what;
}

TEST(CudaKernelsOnHost, StridedOperandsMatchTheCpuBackend) {
  cpu::CpuBackend cpu;
  const cuda::kernels::HostExec ex;
  const Device dev = Device::cpu();
  const Tensor x = randn({6, 5, 4}, 1).transpose(0, 2);  // strided [4, 5, 6]
  ASSERT_FALSE(x.is_contiguous());
  for (int64_t dim : {0, 1, 2}) {
    Shape ishape = {3, 4, 5};
    ishape[dim] = 9;
    const Tensor idx = random_index(dev, ishape, x.shape()[dim], 10 + dim);
    Tensor a = Tensor::empty(ishape), b = Tensor::empty(ishape);
    cpu.gather(x, dim, idx, a);
    cuda::kernels::gather(ex, x, dim, idx, b);
    expect_same(b, a, "gather of a strided x");

    const Tensor src = randn(ishape, 20 + dim);
    Tensor oa = randn({6, 5, 4}, 30 + dim), ob = oa.clone();
    const Tensor va = oa.transpose(0, 2), vb = ob.transpose(0, 2);  // strided [4, 5, 6] outputs
    cpu.scatter_add(src, dim, idx, va);
    cuda::kernels::scatter_add(ex, src, dim, idx, vb);
    expect_same(ob, oa, "scatter_add into a strided out");
  }
  const std::vector<std::vector<int64_t>> flips = {{0}, {1, 2}, {0, 2}, {0, 1, 2}};
  for (const std::vector<int64_t>& dims : flips) {
    Tensor a = Tensor::empty(x.shape()), b = Tensor::empty(x.shape());
    cpu.flip(x, dims, a);
    cuda::kernels::flip(ex, x, dims, b);
    expect_same(b, a, "flip of a strided x");
  }
  {
    Tensor a = Tensor::empty(x.shape()), b = Tensor::empty(x.shape());
    cpu.roll(x, {-9, 4, 2}, {0, 2, 2}, a);
    cuda::kernels::roll(ex, x, {-9, 4, 2}, {0, 2, 2}, b);
    expect_same(b, a, "roll of a strided x");
  }
  // A slice with a step (strides that no dims merge across) and a 0-d tensor.
  const Tensor s = randn({8, 9}, 2).slice(0, 1, 8, 2).slice(1, 0, 9, 3);  // [4, 3]
  Tensor a = Tensor::empty(s.shape()), b = Tensor::empty(s.shape());
  cpu.roll(s, {5}, {1}, a);
  cuda::kernels::roll(ex, s, {5}, {1}, b);
  expect_same(b, a, "roll of a sliced x");
  const Tensor z = Tensor::scalar(3.5);
  Tensor zb = Tensor::empty({});
  cuda::kernels::flip(ex, z, {}, zb);
  EXPECT_EQ(zb.item(), 3.5);
}

}  // namespace
}  // namespace orbit

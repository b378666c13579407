// The differentiable operations of the engine, as free functions in namespace orbit.
//
// Each op validates its arguments (throwing orbit::Error naming the op, what it received and what it
// expected), allocates its output on the inputs' device, runs the kernel of that device's backend
// (engine/backend.h), and records its backward function (engine/autograd.h) when grad mode is on
// and an input requires a gradient. Inputs of a binary op must share device and dtype.
#pragma once

#include <limits>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/tensor.h"

namespace orbit {

// ================================================================== elementwise (ops_elementwise.cpp)
// Binary ops broadcast with NumPy rules.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // gradient w.r.t. b needs a > 0
Tensor maximum(const Tensor& a, const Tensor& b);  // ties: gradient split equally
Tensor minimum(const Tensor& a, const Tensor& b);
// Comparisons: 1 where true, 0 elsewhere, in the broadcast dtype. Not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// With a scalar.
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha * x + beta
Tensor pow(const Tensor& x, double exponent);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);  // gradient sign(x), 0 at 0
Tensor sign(const Tensor& x);  // not differentiable (zero gradient)
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);
// Clamp to [lo, hi]; the gradient passes where lo <= x <= hi (as PyTorch).
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor clamp_min(const Tensor& x, double lo);
Tensor clamp_max(const Tensor& x, double hi);

// Activations.
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor softplus(const Tensor& x);  // log(1 + exp(x)), computed stably

// ================================================================== reductions (ops_reduce.cpp)
// dims may be negative; an empty dims list reduces over all dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);   // 0-d
Tensor mean(const Tensor& x);  // 0-d
// Maximum / minimum over dims; ties share the gradient equally (as torch.amax).
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Maximum along one dim with the int64 index of its first occurrence; the gradient goes to that index.
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
// Biased (unbiased = false) or unbiased variance over dims.
Tensor var(const Tensor& x, const std::vector<int64_t>& dims, bool unbiased = true,
           bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Sums x down to `shape` (the inverse of broadcasting `shape` to x's shape).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ================================================================== linear algebra (ops_linalg.cpp)
// torch.matmul semantics: 1-D operands are promoted; batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x w^T + b, x [..., in], w [out, in], b [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// ================================================================== shape (ops_shape.cpp)
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// Splits into pieces of `size` along dim (the last may be smaller); views.
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
enum class PadMode { Constant, Circular, Reflect, Replicate };
// pads as in torch.nn.functional.pad: (left, right) of the last dim, then of the one before, ...
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode = PadMode::Constant,
           double value = 0.0);

// ================================================================== indexing (ops_index.cpp)
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// Returns a copy of `x` with src added at index along dim (differentiable in x and src).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// One-hot float encoding of int64 labels: [..., num_classes].
Tensor one_hot(const Tensor& labels, int64_t num_classes, DType dtype = DType::F32);

// ================================================================== neural-network ops (ops_nn.cpp)
enum class ConvPadding { Zeros, Circular };
// x [N, C, H, W], w [O, C/groups, kh, kw], b [O] or undefined.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), int64_t stride = 1,
              int64_t padding = 0, int64_t dilation = 1, int64_t groups = 1,
              ConvPadding padding_mode = ConvPadding::Zeros);
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& params,
              ConvPadding padding_mode = ConvPadding::Zeros);
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0 /* = kernel */,
                  int64_t padding = 0, int64_t dilation = 1, bool ceil_mode = false);
Tensor max_pool2d(const Tensor& x, const Pool2dParams& params);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0 /* = kernel */,
                  int64_t padding = 0, bool ceil_mode = false, bool count_include_pad = true);
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& params);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
// Batch normalization over dim 1 of x [N, C, ...].
// training: normalize with batch statistics and, when running_mean/var are defined, update them
// in place with `momentum` (running_var with the unbiased batch variance), as PyTorch does.
// !training: normalize with running_mean/var (eval, or the frozen mode of a fine-tuned model).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);
// Inverted dropout: zeroes elements with probability p and scales the rest by 1/(1-p) in training.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// ================================================================== losses (ops_loss.cpp)
enum class Reduction { None, Mean, Sum };
// logits [N, C] or [N, C, d1, ...], target int64 [N] or [N, d1, ...].
// weight: per-class weights [C] or undefined. Label smoothing in [0, 1]. Targets equal to
// ignore_index contribute nothing. Mean reduction divides by the sum of the targets' weights.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& weight = Tensor(),
                     Reduction reduction = Reduction::Mean, double label_smoothing = 0.0,
                     int64_t ignore_index = -100);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const Tensor& weight = Tensor(),
                Reduction reduction = Reduction::Mean, int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target,
                      Reduction reduction = Reduction::Mean, double beta = 1.0);
// pos_weight: [C] weight of positive examples, or undefined.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const Tensor& weight = Tensor(),
                                        Reduction reduction = Reduction::Mean,
                                        const Tensor& pos_weight = Tensor());

// ================================================================== group actions (ops_spatial.cpp)
Tensor flip(const Tensor& x, const std::vector<int64_t>& dims);
// Elements move by +shift (mod size) along each dim, as torch.roll.
Tensor roll(const Tensor& x, const std::vector<int64_t>& shifts, const std::vector<int64_t>& dims);
// Rotation by k * 90 degrees in the plane of dims (from the first towards the second, as torch.rot90);
// on the last two dims of an image, k = 1 turns it counter-clockwise as displayed.
Tensor rot90(const Tensor& x, int64_t k = 1, std::vector<int64_t> dims = {-2, -1});
// theta [N, 2, 3] -> grid [N, H, W, 2] (torch.nn.functional.affine_grid for a 4-D size).
Tensor affine_grid(const Tensor& theta, int64_t N, int64_t H, int64_t W, bool align_corners = false);
Tensor grid_sample(const Tensor& x, const Tensor& grid, GridMode mode = GridMode::Bilinear,
                   GridPadding padding = GridPadding::Zeros, bool align_corners = false);
// Rotates images [N, C, H, W] about their centre by `degrees` (counter-clockwise as displayed, with
// row 0 at the top), bilinear, zero fill outside the image. rotate(x, 90 * k) == rot90(x, k) on
// square images (up to float rounding of the sample positions).
Tensor rotate(const Tensor& x, double degrees, bool align_corners = false);

}  // namespace orbit

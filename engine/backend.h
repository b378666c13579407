// The backend interface: everything that touches tensor memory goes through it, chosen by the
// tensor's device. The CPU backend (engine/cpu/) is the readable reference; a GPU backend implements
// the same interface and is registered with register_backend(), so ops and layers never change.
//
// Conventions for kernels:
// - Output tensors are allocated by the caller (the op in engine/ops_*.cpp), on the same device,
//   with the documented shape; unless stated otherwise they are contiguous.
// - Inputs are contiguous unless the kernel says it accepts strides (copy, unary, binary, reduce).
// - Shapes and arguments were validated by the op; kernels may assume them (and ORBIT_ASSERT).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace orbit {

enum class UnaryOp {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Sign, Square, Reciprocal, Log1p,
  Relu, Sigmoid, Tanh, Silu, Gelu, GeluTanh, Softplus,
  Affine,    // alpha * x + beta
  PowScalar, // x ^ alpha
  Clamp,     // min(max(x, alpha), beta)   (alpha = -inf / beta = +inf for one-sided clamps)
};

enum class BinaryOp {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,  // 1 where true, 0 where false, in the inputs' dtype
  // Fused activation gradients: a = grad of the output, b = the saved input x or output y.
  ReluBackward,     // a * (x > 0)
  SigmoidBackward,  // a * y * (1 - y)
  TanhBackward,     // a * (1 - y^2)
  SiluBackward,     // a * s(x) * (1 + x * (1 - s(x)))
  GeluBackward,     // a * d/dx [x * Phi(x)]
  GeluTanhBackward, // a * d/dx of the tanh approximation
};

enum class ReduceOp { Sum, Max, Min };

struct GemmArgs {
  // For b in [0, batch): C_b = alpha * op(A_b) op(B_b) + beta * C_b, row-major, op(A_b) M x K.
  // Batch strides may be 0 (broadcast). lda/ldb/ldc are the row strides of the stored matrices.
  bool trans_a = false, trans_b = false;
  int64_t batch = 1, M = 0, N = 0, K = 0;
  double alpha = 1.0, beta = 0.0;
  const void* A = nullptr; int64_t lda = 0, stride_a = 0;
  const void* B = nullptr; int64_t ldb = 0, stride_b = 0;
  void* C = nullptr;       int64_t ldc = 0, stride_c = 0;
  DType dtype = DType::F32;
};

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;  // zero padding (circular padding is applied by the op before)
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;  // max pooling only
  bool ceil_mode = false;
  bool count_include_pad = true;  // average pooling only
};

enum class GridPadding { Zeros, Border, Reflection };
enum class GridMode { Bilinear, Nearest };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual const char* name() const = 0;

  // ---------------------------------------------------------------- memory
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  // Byte copies between this device and host memory.
  virtual void copy_to_host(void* host_dst, const void* src, size_t nbytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, size_t nbytes) = 0;

  // ---------------------------------------------------------------- elementwise
  virtual void fill(const Tensor& out, double value) = 0;  // out may be strided
  // dst[i] = src[i]; same shape; both may be strided (src may have 0 strides); dtypes may differ.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  // out = op(x); x may be strided, out contiguous of x's shape, same dtype.
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha, double beta) = 0;
  // out = op(a, b); a and b are already expanded to out's shape (strides may be 0); out contiguous.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // ---------------------------------------------------------------- reductions
  // out has x's rank with size 1 in every reduced dim (reduce[d] true); x may be strided.
  virtual void reduce(ReduceOp op, const Tensor& x, const std::vector<bool>& reduce,
                      const Tensor& out) = 0;
  // Max (or min) along one dim: values [x with size 1 at dim] and int64 indices of the first extreme.
  virtual void arg_reduce(bool is_max, const Tensor& x, int64_t dim, const Tensor& values,
                          const Tensor& indices) = 0;
  // Softmax or log-softmax along dim (x contiguous).
  virtual void softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) = 0;
  // Gradient of softmax / log-softmax given the output y and its gradient gy.
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log,
                                const Tensor& gx) = 0;

  // ---------------------------------------------------------------- linear algebra
  virtual void gemm(const GemmArgs& args) = 0;

  // ---------------------------------------------------------------- convolution
  // x [N, C, H, W], w [O, C/groups, kh, kw], out [N, O, Ho, Wo] (bias is added by the op).
  virtual void conv2d(const Tensor& x, const Tensor& w, const Conv2dParams& p, const Tensor& out) = 0;
  virtual void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p,
                                     const Tensor& gx) = 0;
  // gw is overwritten (not accumulated).
  virtual void conv2d_backward_weight(const Tensor& x, const Tensor& gy, const Conv2dParams& p,
                                      const Tensor& gw) = 0;

  // ---------------------------------------------------------------- pooling
  // indices: int64 [N, C, Ho, Wo], flat offset h * W + w of the maximum inside the input plane.
  virtual void max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out,
                          const Tensor& indices) = 0;
  virtual void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) = 0;
  virtual void avg_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out) = 0;
  virtual void avg_pool2d_backward(const Tensor& gy, const Pool2dParams& p, const Tensor& gx) = 0;
  // Output size from out's shape; windows as in PyTorch: [floor(i*H/Ho), ceil((i+1)*H/Ho)).
  virtual void adaptive_avg_pool2d(const Tensor& x, const Tensor& out) = 0;
  virtual void adaptive_avg_pool2d_backward(const Tensor& gy, const Tensor& gx) = 0;

  // ---------------------------------------------------------------- batch normalization
  // Per-channel (dim 1) biased mean and variance over all other dims of x [N, C, ...].
  virtual void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) = 0;
  // y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; weight / bias may be undefined (1 / 0).
  virtual void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                const Tensor& weight, const Tensor& bias, const Tensor& y) = 0;
  // Training-mode batch norm in one call, for a backend with a fused implementation: y, and the
  // batch's mean, biased variance and invstd = 1 / sqrt(var + eps) per channel. Returns false when it
  // has none (the default), and the op then calls batch_norm_stats and batch_norm_apply.
  virtual bool batch_norm_train_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                      const Tensor& y, const Tensor& mean, const Tensor& var,
                                      const Tensor& invstd) {
    return false;
  }
  // Gradients of batch_norm_apply. With batch_stats, mean/invstd were computed from x and their
  // dependence on x is included. gweight / gbias may be undefined (not wanted).
  virtual void batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& mean,
                                   const Tensor& invstd, const Tensor& weight, bool batch_stats,
                                   const Tensor& gx, const Tensor& gweight, const Tensor& gbias) = 0;

  // ---------------------------------------------------------------- indexing
  // out[i][j][k] = x[i][index[i][j][k]][k] (for dim = 1); index int64 of out's shape.
  virtual void gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  // out[i][index[i][j][k]][k] += src[i][j][k] (for dim = 1); out is accumulated into.
  virtual void scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  // out = x.index_select(dim, index) for a 1-D int64 index.
  virtual void index_select(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  // out.index_add_(dim, index, src): out accumulated into.
  virtual void index_add(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) = 0;

  // ---------------------------------------------------------------- spatial transforms
  // out = x flipped along each dim in dims.
  virtual void flip(const Tensor& x, const std::vector<int64_t>& dims, const Tensor& out) = 0;
  // out = x cyclically shifted by shifts[i] along dims[i] (element j goes to (j + shift) mod n).
  virtual void roll(const Tensor& x, const std::vector<int64_t>& shifts,
                    const std::vector<int64_t>& dims, const Tensor& out) = 0;
  // x [N, C, H, W], grid [N, Ho, Wo, 2] (x, y in [-1, 1]), out [N, C, Ho, Wo] (PyTorch semantics).
  virtual void grid_sample(const Tensor& x, const Tensor& grid, GridMode mode, GridPadding padding,
                           bool align_corners, const Tensor& out) = 0;
  // gx (zeroed by the kernel) and ggrid (may be undefined when not wanted).
  virtual void grid_sample_backward(const Tensor& gy, const Tensor& x, const Tensor& grid,
                                    GridMode mode, GridPadding padding, bool align_corners,
                                    const Tensor& gx, const Tensor& ggrid) = 0;
};

// The backend that owns memory on `device`; throws when none is registered (for example a CUDA
// device in a build without the CUDA backend).
Backend& backend(Device device);
inline Backend& backend_of(const Tensor& t) { return backend(t.device()); }
void register_backend(DeviceType type, std::unique_ptr<Backend> backend);
bool has_backend(DeviceType type);

}  // namespace orbit

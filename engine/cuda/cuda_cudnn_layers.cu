// Batch normalization, average pooling and softmax through cuDNN, as alternatives to the engine's own
// kernels (kernels/norm.h, kernels/pool.h, kernels/reduce.h). Which of them cuDNN computes is a set
// (cuda::set_cudnn_layers, or ORBIT_CUDA_CUDNN=bn,pool,softmax | all | none in the environment), empty
// by default: the own kernels are the ones checked against the CPU backend on every machine, bit for
// bit where the CPU's order of summation can be kept; these paths are for measuring which is faster
// on a GPU, and each is checked against the CPU there (tests/test_cuda.cpp).
//
// Batch norm ("bn"). Training forward: cudnnBatchNormalizationForwardTraining computes y, the batch
// mean and invstd = 1 / sqrt(var + eps) in one call (the running statistics stay with the op, which
// updates them from the biased variance, recovered here as 1 / invstd^2 - eps). Backward with batch
// statistics: cudnnBatchNormalizationBackward from the saved mean and invstd. Evaluation-mode
// gradients, eps below cuDNN's minimum, and shapes cuDNN cannot describe stay with the own kernels.
// The tensor [N, C, ...] (contiguous) is described as NCHW [N, C, prod(...), 1].
//
// Pooling ("pool"). Average pooling forward (and adaptive average pooling where the input divides
// evenly into the output, which is then average pooling with kernel = stride = input / output) by
// cudnnPoolingForward; ceil_mode, which cuDNN's output size does not follow, stays with the own
// kernel. The backward stays with the own kernel: it spreads gy / divisor over each window (one work
// item per input element, deterministic), while cudnnPoolingBackward takes x and y, which the engine
// does not keep for average pooling. Max pooling stays with the own kernels altogether: the engine
// records the index of each maximum (first one wins, as PyTorch's), and cuDNN's backward instead
// re-derives the maxima from x and y with its own rule for ties.
//
// Softmax ("softmax"). softmax and log-softmax along any dim, forward and backward, by
// cudnnSoftmaxForward / cudnnSoftmaxBackward (CUDNN_SOFTMAX_ACCURATE or CUDNN_SOFTMAX_LOG, channel
// mode): the contiguous tensor, split at the dim into outer x size x inner, is described as NCHW
// [outer, size, inner, 1].
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <string>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/elementwise.h"
#include "engine/cuda/kernels/norm.h"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/libraries.h"

namespace orbit::cuda {

namespace {

EnvSetting g_cudnn_layers("ORBIT_CUDA_CUDNN");  // a mask of CudnnLayer bits

// Whether cuDNN can take a contiguous float32/64 tensor of n elements viewed as NCHW [a, b, c, d]:
// every size positive and the element count (so every stride) fitting an int.
bool describable_4d(const Tensor& t, int64_t a, int64_t b, int64_t c, int64_t d) {
  return t.is_contiguous() && is_floating(t.dtype()) && a > 0 && b > 0 && c > 0 && d > 0 && t.numel() <= INT_MAX;
}

void set_4d(const TensorDesc& desc, DType dtype, int64_t a, int64_t b, int64_t c, int64_t d) {
  ORBIT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc.get(), CUDNN_TENSOR_NCHW, cudnn_data_type(dtype), static_cast<int>(a),
                                               static_cast<int>(b), static_cast<int>(c), static_cast<int>(d)));
}

int64_t prod(const Tensor& t, int64_t from, int64_t to) {
  int64_t p = 1;
  for (int64_t d = from; d < to; ++d) p *= t.size(d);
  return p;
}

// Batch norm's x: [N, C, ...] as NCHW [N, C, prod(...), 1].
bool bn_describable(const Tensor& x) {
  return x.dim() >= 2 && describable_4d(x, x.size(0), x.size(1), prod(x, 2, x.dim()), 1);
}

void bn_describe(const Tensor& x, const TensorDesc& xd, const TensorDesc& pd) {
  set_4d(xd, x.dtype(), x.size(0), x.size(1), prod(x, 2, x.dim()), 1);
  ORBIT_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(pd.get(), xd.get(), CUDNN_BATCHNORM_SPATIAL));
}

// weight, or ones when undefined; bias, or zeros (cuDNN needs both).
Tensor or_filled(const Tensor& t, int64_t C, DType dtype, double value) {
  if (t.defined()) return t;
  Tensor f = Tensor::empty({C}, dtype, Device::cuda(0));
  kernels::fill(GpuExec{}, f, value);
  return f;
}

}  // namespace

unsigned parse_cudnn_layers(const std::string& spec) {
  if (spec.empty() || spec == "none") return 0;
  if (spec == "all") return kCudnnAllLayers;
  unsigned mask = 0;
  size_t pos = 0;
  while (pos <= spec.size()) {
    const size_t comma = std::min(spec.find(',', pos), spec.size());
    const std::string word = spec.substr(pos, comma - pos);
    if (word == "bn") mask |= kCudnnBatchNorm;
    else if (word == "pool") mask |= kCudnnPooling;
    else if (word == "softmax") mask |= kCudnnSoftmax;
    else
      throw Error(str_cat("cuDNN layers: unknown layer \"", word, "\" in \"", spec,
                          "\"; expected \"all\", \"none\" or a comma-separated list of bn, pool, softmax"));
    pos = comma + 1;
  }
  return mask;
}

void set_cudnn_layers(unsigned mask) {
  ORBIT_CHECK(mask <= kCudnnAllLayers, "set_cudnn_layers: expected a mask of CudnnLayer bits (at most ",
              kCudnnAllLayers, "), got ", mask);
  g_cudnn_layers.set(static_cast<int>(mask));
}

unsigned cudnn_layers() {
  return static_cast<unsigned>(
      g_cudnn_layers.get([](const char* v) { return static_cast<int>(parse_cudnn_layers(v ? v : "")); }));
}

bool use_cudnn(CudnnLayer layer) { return (cudnn_layers() & layer) != 0; }

bool CudaBackend::batch_norm_train_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                         const Tensor& y, const Tensor& mean, const Tensor& var,
                                         const Tensor& invstd) {
  if (!use_cudnn(kCudnnBatchNorm) || eps < CUDNN_BN_MIN_EPSILON || !bn_describable(x)) return false;
  const int64_t C = x.size(1);
  const DType dt = x.dtype();
  const Tensor scale = or_filled(weight, C, dt, 1.0), shift = or_filled(bias, C, dt, 0.0);
  TensorDesc xd, pd;
  bn_describe(x, xd, pd);
  const CudnnScalar one(1.0, dt == DType::F64), zero(0.0, dt == DType::F64);
  with_cudnn_handle([&](cudnnHandle_t h) {
    ORBIT_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
        h, CUDNN_BATCHNORM_SPATIAL, one.get(), zero.get(), xd.get(), x.raw_data(), xd.get(), y.raw_data(), pd.get(),
        scale.raw_data(), shift.raw_data(), 0.0, nullptr, nullptr, eps, mean.raw_data(), invstd.raw_data()));
  });
  // var = 1 / invstd^2 - eps, for the op's running variance.
  kernels::unary(GpuExec{}, UnaryOp::Square, invstd, var, 0, 0);
  kernels::unary(GpuExec{}, UnaryOp::Reciprocal, var, var, 0, 0);
  kernels::unary(GpuExec{}, UnaryOp::Affine, var, var, 1.0, -eps);
  return true;
}

// Called by CudaBackend::batch_norm_backward (cuda_nn.cu) first; false: use the own kernels.
bool cudnn_batch_norm_backward(const Tensor& x, const Tensor& gy, const Tensor& mean, const Tensor& invstd,
                               const Tensor& weight, bool batch_stats, const Tensor& gx, const Tensor& gweight,
                               const Tensor& gbias) {
  if (!use_cudnn(kCudnnBatchNorm) || !batch_stats || !gx.defined() || !bn_describable(x) || !gy.is_contiguous())
    return false;
  const int64_t C = x.size(1);
  const DType dt = x.dtype();
  const Tensor scale = or_filled(weight, C, dt, 1.0);
  const Tensor dscale = gweight.defined() ? gweight : Tensor::empty({C}, dt, Device::cuda(0));
  const Tensor dbias = gbias.defined() ? gbias : Tensor::empty({C}, dt, Device::cuda(0));
  TensorDesc xd, pd;
  bn_describe(x, xd, pd);
  const CudnnScalar one(1.0, dt == DType::F64), zero(0.0, dt == DType::F64);
  // eps only matters when cuDNN recomputes the statistics; it is given the saved ones, so cuDNN's
  // minimum is passed to satisfy its check.
  with_cudnn_handle([&](cudnnHandle_t h) {
    ORBIT_CUDNN_CHECK(cudnnBatchNormalizationBackward(
        h, CUDNN_BATCHNORM_SPATIAL, one.get(), zero.get(), one.get(), zero.get(), xd.get(), x.raw_data(), xd.get(), gy.raw_data(), xd.get(),
        gx.raw_data(), pd.get(), scale.raw_data(), dscale.raw_data(), dbias.raw_data(), CUDNN_BN_MIN_EPSILON,
        mean.raw_data(), invstd.raw_data()));
  });
  return true;
}

// ---------------------------------------------------------------------------- pooling

namespace {

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

// Average pooling of contiguous 4-D x into out by cuDNN; false (nothing done) where it does not apply.
bool cudnn_avg_pool(const Tensor& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                    bool count_include_pad, const Tensor& out) {
  if (!use_cudnn(kCudnnPooling) || x.dim() != 4 || out.dim() != 4 || x.dtype() != out.dtype()) return false;
  if (!describable_4d(x, x.size(0), x.size(1), x.size(2), x.size(3)) ||
      !describable_4d(out, out.size(0), out.size(1), out.size(2), out.size(3)))
    return false;
  for (int64_t v : {kh, kw, sh, sw, ph, pw})
    if (!fits_int(v)) return false;
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1) return false;
  PoolDesc pd;
  ORBIT_CUDNN_CHECK(cudnnSetPooling2dDescriptor(
      pd.get(), count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING,
      CUDNN_NOT_PROPAGATE_NAN, static_cast<int>(kh), static_cast<int>(kw), static_cast<int>(ph), static_cast<int>(pw),
      static_cast<int>(sh), static_cast<int>(sw)));
  TensorDesc xd, yd;
  set_4d(xd, x.dtype(), x.size(0), x.size(1), x.size(2), x.size(3));
  int n = 0, c = 0, h = 0, w = 0;
  ORBIT_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(pd.get(), xd.get(), &n, &c, &h, &w));
  if (n != out.size(0) || c != out.size(1) || h != out.size(2) || w != out.size(3)) return false;
  set_4d(yd, out.dtype(), out.size(0), out.size(1), out.size(2), out.size(3));
  const CudnnScalar one(1.0, x.dtype() == DType::F64), zero(0.0, x.dtype() == DType::F64);
  with_cudnn_handle([&](cudnnHandle_t hd) {
    ORBIT_CUDNN_CHECK(
        cudnnPoolingForward(hd, pd.get(), one.get(), xd.get(), x.raw_data(), zero.get(), yd.get(), out.raw_data()));
  });
  return true;
}

}  // namespace

bool cudnn_avg_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out) {
  if (p.ceil_mode) return false;
  return cudnn_avg_pool(x, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.count_include_pad,
                        out);
}

bool cudnn_adaptive_avg_pool2d(const Tensor& x, const Tensor& out) {
  if (x.dim() != 4 || out.dim() != 4 || out.size(2) < 1 || out.size(3) < 1) return false;
  const int64_t H = x.size(2), W = x.size(3), Ho = out.size(2), Wo = out.size(3);
  if (H % Ho != 0 || W % Wo != 0) return false;  // uneven windows: the own kernel
  return cudnn_avg_pool(x, H / Ho, W / Wo, H / Ho, W / Wo, 0, 0, true, out);
}

// ---------------------------------------------------------------------------- softmax

namespace {

// The contiguous t split at dim: [outer, size, inner, 1].
bool softmax_describable(const Tensor& t, int64_t dim) {
  return describable_4d(t, prod(t, 0, dim), t.size(dim), prod(t, dim + 1, t.dim()), 1);
}

void softmax_describe(const Tensor& t, int64_t dim, const TensorDesc& d) {
  set_4d(d, t.dtype(), prod(t, 0, dim), t.size(dim), prod(t, dim + 1, t.dim()), 1);
}

}  // namespace

bool cudnn_softmax(const Tensor& x, int64_t dim, bool log, const Tensor& out) {
  if (!use_cudnn(kCudnnSoftmax) || x.numel() == 0 || !softmax_describable(x, dim) || !out.is_contiguous() ||
      out.dtype() != x.dtype())
    return false;
  TensorDesc d;
  softmax_describe(x, dim, d);
  const CudnnScalar one(1.0, x.dtype() == DType::F64), zero(0.0, x.dtype() == DType::F64);
  with_cudnn_handle([&](cudnnHandle_t h) {
    ORBIT_CUDNN_CHECK(cudnnSoftmaxForward(h, log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE,
                                          CUDNN_SOFTMAX_MODE_CHANNEL, one.get(), d.get(), x.raw_data(), zero.get(),
                                          d.get(), out.raw_data()));
  });
  return true;
}

bool cudnn_softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log, const Tensor& gx) {
  if (!use_cudnn(kCudnnSoftmax) || y.numel() == 0 || !softmax_describable(y, dim) || !gy.is_contiguous() ||
      !gx.is_contiguous() || gy.dtype() != y.dtype() || gx.dtype() != y.dtype())
    return false;
  TensorDesc d;
  softmax_describe(y, dim, d);
  const CudnnScalar one(1.0, y.dtype() == DType::F64), zero(0.0, y.dtype() == DType::F64);
  with_cudnn_handle([&](cudnnHandle_t h) {
    ORBIT_CUDNN_CHECK(cudnnSoftmaxBackward(h, log ? CUDNN_SOFTMAX_LOG : CUDNN_SOFTMAX_ACCURATE,
                                           CUDNN_SOFTMAX_MODE_CHANNEL, one.get(), d.get(), y.raw_data(), d.get(),
                                           gy.raw_data(), zero.get(), d.get(), gx.raw_data()));
  });
  return true;
}

}  // namespace orbit::cuda

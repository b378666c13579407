// Batch normalization through cuDNN, as an alternative to the engine's own kernels (kernels/norm.h),
// switched on with cuda::set_use_cudnn_batch_norm(true) or ORBIT_CUDA_CUDNN_BN=1 (off by default: the
// own kernels are the ones checked against the CPU backend on every machine; this path is for
// measuring on a GPU which is faster).
//
// Training forward: cudnnBatchNormalizationForwardTraining computes y, the batch mean and
// invstd = 1 / sqrt(var + eps) in one call (the running statistics stay with the op, which updates
// them from the biased variance, recovered here as 1 / invstd^2 - eps). Backward with batch
// statistics: cudnnBatchNormalizationBackward from the saved mean and invstd. Evaluation-mode
// gradients, eps below cuDNN's minimum, and shapes cuDNN cannot describe stay with the own kernels.
// The tensor [N, C, ...] (contiguous) is described as NCHW [N, C, prod(...), 1].
#include <cudnn.h>

#include <climits>
#include <cstdlib>
#include <cstring>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/kernels/elementwise.h"
#include "engine/cuda/kernels/norm.h"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/libraries.h"

namespace orbit::cuda {

namespace {

int& cudnn_bn_setting() {  // -1: not decided yet (read ORBIT_CUDA_CUDNN_BN at first use)
  static int v = -1;
  return v;
}

class BnDesc {
 public:
  BnDesc() { ORBIT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~BnDesc() { cudnnDestroyTensorDescriptor(d_); }
  BnDesc(const BnDesc&) = delete;
  BnDesc& operator=(const BnDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

// Whether cuDNN can take x: [N, C, ...] contiguous float32/64 with every dim fitting an int.
bool describable(const Tensor& x) {
  if (x.dim() < 2 || !x.is_contiguous() || !is_floating(x.dtype())) return false;
  int64_t rest = 1;
  for (int64_t d = 2; d < x.dim(); ++d) rest *= x.size(d);
  return x.size(0) <= INT_MAX && x.size(1) <= INT_MAX && rest <= INT_MAX && x.size(0) > 0 && rest > 0;
}

void describe(const Tensor& x, const BnDesc& xd, const BnDesc& pd) {
  int64_t rest = 1;
  for (int64_t d = 2; d < x.dim(); ++d) rest *= x.size(d);
  const cudnnDataType_t dt = x.dtype() == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  ORBIT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd.get(), CUDNN_TENSOR_NCHW, dt, static_cast<int>(x.size(0)),
                                               static_cast<int>(x.size(1)), static_cast<int>(rest), 1));
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

void set_use_cudnn_batch_norm(bool on) { cudnn_bn_setting() = on ? 1 : 0; }

bool use_cudnn_batch_norm() {
  int& v = cudnn_bn_setting();
  if (v < 0) {
    const char* e = std::getenv("ORBIT_CUDA_CUDNN_BN");
    v = (e && (std::strcmp(e, "1") == 0 || std::strcmp(e, "true") == 0 || std::strcmp(e, "on") == 0)) ? 1 : 0;
  }
  return v == 1;
}

bool CudaBackend::batch_norm_train_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                         const Tensor& y, const Tensor& mean, const Tensor& var,
                                         const Tensor& invstd) {
  if (!use_cudnn_batch_norm() || eps < CUDNN_BN_MIN_EPSILON || !describable(x)) return false;
  const int64_t C = x.size(1);
  const DType dt = x.dtype();
  const Tensor scale = or_filled(weight, C, dt, 1.0), shift = or_filled(bias, C, dt, 0.0);
  BnDesc xd, pd;
  describe(x, xd, pd);
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
  if (!use_cudnn_batch_norm() || !batch_stats || !gx.defined() || !describable(x) || !gy.is_contiguous())
    return false;
  const int64_t C = x.size(1);
  const DType dt = x.dtype();
  const Tensor scale = or_filled(weight, C, dt, 1.0);
  const Tensor dscale = gweight.defined() ? gweight : Tensor::empty({C}, dt, Device::cuda(0));
  const Tensor dbias = gbias.defined() ? gbias : Tensor::empty({C}, dt, Device::cuda(0));
  BnDesc xd, pd;
  describe(x, xd, pd);
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

}  // namespace orbit::cuda

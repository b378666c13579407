// Error checks for the NVIDIA libraries the CUDA backend calls: cuBLAS (cuda_blas.cu) and cuDNN
// (cuda_conv.cu). A failing call becomes an orbit::Error naming the call, the file and line, and the
// library's own name for the status (plus cuDNN's last detailed message when it has one), the same
// way ORBIT_CUDA_CHECK (launch.cuh) reports CUDA runtime errors.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>

#include <functional>
#include <string>

#include "engine/dtype.h"
#include "engine/error.h"

namespace orbit::cuda::detail {

// cuDNN 9 keeps a more specific message for the last failure of the calling thread; "" if none.
inline std::string cudnn_last_error_detail() {
#if defined(CUDNN_MAJOR) && CUDNN_MAJOR >= 9
  char message[1024] = {0};
  cudnnGetLastErrorString(message, sizeof(message));
  message[sizeof(message) - 1] = '\0';
  if (message[0] != '\0') return std::string(" (") + message + ")";
#endif
  return std::string();
}

}  // namespace orbit::cuda::detail

namespace orbit::cuda {
// A cuDNN scaling factor (alpha, beta): a host value of the data's type, double for float64 data and
// float otherwise; get() is what the call takes.
class CudnnScalar {
 public:
  CudnnScalar(double value, bool f64) : d_(value), f_(static_cast<float>(value)), f64_(f64) {}
  const void* get() const { return f64_ ? static_cast<const void*>(&d_) : static_cast<const void*>(&f_); }

 private:
  double d_;
  float f_;
  bool f64_;
};

// cuDNN's data type for float32 or float64 data (computed in the same type).
inline cudnnDataType_t cudnn_data_type(DType t) { return t == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT; }

// Runs f with the backend's cuDNN handle (bound to its stream), holding the handle's lock
// (cuda_conv.cu).
void with_cudnn_handle(const std::function<void(cudnnHandle_t)>& f);
}  // namespace orbit::cuda

// A cuBLAS call whose failure becomes an orbit::Error: "cuBLAS error in <call> at <file>:<line>:
// CUBLAS_STATUS_..."
#define ORBIT_CUBLAS_CHECK(call)                                                                               \
  do {                                                                                                         \
    const cublasStatus_t orbit_cublas_status_ = (call);                                                        \
    if (orbit_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                         \
      throw ::orbit::Error(::orbit::str_cat("cuBLAS error in ", #call, " at ", __FILE__, ":", __LINE__, ": ", \
                                            cublasGetStatusName(orbit_cublas_status_)));                       \
  } while (0)

// A cuDNN call whose failure becomes an orbit::Error: "cuDNN error in <call> at <file>:<line>:
// CUDNN_STATUS_... (detail)"
#define ORBIT_CUDNN_CHECK(call)                                                                              \
  do {                                                                                                       \
    const cudnnStatus_t orbit_cudnn_status_ = (call);                                                        \
    if (orbit_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                                         \
      throw ::orbit::Error(::orbit::str_cat("cuDNN error in ", #call, " at ", __FILE__, ":", __LINE__, ": ", \
                                            cudnnGetErrorString(orbit_cudnn_status_),                        \
                                            ::orbit::cuda::detail::cudnn_last_error_detail()));              \
  } while (0)

namespace orbit::cuda {
// A cuDNN descriptor of type D (cudnnTensorDescriptor_t, ...), created with Create and destroyed with
// Destroy when it goes out of scope; get() is what the calls take.
template <class D, cudnnStatus_t (*Create)(D*), cudnnStatus_t (*Destroy)(D)>
class CudnnDescriptor {
 public:
  CudnnDescriptor() { ORBIT_CUDNN_CHECK(Create(&d_)); }
  ~CudnnDescriptor() { Destroy(d_); }
  CudnnDescriptor(const CudnnDescriptor&) = delete;
  CudnnDescriptor& operator=(const CudnnDescriptor&) = delete;
  D get() const { return d_; }

 private:
  D d_ = nullptr;
};
using TensorDesc = CudnnDescriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = CudnnDescriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = CudnnDescriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                                 cudnnDestroyConvolutionDescriptor>;
using PoolDesc = CudnnDescriptor<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor, cudnnDestroyPoolingDescriptor>;
}  // namespace orbit::cuda

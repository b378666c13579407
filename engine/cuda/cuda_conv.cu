// conv2d forward, backward-data and backward-filter on the GPU through cuDNN's legacy convolution API
// (cudnnConvolutionForward / BackwardData / BackwardFilter with tensor, filter and convolution
// descriptors): NCHW, cross-correlation (what deep learning calls convolution), zero padding, stride,
// dilation and groups as in Conv2dParams; float32 or float64 (computed in the same type).
// gx and gw are overwritten (beta = 0); the bias is added by the op (engine/ops_nn.cpp).
//
// Algorithm choice. cuDNN offers several algorithms per direction; which is fastest depends on the
// shapes. We ask cuDNN's heuristics (cudnnGet*Algorithm_v7) once per key (direction, dtype, TF32
// setting, policy, every shape and every convolution parameter) and cache the answer: the algorithm,
// the math type it runs with and its workspace size. The usable algorithms are those cuDNN reports as
// supported (status success), whose math type respects the TF32 setting, and whose workspace fits in
// the device memory free at the time. Among them, the policy (cuda::set_conv_algo_policy,
// ORBIT_CUDA_CONV_ALGO) decides:
//   - "deterministic" (the default): the best-ranked DETERMINISTIC one (some backward algorithms
//     accumulate with atomics, so their results change in the last bits from run to run; the CPU
//     backend is deterministic and so is this one whenever cuDNN has a deterministic algorithm, which
//     it has for the usual shapes); only when none qualifies, the best-ranked other one;
//   - "heuristic": the best-ranked one, deterministic or not (PyTorch's choice with
//     torch.backends.cudnn.benchmark off);
//   - "search": every usable one is run and timed on the real arguments (after a warm-up run) and the
//     fastest is kept (PyTorch's cudnn.benchmark = True). The first call of each shape pays for the
//     search, and the choice can differ from run to run with timing noise, so results may differ in
//     the last bits between runs. (The search is not cudnnFind*AlgorithmEx: timing the candidates
//     ourselves keeps the same usability rules and the caching allocator's workspace.)
// The heuristics alone run nothing on the GPU, need no search workspace and give the same choice on
// every run, which is why they are the default. On the first use of a key the candidates are tried in
// the policy's order and the first one that launches is cached (an algorithm the heuristics report as
// supported can still refuse at launch, or its workspace can fail to allocate).
//
// cuDNN indexes tensors with 32-bit ints: a batch whose x or y has more than 2^31 - 1 elements runs
// in slices of whole images (the weight gradient of the later slices is accumulated with beta = 1).
//
// Precision. float32 runs with CUDNN_FMA_MATH by default: plain float32 FMA kernels, comparable with
// the CPU. (cuDNN's default math type would let float32 convolutions use TF32 tensor cores on Ampere
// and newer, with ~1e-3 relative error.) With set_allow_tf32(true) / ORBIT_CUDA_TF32=1 (cuda_backend.h)
// float32 runs with CUDNN_DEFAULT_MATH, which allows TF32 tensor cores; CUDNN_TENSOR_OP_MATH_ALLOW_
// CONVERSION is not used because it may also down-convert float32 data to float16. float64 always
// runs with the default math type (float64 tensor cores, where used, compute in full float64).
//
// Workspace comes from the backend's caching allocator for each call and goes back right after the
// call is enqueued (blocks are reused only by later work on the same stream, so this is safe and
// cheap). The cuDNN handle is created on the first convolution, bound to the backend's stream and
// kept for the life of the process. A mutex serializes the calls: a cuDNN handle must not be used by
// two threads at once, and the algorithm cache is shared; cuDNN calls only enqueue work.
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_impl.h"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/libraries.h"

namespace orbit::cuda {

namespace {

enum class Direction { Forward = 0, BackwardData = 1, BackwardFilter = 2 };

const char* direction_name(Direction d) {
  switch (d) {
    case Direction::Forward: return "conv2d";
    case Direction::BackwardData: return "conv2d backward (input)";
    case Direction::BackwardFilter: return "conv2d backward (weight)";
  }
  return "conv2d";
}

// ---------------------------------------------------------------------------- workspace (RAII)

// Workspace from the caching allocator; nothing when 0 bytes are needed.
class Workspace {
 public:
  explicit Workspace(size_t n) : p_(n ? device_allocate(n) : nullptr), n_(n) {}
  ~Workspace() {
    if (p_) device_free(p_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void* p_;
  size_t n_;
};

// ---------------------------------------------------------------------------- handle and cache

// Everything that decides the algorithm: direction, dtype, TF32, policy, x [N,C,H,W], w [O,Cg,kh,kw],
// Ho and Wo of y [N,O,Ho,Wo] (implied by the rest, kept for clarity), stride, padding, dilation, groups.
using Key = std::array<int64_t, 21>;

struct Choice {
  int algo = 0;  // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, by direction
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

struct CudnnState {
  std::mutex mutex;
  cudnnHandle_t handle = nullptr;
  cudaStream_t bound_stream = nullptr;
  bool stream_set = false;
  std::map<Key, Choice> cache;
};

CudnnState& cudnn_state() {
  static CudnnState* s = new CudnnState();  // never destroyed (like the stream)
  return *s;
}

// The handle, created if needed and bound to the backend's stream. Caller holds the mutex.
cudnnHandle_t ready_handle(CudnnState& s) {
  if (!s.handle) {
    cudnnHandle_t h = nullptr;
    ORBIT_CUDNN_CHECK(cudnnCreate(&h));
    s.handle = h;
    s.stream_set = false;
  }
  const cudaStream_t st = stream();
  if (!s.stream_set || s.bound_stream != st) {
    ORBIT_CUDNN_CHECK(cudnnSetStream(s.handle, st));
    s.bound_stream = st;
    s.stream_set = true;
  }
  return s.handle;
}

// Workspace sizes above this are skipped when choosing (an algorithm whose workspace cannot be
// allocated would fail every call): the device memory free now, but never less than 256 MiB.
size_t workspace_limit() {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the error; do not limit
    return SIZE_MAX;
  }
  return std::max<size_t>(free_bytes, size_t(256) << 20);
}

std::string status_list(const std::vector<cudnnStatus_t>& statuses) {
  std::string s;
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (i) s += ", ";
    s += cudnnGetErrorString(statuses[i]);
  }
  return s.empty() ? std::string("none") : s;
}

// The usable algorithms among cuDNN's ranked heuristic results, in the order we prefer them (see the
// top of the file): deterministic ones first, each group in cuDNN's ranking, or (deterministic_first
// false) cuDNN's ranking alone. `ws_size(algo, &bytes)` queries the workspace of an algorithm with the
// convolution descriptor's current math type. Throws when none is usable.
template <class Perf, class WsSize>
std::vector<Choice> candidates(const std::vector<Perf>& perf, int returned, cudnnConvolutionDescriptor_t conv,
                               bool fp32_strict, bool deterministic_first, const WsSize& ws_size, const char* op) {
  const size_t limit = workspace_limit();
  std::vector<Choice> out;
  std::vector<cudnnStatus_t> statuses;
  // Two passes (deterministic ones, then the others) or one in cuDNN's ranking.
  for (int pass = 0; pass < (deterministic_first ? 2 : 1); ++pass) {
    for (int i = 0; i < returned; ++i) {
      const Perf& r = perf[i];
      if (pass == 0) statuses.push_back(r.status);
      if (r.status != CUDNN_STATUS_SUCCESS) continue;
      if (deterministic_first && (r.determinism == CUDNN_DETERMINISTIC) != (pass == 0)) continue;
      if (r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;  // may compute in float16
      if (fp32_strict && r.mathType == CUDNN_TENSOR_OP_MATH) continue;    // TF32 while it is off
      const cudnnMathType_t math = fp32_strict ? CUDNN_FMA_MATH : r.mathType;
      if (cudnnSetConvolutionMathType(conv, math) != CUDNN_STATUS_SUCCESS) continue;
      size_t bytes = 0;
      if (ws_size(r.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
      bytes = std::max(bytes, r.memory);
      if (bytes > limit) continue;
      out.push_back(Choice{static_cast<int>(r.algo), math, bytes});
    }
  }
  ORBIT_CHECK(!out.empty(), "cuda ", op, ": cuDNN has no usable algorithm (heuristic results: ", status_list(statuses),
              "; workspace limit ", limit, " bytes", fp32_strict ? "; float32 without TF32" : "", ")");
  return out;
}

int to_int(const char* what, int64_t v, const char* op) {
  ORBIT_CHECK(v >= 0 && v <= INT32_MAX, "cuda ", op, ": ", what, " = ", v, " does not fit cuDNN's int arguments");
  return static_cast<int>(v);
}

void check_tensor(const Tensor& t, const char* role, const char* op, DType dtype) {
  ORBIT_CHECK(t.dim() == 4, "cuda ", op, ": ", role, " must be 4-D, got ", shape_str(t.shape()));
  ORBIT_CHECK(t.is_contiguous(), "cuda ", op, ": ", role, " must be contiguous (NCHW), got shape ",
              shape_str(t.shape()), " with strides ", shape_str(t.strides()));
  ORBIT_CHECK(t.dtype() == dtype, "cuda ", op, ": ", role, " is ", dtype_name(t.dtype()), ", expected ",
              dtype_name(dtype));
}

void zero(const Tensor& t) {
  const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
  if (bytes) ORBIT_CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, bytes, stream()));  // 0.0 for float/double
}

// The images [n0, n0 + nb) of one convolution: x, w, y are the base pointers of the whole tensors of
// shapes xs, ws, ys (contiguous NCHW), accumulate adds into the result (beta = 1) instead of
// overwriting it. See run() for the roles. Caller holds the state's mutex.
void run_images(CudnnState& s, Direction dir, DType dtype, bool tf32, const Shape& xs, const Shape& ws,
                const Shape& ys, const Conv2dParams& p, char* x, char* w, char* y, int64_t n0, int64_t nb,
                bool accumulate) {
  const char* op = direction_name(dir);
  const bool is_f64 = dtype == DType::F64;
  const size_t esize = dtype_size(dtype);
  x += static_cast<size_t>(n0 * xs[1] * xs[2] * xs[3]) * esize;
  y += static_cast<size_t>(n0 * ys[1] * ys[2] * ys[3]) * esize;
  const cudnnDataType_t dt = cudnn_data_type(dtype);
  const bool fp32_strict = !is_f64 && !tf32;
  const cudnnMathType_t base_math = fp32_strict ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;

  TensorDesc x_desc, y_desc;
  FilterDesc w_desc;
  ConvDesc conv_desc;
  ORBIT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x_desc.get(), CUDNN_TENSOR_NCHW, dt, to_int("N", nb, op),
                                               to_int("C", xs[1], op), to_int("H", xs[2], op),
                                               to_int("W", xs[3], op)));
  ORBIT_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_desc.get(), dt, CUDNN_TENSOR_NCHW, to_int("O", ws[0], op),
                                               to_int("C/groups", ws[1], op), to_int("kh", ws[2], op),
                                               to_int("kw", ws[3], op)));
  ORBIT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y_desc.get(), CUDNN_TENSOR_NCHW, dt, to_int("N", nb, op),
                                               to_int("O", ys[1], op), to_int("Ho", ys[2], op),
                                               to_int("Wo", ys[3], op)));
  ORBIT_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      conv_desc.get(), to_int("pad_h", p.pad_h, op), to_int("pad_w", p.pad_w, op), to_int("stride_h", p.stride_h, op),
      to_int("stride_w", p.stride_w, op), to_int("dilation_h", p.dilation_h, op),
      to_int("dilation_w", p.dilation_w, op), CUDNN_CROSS_CORRELATION, dt));
  ORBIT_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv_desc.get(), to_int("groups", p.groups, op)));
  ORBIT_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_desc.get(), base_math));

  // The output size cuDNN derives must be the one the op allocated.
  int on = 0, oc = 0, oh = 0, ow = 0;
  ORBIT_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv_desc.get(), x_desc.get(), w_desc.get(), &on, &oc,
                                                          &oh, &ow));
  ORBIT_CHECK(on == nb && oc == ys[1] && oh == ys[2] && ow == ys[3], "cuda ", op, ": output shape ", shape_str(ys),
              " differs from cuDNN's [", on, ", ", oc, ", ", oh, ", ", ow, "] for x ", shape_str(xs), " and w ",
              shape_str(ws));

  const cudnnHandle_t h = ready_handle(s);

  // Scaling factors are host values of the data type (double for float64 data, float otherwise).
  const CudnnScalar one_s(1.0, is_f64), beta_s(accumulate ? 1.0 : 0.0, is_f64);
  const void* one = one_s.get();
  const void* beta = beta_s.get();

  // Enqueues the convolution with one algorithm; the status, not an exception.
  auto execute = [&](const Choice& c) -> cudnnStatus_t {
    const cudnnStatus_t st = cudnnSetConvolutionMathType(conv_desc.get(), c.math);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    Workspace workspace(c.workspace);  // back to the cache after the enqueue (stream-ordered reuse)
    switch (dir) {
      case Direction::Forward:
        return cudnnConvolutionForward(h, one, x_desc.get(), x, w_desc.get(), w, conv_desc.get(),
                                       static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), workspace.data(),
                                       workspace.size(), beta, y_desc.get(), y);
      case Direction::BackwardData:
        return cudnnConvolutionBackwardData(h, one, w_desc.get(), w, y_desc.get(), y, conv_desc.get(),
                                            static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), workspace.data(),
                                            workspace.size(), beta, x_desc.get(), x);
      case Direction::BackwardFilter:
        return cudnnConvolutionBackwardFilter(h, one, x_desc.get(), x, y_desc.get(), y, conv_desc.get(),
                                              static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo),
                                              workspace.data(), workspace.size(), beta, w_desc.get(), w);
    }
    return CUDNN_STATUS_BAD_PARAM;
  };

  const ConvAlgoPolicy policy = conv_algo_policy();
  const bool det_first = policy == ConvAlgoPolicy::Deterministic;
  const Key key = {static_cast<int64_t>(dir), static_cast<int64_t>(dtype), tf32 ? 1 : 0,
                   static_cast<int64_t>(policy), nb, xs[1], xs[2], xs[3], ws[0], ws[1], ws[2], ws[3], ys[2], ys[3],
                   p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups};
  auto found = s.cache.find(key);
  if (found != s.cache.end()) {
    const Choice& c = found->second;
    const cudnnStatus_t st = execute(c);
    if (st != CUDNN_STATUS_SUCCESS)
      throw Error(str_cat("cuDNN error in ", op, " (algorithm ", c.algo, ", workspace ", c.workspace, " bytes) at ",
                          __FILE__, ":", __LINE__, ": ", cudnnGetErrorString(st), detail::cudnn_last_error_detail()));
    return;
  }

  // First use of this key: cuDNN's ranked list, then the first candidate that runs is kept. (An
  // algorithm the heuristics call supported can still refuse at launch; the next one is tried then.)
  std::vector<Choice> list;
  int max_count = 0, returned = 0;
  switch (dir) {
    case Direction::Forward: {
      ORBIT_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::max(max_count, 1));
      ORBIT_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, x_desc.get(), w_desc.get(), conv_desc.get(),
                                                               y_desc.get(), static_cast<int>(perf.size()),
                                                               &returned, perf.data()));
      list = candidates(perf, std::min<int>(returned, static_cast<int>(perf.size())), conv_desc.get(),
                        fp32_strict, det_first,
                        [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
                          return cudnnGetConvolutionForwardWorkspaceSize(h, x_desc.get(), w_desc.get(),
                                                                         conv_desc.get(), y_desc.get(), algo, bytes);
                        },
                        op);
      break;
    }
    case Direction::BackwardData: {
      ORBIT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(std::max(max_count, 1));
      ORBIT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w_desc.get(), y_desc.get(), conv_desc.get(),
                                                                    x_desc.get(), static_cast<int>(perf.size()),
                                                                    &returned, perf.data()));
      list = candidates(perf, std::min<int>(returned, static_cast<int>(perf.size())), conv_desc.get(),
                        fp32_strict, det_first,
                        [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
                          return cudnnGetConvolutionBackwardDataWorkspaceSize(h, w_desc.get(), y_desc.get(),
                                                                              conv_desc.get(), x_desc.get(), algo,
                                                                              bytes);
                        },
                        op);
      break;
    }
    case Direction::BackwardFilter: {
      ORBIT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(std::max(max_count, 1));
      ORBIT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, x_desc.get(), y_desc.get(),
                                                                      conv_desc.get(), w_desc.get(),
                                                                      static_cast<int>(perf.size()), &returned,
                                                                      perf.data()));
      list = candidates(perf, std::min<int>(returned, static_cast<int>(perf.size())), conv_desc.get(),
                        fp32_strict, det_first,
                        [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
                          return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, x_desc.get(), y_desc.get(),
                                                                                conv_desc.get(), w_desc.get(), algo,
                                                                                bytes);
                        },
                        op);
      break;
    }
  }
  // The search: time every candidate (a warm-up run, then a timed one) and try the fastest first. Not
  // when accumulating into the result (the later slices of a huge batch), which every run would add to.
  if (policy == ConvAlgoPolicy::Search && !accumulate && list.size() > 1) {
    std::vector<std::pair<double, size_t>> times;
    for (size_t i = 0; i < list.size(); ++i) {
      try {
        if (execute(list[i]) != CUDNN_STATUS_SUCCESS) {
          cudaGetLastError();
          continue;
        }
        EventTimer timer;
        timer.start();
        const cudnnStatus_t st = execute(list[i]);
        const double ms = timer.stop_ms();
        if (st == CUDNN_STATUS_SUCCESS) times.emplace_back(ms, i);
      } catch (const Error&) {  // the workspace could not be allocated
        cudaGetLastError();
      }
    }
    std::stable_sort(times.begin(), times.end());
    std::vector<Choice> by_time;
    for (const auto& t : times) by_time.push_back(list[t.second]);
    if (!by_time.empty()) list = by_time;  // none ran: the loop below reports every failure
  }

  std::string failures;
  for (const Choice& c : list) {
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    std::string why;
    try {
      st = execute(c);
      if (st != CUDNN_STATUS_SUCCESS) why = str_cat(cudnnGetErrorString(st), detail::cudnn_last_error_detail());
    } catch (const Error& e) {  // the workspace could not be allocated
      why = e.what();
    }
    if (why.empty()) {
      s.cache.emplace(key, c);
      return;
    }
    cudaGetLastError();  // a failed candidate may leave a runtime error set: not the next launch's
    failures += str_cat(failures.empty() ? "" : "; ", "algorithm ", c.algo, ": ", why);
  }
  throw Error(str_cat("cuda ", op, ": every cuDNN algorithm failed for x ", shape_str(xs), ", w ", shape_str(ws),
                      ", y ", shape_str(ys), " (", failures, ")"));
}

// One convolution in direction `dir`. x is the image [N,C,H,W], w the filter [O,C/groups,kh,kw], y the
// output side [N,O,Ho,Wo]; the one written is y (Forward), x (BackwardData) or w (BackwardFilter).
void run(Direction dir, const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
  const char* op = direction_name(dir);
  const DType dtype = x.dtype();
  ORBIT_CHECK(dtype == DType::F32 || dtype == DType::F64, "cuda ", op, ": dtype ", dtype_name(dtype),
              " is not supported (float32 or float64)");
  check_tensor(x, dir == Direction::BackwardData ? "gx" : "x", op, dtype);
  check_tensor(w, dir == Direction::BackwardFilter ? "gw" : "w", op, dtype);
  check_tensor(y, dir == Direction::Forward ? "out" : "gy", op, dtype);
  const Tensor& result = dir == Direction::Forward ? y : dir == Direction::BackwardData ? x : w;

  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  const Shape& ys = y.shape();
  ORBIT_CHECK(p.groups >= 1 && xs[1] == ws[1] * p.groups && ws[0] % p.groups == 0 && ys[0] == xs[0] &&
                  ys[1] == ws[0],
              "cuda ", op, ": inconsistent shapes x ", shape_str(xs), ", w ", shape_str(ws), ", y ", shape_str(ys),
              " for groups = ", p.groups);

  // Empty tensors: nothing to write, or a sum over nothing (zeros). cuDNN refuses zero-sized dims.
  if (result.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0 || y.numel() == 0) {
    zero(result);
    return;
  }

  // cuDNN indexes tensors with 32-bit ints: larger batches run in slices of images (the weight gradient
  // of the later slices is added to the first one's).
  const int64_t per_image = std::max(xs[1] * xs[2] * xs[3], ys[1] * ys[2] * ys[3]);
  ORBIT_CHECK(per_image <= INT32_MAX, "cuda ", op, ": one image of x ", shape_str(xs), " or y ", shape_str(ys),
              " has more than ", INT32_MAX, " elements, more than cuDNN can index");
  const int64_t slice = std::max<int64_t>(1, INT32_MAX / per_image);
  const bool tf32 = dtype == DType::F32 && allow_tf32();

  CudnnState& s = cudnn_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  for (int64_t n0 = 0; n0 < xs[0]; n0 += slice) {
    run_images(s, dir, dtype, tf32, xs, ws, ys, p, static_cast<char*>(x.raw_data()), static_cast<char*>(w.raw_data()),
               static_cast<char*>(y.raw_data()), n0, std::min(slice, xs[0] - n0),
               dir == Direction::BackwardFilter && n0 > 0);
  }
}

}  // namespace

namespace {
EnvSetting g_conv_policy("ORBIT_CUDA_CONV_ALGO");  // a ConvAlgoPolicy
}  // namespace

ConvAlgoPolicy parse_conv_algo_policy(const std::string& name) {
  if (name == "deterministic") return ConvAlgoPolicy::Deterministic;
  if (name == "heuristic") return ConvAlgoPolicy::Heuristic;
  if (name == "search") return ConvAlgoPolicy::Search;
  throw Error(str_cat("conv algorithm policy: unknown policy \"", name,
                      "\"; expected \"deterministic\", \"heuristic\" or \"search\""));
}

const char* conv_algo_policy_name(ConvAlgoPolicy p) {
  switch (p) {
    case ConvAlgoPolicy::Deterministic: return "deterministic";
    case ConvAlgoPolicy::Heuristic: return "heuristic";
    case ConvAlgoPolicy::Search: return "search";
  }
  return "deterministic";
}

void set_conv_algo_policy(ConvAlgoPolicy p) { g_conv_policy.set(static_cast<int>(p)); }

ConvAlgoPolicy conv_algo_policy() {
  return static_cast<ConvAlgoPolicy>(g_conv_policy.get([](const char* v) {
    return static_cast<int>(v && *v ? parse_conv_algo_policy(v) : ConvAlgoPolicy::Deterministic);
  }));
}

void with_cudnn_handle(const std::function<void(cudnnHandle_t)>& f) {
  CudnnState& s = cudnn_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  f(ready_handle(s));
}

void CudaBackend::conv2d(const Tensor& x, const Tensor& w, const Conv2dParams& p, const Tensor& out) {
  run(Direction::Forward, x, w, out, p);
}

void CudaBackend::conv2d_backward_input(const Tensor& gy, const Tensor& w, const Conv2dParams& p, const Tensor& gx) {
  run(Direction::BackwardData, gx, w, gy, p);
}

void CudaBackend::conv2d_backward_weight(const Tensor& x, const Tensor& gy, const Conv2dParams& p, const Tensor& gw) {
  run(Direction::BackwardFilter, x, gw, gy, p);
}

}  // namespace orbit::cuda

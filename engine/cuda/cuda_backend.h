// The CUDA backend (built when the CUDA toolkit and cuDNN are found; see CMakeLists.txt, ORBIT_CUDA).
// Every op of the engine runs on the GPU through the same Backend interface as the CPU backend, so
// autograd, layers, models and the trainer are unchanged:
//   - memory from a caching allocator (freed blocks are reused; statistics below), one stream;
//     host-to-device copies staged through pinned buffers, so they do not wait for the GPU;
//   - GEMM through cuBLAS, conv2d forward and backward through cuDNN (algorithm chosen once per shape
//     and cached); TF32 off by default (set_allow_tf32 or ORBIT_CUDA_TF32=1 turn it on);
//   - everything else by the engine's own kernels (engine/cuda/kernels/), which are plain C++ run on
//     the GPU here and on the host by the tests, against the CPU backend;
//   - CUDA, cuBLAS and cuDNN errors become orbit::Error naming the call, file and line.
// The backend is created on first use of a CUDA device (backend(Device::cuda(0))); without a usable
// GPU that use throws with CUDA's own reason (no device, driver too old, ...).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "engine/backend.h"

namespace orbit::cuda {

// Throws orbit::Error when no CUDA device is usable.
std::unique_ptr<Backend> make_backend();

// The number of usable CUDA devices (0 when there is no driver or no device).
int device_count();

struct MemoryStats {
  size_t allocated = 0;       // bytes held by live tensors
  size_t cached = 0;          // bytes of freed blocks kept for reuse
  size_t peak_allocated = 0;  // the largest `allocated` seen
  size_t device_mallocs = 0;  // cudaMalloc calls so far (reuse keeps this low)
};
MemoryStats memory_stats();
// Restarts the peak (peak_allocated = allocated now), so a measurement sees its own peak.
void reset_peak_memory();

// Waits until all work queued on the backend's stream has finished (for timing).
void synchronize();

// GPU time between start() and stop_ms() on the backend's stream, from a pair of CUDA events;
// stop_ms() waits for the stop event and returns milliseconds.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  double stop_ms();

 private:
  void* start_ = nullptr;  // cudaEvent_t
  void* stop_ = nullptr;
};

// Marks the region a profiler started with "capture from start off" records (cudaProfilerStart /
// cudaProfilerStop), for example `ncu --profile-from-start off`; without a profiler attached they do
// nothing. orbit_bench_cuda --profile 1 wraps one training step in them.
void profiler_start();
void profiler_stop();

// TF32 tensor-core math for float32 GEMM (cuBLAS) and convolutions (cuDNN): faster, but inputs are
// rounded to a 10-bit mantissa, so results differ from the CPU's by ~1e-3 relative. Off by default
// (full float32 arithmetic); ORBIT_CUDA_TF32=1 in the environment turns it on (read once, the first
// time the setting is needed, unless set_allow_tf32 was called before). float64 is never affected.
// Takes effect for the GEMMs and convolutions issued after the call.
void set_allow_tf32(bool on);
bool allow_tf32();

// How conv2d chooses cuDNN's algorithm for each shape (once; the choice is cached), among the
// algorithms cuDNN's heuristics call usable (engine/cuda/cuda_conv.cu has the details):
//   Deterministic  the best-ranked deterministic one (the default): the same results on every run;
//   Heuristic      the best-ranked one, deterministic or not (PyTorch's default choice);
//   Search         each is run and timed once on the first call of a shape and the fastest is kept
//                  (PyTorch's cudnn.benchmark = True); results can differ in the last bits between runs.
// ORBIT_CUDA_CONV_ALGO=deterministic|heuristic|search in the environment sets it (read at first use,
// unless set_conv_algo_policy was called before); an unknown name is an error naming it.
enum class ConvAlgoPolicy { Deterministic = 0, Heuristic = 1, Search = 2 };
void set_conv_algo_policy(ConvAlgoPolicy policy);
ConvAlgoPolicy conv_algo_policy();
ConvAlgoPolicy parse_conv_algo_policy(const std::string& name);  // throws orbit::Error on any other name
const char* conv_algo_policy_name(ConvAlgoPolicy policy);

// Layers computed through cuDNN instead of the engine's own kernels: batch norm (training forward and
// backward), average pooling (forward, and adaptive average pooling where the input divides evenly
// into the output) and softmax / log-softmax (forward and backward). None by default: the own kernels
// are the ones checked against the CPU backend on every machine. ORBIT_CUDA_CUDNN in the environment
// (read at first use, unless set_cudnn_layers was called before) takes "none", "all" or a comma list
// such as "bn,softmax"; orbit_bench_cuda --cudnn takes the same, to measure which is faster on a GPU.
// Max pooling always uses the own kernels (see engine/cuda/cuda_cudnn_layers.cu for why).
enum CudnnLayer : unsigned { kCudnnBatchNorm = 1u, kCudnnPooling = 2u, kCudnnSoftmax = 4u };
constexpr unsigned kCudnnAllLayers = kCudnnBatchNorm | kCudnnPooling | kCudnnSoftmax;
void set_cudnn_layers(unsigned mask);  // a mask of CudnnLayer bits
unsigned cudnn_layers();
bool use_cudnn(CudnnLayer layer);
// "none" or "" -> 0, "all" -> kCudnnAllLayers, "bn,pool,softmax" (any subset) -> those bits; anything
// else throws orbit::Error naming the word and what is accepted.
unsigned parse_cudnn_layers(const std::string& spec);

}  // namespace orbit::cuda

// The CUDA backend (built when the CUDA toolkit is found; see CMakeLists.txt, ORBIT_CUDA). This first
// part gives tensors a GPU device: a caching allocator, host <-> device copies, fill and copy
// (strided, with dtype conversion), and CUDA errors as exceptions naming the call, file and line.
// The other kernels are not on the GPU yet: calling one throws an error naming it.
//
// The backend is created on first use of a CUDA device (backend(Device::cuda(i))); without a usable
// GPU that use throws with CUDA's own reason (no device, driver too old, ...).
#pragma once

#include <cstddef>
#include <memory>

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

}  // namespace orbit::cuda

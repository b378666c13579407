#include "engine/backend.h"

#include <array>
#include <mutex>

#include "engine/cpu/cpu_backend.h"
#ifdef ORBIT_WITH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace orbit {

namespace {
std::array<std::unique_ptr<Backend>, 2>& registry() {
  static std::array<std::unique_ptr<Backend>, 2> r = [] {
    std::array<std::unique_ptr<Backend>, 2> init;
    init[static_cast<int>(DeviceType::CPU)] = std::make_unique<cpu::CpuBackend>();
    return init;
  }();
  return r;
}
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

Backend& backend(Device device) {
  auto& r = registry();
  Backend* b = r[static_cast<int>(device.type)].get();
#ifdef ORBIT_WITH_CUDA
  if (b == nullptr && device.type == DeviceType::CUDA) {  // created on first use; throws without a GPU
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto& slot = r[static_cast<int>(DeviceType::CUDA)];
    if (!slot) slot = cuda::make_backend();
    b = slot.get();
  }
  ORBIT_CHECK(device.type != DeviceType::CUDA || device.index == 0, "device ", device.str(),
              ": the CUDA backend supports cuda:0 only so far");
#endif
  ORBIT_CHECK(b != nullptr, "no backend for device ", device.str(),
              ": this build of Orbit has no CUDA backend (build with CUDA=1 on a machine with the "
              "CUDA toolkit)");
  return *b;
}

void register_backend(DeviceType type, std::unique_ptr<Backend> b) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[static_cast<int>(type)] = std::move(b);
}

bool has_backend(DeviceType type) { return registry()[static_cast<int>(type)] != nullptr; }

}  // namespace orbit

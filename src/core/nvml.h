#pragma once
// NVML (the driver's management library), loaded at run time with dlopen so that the binary
// starts on machines without an NVIDIA driver. Used to read how much VRAM the process and the
// device really use, which is how the VRAM budget is checked.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moe {

struct NvmlDevice {
  unsigned index = 0;
  std::string name;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
};

class Nvml {
 public:
  // The loaded library, or nullptr when there is no driver (reason() says why).
  static const Nvml* get();
  static const std::string& unavailable_reason();

  std::vector<NvmlDevice> devices() const;

 private:
  Nvml() = default;
  struct Api;
  const Api* api_ = nullptr;
};

}  // namespace moe

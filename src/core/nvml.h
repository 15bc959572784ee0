#pragma once
// NVML (the driver's management library), loaded at run time with dlopen so that the binary
// starts on machines without an NVIDIA driver. Used to read how much VRAM the process and the
// device really use, which is how the VRAM budget is checked.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
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

// The memory in use on the first GPU now; nullopt without a driver or a device.
std::optional<uint64_t> first_gpu_memory_used();

// The most memory NVML sees in use on the first GPU while this object lives, sampled on a
// thread of its own every `period` (a sample takes microseconds; a long period keeps it from
// disturbing the CPU's parallel jobs); nothing where there is no driver. What a process holds
// is peak() less baseline() where nothing else runs on the device.
class NvmlPeakSampler {
 public:
  explicit NvmlPeakSampler(std::chrono::milliseconds period = std::chrono::milliseconds(50));
  ~NvmlPeakSampler();
  NvmlPeakSampler(const NvmlPeakSampler&) = delete;
  NvmlPeakSampler& operator=(const NvmlPeakSampler&) = delete;

  std::optional<uint64_t> baseline() const { return baseline_; }  // when it started
  std::optional<uint64_t> peak() const;                            // so far, taking one more sample

 private:
  std::optional<uint64_t> baseline_;
  std::atomic<uint64_t> peak_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace moe

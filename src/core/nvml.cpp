#include "core/nvml.h"

#include <dlfcn.h>

#include <algorithm>
#include <mutex>

namespace moe {

// The few NVML entry points we use, declared by hand (no NVML header needed at build time).
struct Nvml::Api {
  using Handle = void*;
  struct Memory {
    unsigned long long total, free, used;
  };
  int (*init)() = nullptr;
  int (*device_count)(unsigned*) = nullptr;
  int (*device_by_index)(unsigned, Handle*) = nullptr;
  int (*device_name)(Handle, char*, unsigned) = nullptr;
  int (*device_memory)(Handle, Memory*) = nullptr;
};

namespace {

std::string g_reason;

template <typename F>
bool load(void* lib, const char* symbol, F*& out) {
  out = reinterpret_cast<F*>(dlsym(lib, symbol));
  if (!out) g_reason = std::string("libnvidia-ml.so.1 lacks ") + symbol;
  return out != nullptr;
}

}  // namespace

const Nvml* Nvml::get() {
  static std::once_flag once;
  static Nvml instance;
  static Api api;
  static bool ok = false;
  std::call_once(once, [] {
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      g_reason = "no NVIDIA driver (libnvidia-ml.so.1 not found)";
      return;
    }
    ok = load(lib, "nvmlInit_v2", api.init) && load(lib, "nvmlDeviceGetCount_v2", api.device_count) &&
         load(lib, "nvmlDeviceGetHandleByIndex_v2", api.device_by_index) &&
         load(lib, "nvmlDeviceGetName", api.device_name) && load(lib, "nvmlDeviceGetMemoryInfo", api.device_memory);
    if (ok && api.init() != 0) {
      g_reason = "nvmlInit failed (driver not loaded?)";
      ok = false;
    }
    instance.api_ = &api;
  });
  return ok ? &instance : nullptr;
}

const std::string& Nvml::unavailable_reason() {
  get();
  return g_reason;
}

std::vector<NvmlDevice> Nvml::devices() const {
  std::vector<NvmlDevice> out;
  unsigned count = 0;
  if (api_->device_count(&count) != 0) return out;
  for (unsigned i = 0; i < count; ++i) {
    Api::Handle h = nullptr;
    if (api_->device_by_index(i, &h) != 0) continue;
    NvmlDevice d;
    d.index = i;
    char name[96] = {};
    if (api_->device_name(h, name, sizeof name) == 0) d.name = name;
    Api::Memory mem{};
    if (api_->device_memory(h, &mem) == 0) {
      d.total_bytes = mem.total;
      d.used_bytes = mem.used;
    }
    out.push_back(d);
  }
  return out;
}

std::optional<uint64_t> first_gpu_memory_used() {
  const Nvml* nvml = Nvml::get();
  if (!nvml) return std::nullopt;
  const auto devices = nvml->devices();
  if (devices.empty()) return std::nullopt;
  return devices.front().used_bytes;
}

NvmlPeakSampler::NvmlPeakSampler(std::chrono::milliseconds period) : baseline_(first_gpu_memory_used()) {
  if (!baseline_) return;
  peak_ = *baseline_;
  thread_ = std::thread([this, period] {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
      if (const auto used = first_gpu_memory_used()) peak_ = std::max(peak_.load(), *used);
    }
  });
}

NvmlPeakSampler::~NvmlPeakSampler() {
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<uint64_t> NvmlPeakSampler::peak() const {
  if (!baseline_) return std::nullopt;
  const auto now = first_gpu_memory_used();
  return std::max(peak_.load(), now.value_or(0));
}

}  // namespace moe

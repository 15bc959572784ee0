// moeserve devices: what this machine offers: CPU SIMD level and GPUs (if any driver is present).
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "core/cpu_features.h"
#include "core/nvml.h"
#include "core/units.h"
#ifdef MOE_HAVE_CUDA
#include "ops/cuda/device.h"
#endif

namespace moe::cli {

void add_devices_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("devices", "List the CPU's SIMD support and the GPUs this build can use");
  cmd->callback([] {
    const auto& cpu = cpu_features();
    std::printf("cpu   %s, %u hardware threads, %s; kernels use %s\n", cpu.brand.empty() ? "unknown" : cpu.brand.c_str(),
                std::thread::hardware_concurrency(), describe_cpu().c_str(),
                std::string(simd_level_name(active_simd_level())).c_str());
#ifdef MOE_HAVE_CUDA
    const auto list = cuda::list_gpus();
    std::printf("cuda  runtime %d, driver %d\n", list.runtime_version, list.driver_version);
    for (const auto& g : list.gpus) {
      std::printf("gpu %d  %s, sm_%d%d, %d SMs, %s total, %s free, %.0f GB/s peak\n", g.index, g.name.c_str(),
                  g.cc_major, g.cc_minor, g.multiprocessors, format_bytes(g.total_bytes).c_str(),
                  format_bytes(g.free_bytes).c_str(), g.memory_gb_s);
    }
    if (list.gpus.empty()) std::printf("gpu   none (%s); running on the CPU\n", list.reason.c_str());
#else
    std::printf("gpu   none (built without CUDA); running on the CPU\n");
#endif
    if (const Nvml* nvml = Nvml::get()) {
      for (const auto& d : nvml->devices()) {
        std::printf("nvml %u  %s, %s used of %s\n", d.index, d.name.c_str(), format_bytes(d.used_bytes).c_str(),
                    format_bytes(d.total_bytes).c_str());
      }
    } else {
      std::printf("nvml  unavailable: %s\n", Nvml::unavailable_reason().c_str());
    }
  });
}

}  // namespace moe::cli

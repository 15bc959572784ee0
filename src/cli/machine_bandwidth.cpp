#include "cli/machine_bandwidth.h"

#include "core/log.h"
#include "core/memory_bandwidth.h"
#ifdef MOE_HAVE_CUDA
#include "ops/cuda/device.h"
#endif

namespace moe::cli {

MachineBandwidth machine_bandwidth(const MachineBandwidth& given, ThreadPool& pool, std::optional<int> gpu,
                                   bool measure_link) {
  MachineBandwidth bw = given;
  if (bw.ram_gb_s <= 0) {
    bw.ram_gb_s = measure_ram_read_gb_s(pool);
    spdlog::info("RAM read at {:.1f} GB/s on {} threads (measured; --ram-bw sets it)", bw.ram_gb_s, pool.size());
  }
#ifdef MOE_HAVE_CUDA
  if (gpu && bw.gpu_gb_s <= 0) {
    const auto list = cuda::list_gpus();
    if (*gpu < int(list.gpus.size())) bw.gpu_gb_s = list.gpus[size_t(*gpu)].memory_gb_s;
  }
  if (gpu && measure_link && bw.pcie_gb_s <= 0) {
    bw.pcie_gb_s = cuda::measure_host_read_gb_s(*gpu);
    spdlog::info("PCIe read at {:.1f} GB/s (the copy engine from pinned memory, measured; --pcie-bw sets it)",
                 bw.pcie_gb_s);
  }
#else
  (void)gpu, (void)measure_link;
#endif
  return bw;
}

}  // namespace moe::cli

#pragma once
// CUDA devices as the runtime sees them. Callable on machines without a driver: then the list
// is empty and `reason` says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moe::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;  // compute capability
  uint64_t total_bytes = 0, free_bytes = 0;
  int multiprocessors = 0;
  double memory_gb_s = 0;  // peak memory bandwidth (peak_memory_gb_s)
};

struct GpuList {
  std::vector<GpuInfo> gpus;
  std::string reason;  // why the list is empty, if it is
  int runtime_version = 0, driver_version = 0;
};

GpuList list_gpus();

// A device's peak memory bandwidth in GB/s from what the driver reports (two transfers a
// memory clock over the bus width); 0 where it reports nothing.
double peak_memory_gb_s(int device);

// The link's read bandwidth in GB/s: the best of a few copies of `bytes` from pinned host memory
// into device memory by the copy engine (what the GPU's reads of host memory can reach); 0 where
// the device cannot be used.
double measure_host_read_gb_s(int device, size_t bytes = size_t(64) << 20, int copies = 5);

}  // namespace moe::cuda

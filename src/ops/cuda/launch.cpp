#include "ops/cuda/launch.cuh"

namespace moe::cuda {

int device_compute_major() {
  constexpr int kMaxDevices = 64;
  thread_local int known[kMaxDevices] = {};  // the major version + 1; 0: not asked yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return 0;
  if (known[device] == 0) {
    int major = 0;
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess;
    known[device] = (ok ? major : 0) + 1;
  }
  return known[device] - 1;
}

}  // namespace moe::cuda

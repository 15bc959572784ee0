#include "ops/cuda/launch.cuh"

namespace moe::cuda {

bool device_has_pdl() {
  constexpr int kMaxDevices = 64;
  thread_local int known[kMaxDevices] = {};  // 0: not asked yet, 1: no, 2: yes
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return false;
  if (known[device] == 0) {
    int major = 0;
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess;
    known[device] = ok && major >= 9 ? 2 : 1;
  }
  return known[device] == 2;
}

}  // namespace moe::cuda

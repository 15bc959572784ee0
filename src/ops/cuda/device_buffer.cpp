#include "ops/cuda/device_buffer.h"

#include "ops/cuda/cuda_check.h"

namespace moe::cuda::detail {

void* DeviceAllocator::allocate(size_t bytes) {
  void* p = nullptr;
  MOE_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void DeviceAllocator::release(void* p) noexcept { cudaFree(p); }

void* PinnedAllocator::allocate(size_t bytes) {
  void* p = nullptr;
  MOE_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  return p;
}

void PinnedAllocator::release(void* p) noexcept { cudaFreeHost(p); }

}  // namespace moe::cuda::detail

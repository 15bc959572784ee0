#pragma once
// Asynchronous copies from global to shared memory (cp.async, sm_80 and later), for the kernels
// that stage tiles while they compute on the previous ones (the prefill GEMMs, prefill attention).
#include <cstdint>

namespace moe::cuda {

// Copies `size` bytes (4, 8 or 16; both addresses aligned to it) from global to shared memory
// asynchronously; only the first src_bytes are read, the rest is zero-filled.
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, int size, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = unsigned(__cvta_generic_to_shared(smem));
  if (size == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes));
  } else if (size == 8) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes));
  }
#else
  __trap();  // the callers keep devices below compute capability 8.0 on other kernels
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;");
#endif
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
#endif
}

}  // namespace moe::cuda

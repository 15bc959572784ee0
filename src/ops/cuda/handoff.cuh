#pragma once
// The GPU's wait for the CPU's sum of a hybrid layer (handoff.h), shared by add_cpu_sum's kernel
// and the MoE combine that adds the sum itself (activations.cu).
#include <cstdint>

#include "ops/cuda/handoff.h"

namespace moe::cuda {

__device__ __forceinline__ uint64_t gpu_clock_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Every thread of the block calls it; returns once the CPU's `done` of `layer` is up and its sum
// readable. Block 0 raises h.waited[layer] if it had to wait and stamps when it began and when
// it saw the flag (h.times; both optional).
__device__ inline void wait_for_cpu_sum(const ExpertHandoff& h, int layer) {
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    const uint64_t began = gpu_clock_ns();
    const volatile unsigned* done = h.done + layer;
    if (*done == 0 && blockIdx.x == 0 && h.waited) *reinterpret_cast<volatile unsigned*>(h.waited + layer) = 1;
    while (*done == 0) __nanosleep(256);
    __threadfence_system();
    if (blockIdx.x == 0 && h.times) {
      h.times[kHandoffTimes * layer + 1] = began;
      h.times[kHandoffTimes * layer + 2] = gpu_clock_ns();
    }
  }
  __syncthreads();
}

}  // namespace moe::cuda

// The GPU side of the MoE hand-off (handoff.h). Host-mapped memory is read with volatile
// loads: the CPU writes it while the kernel runs, and nothing may cache an old value.
#include "ops/cuda/handoff.h"
#include "ops/cuda/last_block.cuh"
#include "ops/cuda/launch.cuh"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int32_t kCpu = -1, kOtherLaunch = -2;  // the expert kernels' "zero row" and "skip" ids

__global__ void __launch_bounds__(kThreads)
    publish_kernel(const float* __restrict__ u, int n, int64_t d, int32_t* __restrict__ experts,
                   const float* __restrict__ weights, int k, const int32_t* __restrict__ slot_of, ExpertHandoff h,
                   int layer, unsigned* counter, int pcie_slots, int32_t* __restrict__ ram_ids,
                   const int32_t* __restrict__ pcie_limit) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t stride = int64_t(gridDim.x) * kThreads, first = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const int pcie_most = pcie_limit ? min(pcie_slots, max(0, *pcie_limit)) : pcie_slots;
  for (int64_t t = first; t < n; t += stride) {  // a thread a token: its slots from the last rank up
    int pcie_left = pcie_most;
    for (int r = k - 1; r >= 0; --r) {
      const int64_t i = t * k + r;
      const int32_t e = experts[i], slot = slot_of[e];
      const bool over_pcie = slot < 0 && pcie_left > 0;
      pcie_left -= over_pcie ? 1 : 0;
      experts[i] = slot >= 0 ? slot : over_pcie ? kOtherLaunch : kCpu;
      h.experts[i] = slot >= 0 ? -1 : over_pcie ? -2 : e;
      h.weights[i] = weights[i];
      h.routed[i] = e;
      if (ram_ids) ram_ids[i] = over_pcie ? e : kOtherLaunch;
    }
  }
  // The rows as float4 where they are whole (d is a multiple of 4 for every model we run).
  const int64_t n4 = int64_t(n) * d / 4;
  const auto* u4 = reinterpret_cast<const float4*>(u);
  auto* h4 = reinterpret_cast<float4*>(h.u);
  for (int64_t i = first; i < n4; i += stride) h4[i] = u4[i];
  for (int64_t i = n4 * 4 + first; i < int64_t(n) * d; i += stride) h.u[i] = u[i];
  __threadfence_system();  // this block's writes reach host memory before the flag can
  if (last_to_arrive(counter, gridDim.x) && threadIdx.x == 0) {
    __threadfence_system();
    *reinterpret_cast<volatile unsigned*>(h.ready + layer) = 1;
  }
}

__global__ void __launch_bounds__(kThreads) add_sum_kernel(ExpertHandoff h, int layer, int64_t count, float* x) {
  wait_for_previous_kernels();
  allow_next_kernel();
  if (threadIdx.x == 0) {
    const volatile unsigned* done = h.done + layer;
    if (*done == 0 && blockIdx.x == 0 && h.waited) *reinterpret_cast<volatile unsigned*>(h.waited + layer) = 1;
    while (*done == 0) __nanosleep(256);
    __threadfence_system();
  }
  __syncthreads();
  const volatile float* sum = h.sum;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < count; i += int64_t(gridDim.x) * kThreads) {
    x[i] += sum[i];
  }
}

unsigned blocks_for(int64_t count) {
  return unsigned(std::min<int64_t>(64, std::max<int64_t>(1, (count + kThreads * 4 - 1) / (kThreads * 4))));
}

}  // namespace

cudaError_t publish_experts(const float* u, int n, int64_t d, int32_t* experts, const float* weights, int k,
                            const int32_t* slot_of, const ExpertHandoff& handoff, int layer, unsigned* counter,
                            cudaStream_t stream, int pcie_slots, int32_t* ram_ids, const int32_t* pcie_limit) {
  if (n < 1 || k < 1 || (pcie_slots > 0 && ram_ids == nullptr)) return cudaErrorInvalidValue;
  launch(publish_kernel, blocks_for(int64_t(n) * d / 4), kThreads, 0, stream, u, n, d, experts, weights, k, slot_of,
         handoff, layer, counter, pcie_slots, ram_ids, pcie_limit);
  return cudaGetLastError();
}

cudaError_t add_cpu_sum(const ExpertHandoff& handoff, int layer, int n, int64_t d, float* x, cudaStream_t stream) {
  if (n < 1) return cudaErrorInvalidValue;
  launch(add_sum_kernel, blocks_for(int64_t(n) * d), kThreads, 0, stream, handoff, layer, int64_t(n) * d, x);
  return cudaGetLastError();
}

}  // namespace moe::cuda

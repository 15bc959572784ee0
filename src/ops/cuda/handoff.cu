// The GPU side of the MoE hand-off (handoff.h). Host-mapped memory is read with volatile
// loads: the CPU writes it while the kernel runs, and nothing may cache an old value.
#include "ops/cuda/handoff.h"
#include "ops/cuda/last_block.cuh"
#include "ops/cuda/launch.cuh"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int32_t kCpu = -1, kOtherLaunch = -2;  // the expert kernels' "zero row" and "skip" ids

// The slot of the least recently used routed expert the step does not use (stamp < tick),
// the lowest such slot on ties; -1 if the step uses every slot. One warp, the same answer in
// every lane.
__device__ int least_recently_used(const ExpertSlots& c, uint32_t tick) {
  unsigned long long best = ~0ull;  // (stamp << 32) | slot
  for (int s = int(threadIdx.x); s < c.n_slots; s += 32) {
    const uint32_t stamp = c.stamp[s];
    if (stamp < tick) best = min(best, (static_cast<unsigned long long>(stamp) << 32) | unsigned(s));
  }
  for (int offset = 16; offset > 0; offset /= 2) best = min(best, __shfl_xor_sync(~0u, best, offset));
  return best == ~0ull ? -1 : int(best & 0xffffffffu);
}

// The routing with the cache (warp 0 of block 0): the hits of every token mark their slots
// first, so that no later pick of the step evicts one; then each token's misses, from its last
// rank up, take the least recently used slots for its PCIe share. Lane 0 writes; the other
// lanes search the stamps. n is small (a decode step's tokens).
__device__ void route_with_cache(int n, int k, int32_t* experts, const float* weights, int32_t* slot_of,
                                 const ExpertHandoff& h, int pcie_most, int32_t* ram_ids, const ExpertSlots& c) {
  const int lane = int(threadIdx.x);
  const uint32_t tick = *c.tick + 1;
  for (int i = lane; i < n * k; i += 32) {
    const int32_t slot = slot_of[experts[i]];
    if (slot >= 0 && slot < c.n_slots) c.stamp[slot] = tick;  // (a shared expert's slot is past them)
  }
  __syncwarp();
  for (int t = 0; t < n; ++t) {
    int pcie_left = pcie_most;
    for (int r = k - 1; r >= 0; --r) {
      const int i = t * k + r;
      const int32_t e = experts[i];
      int32_t slot = slot_of[e], cpu_id = slot >= 0 ? -1 : e, ram = kOtherLaunch;
      if (slot < 0 && pcie_left > 0) {
        const int victim = least_recently_used(c, tick);
        if (victim >= 0) {
          --pcie_left;
          if (lane == 0) {
            const int32_t out = c.expert_of[victim];
            if (out >= 0) slot_of[out] = -1;
            slot_of[e] = victim;
            c.expert_of[victim] = e;
            c.stamp[victim] = tick;
          }
          slot = victim, cpu_id = -2, ram = e;
        }
      }
      __syncwarp();  // every lane has read experts[i] and the tables before lane 0 writes on
      if (lane == 0) {
        experts[i] = slot >= 0 ? slot : kCpu;
        h.experts[i] = cpu_id;
        h.weights[i] = weights[i];
        if (ram_ids) ram_ids[i] = ram;
      }
      __syncwarp();
    }
  }
  if (lane == 0) *c.tick = tick;
}

__global__ void __launch_bounds__(kThreads)
    publish_kernel(const float* __restrict__ u, int n, int64_t d, int32_t* __restrict__ experts,
                   const float* __restrict__ weights, int k, int32_t* __restrict__ slot_of, ExpertHandoff h,
                   int layer, unsigned* counter, int pcie_slots, int32_t* __restrict__ ram_ids,
                   const int32_t* __restrict__ pcie_limit, ExpertSlots cache) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t stride = int64_t(gridDim.x) * kThreads, first = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const int pcie_most = pcie_limit ? min(pcie_slots, max(0, *pcie_limit)) : pcie_slots;
  if (cache.n_slots > 0) {
    if (blockIdx.x == 0 && threadIdx.x < 32) route_with_cache(n, k, experts, weights, slot_of, h, pcie_most, ram_ids, cache);
  } else {
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
        if (ram_ids) ram_ids[i] = over_pcie ? e : kOtherLaunch;
      }
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
                            int32_t* slot_of, const ExpertHandoff& handoff, int layer, unsigned* counter,
                            cudaStream_t stream, int pcie_slots, int32_t* ram_ids, const int32_t* pcie_limit,
                            const ExpertSlots* cache) {
  if (n < 1 || k < 1 || (pcie_slots > 0 && ram_ids == nullptr)) return cudaErrorInvalidValue;
  if (cache && (n > 8 || cache->n_slots < 1)) return cudaErrorInvalidValue;  // one warp decides for every token
  launch(publish_kernel, blocks_for(int64_t(n) * d / 4), kThreads, 0, stream, u, n, d, experts, weights, k, slot_of,
         handoff, layer, counter, pcie_slots, ram_ids, pcie_limit, cache ? *cache : ExpertSlots{});
  return cudaGetLastError();
}

cudaError_t add_cpu_sum(const ExpertHandoff& handoff, int layer, int n, int64_t d, float* x, cudaStream_t stream) {
  if (n < 1) return cudaErrorInvalidValue;
  launch(add_sum_kernel, blocks_for(int64_t(n) * d), kThreads, 0, stream, handoff, layer, int64_t(n) * d, x);
  return cudaGetLastError();
}

}  // namespace moe::cuda

// The GPU side of the MoE hand-off (handoff.h). Host-mapped memory is read with volatile
// loads: the CPU writes it while the kernel runs, and nothing may cache an old value.
#include "ops/cuda/handoff.h"
#include "ops/cuda/handoff.cuh"
#include "ops/cuda/last_block.cuh"
#include "ops/cuda/launch.cuh"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int32_t kCpu = -1, kOtherLaunch = -2;  // the expert kernels' "zero row" and "skip" ids

constexpr int kMaxCacheTokens = 8;    // tokens a step with the cache (one warp decides for all of them)

// The decisions are a warp's, a lane a rank of a token (k <= 32): each lane loads its expert
// and that expert's slot at once, so that a token costs two dependent loads, not two a rank.

// Of a token's `misses` picks not in VRAM, the most the GPU reads over PCIe: the table's entry
// (the PCIe balance's share of them, or a fixed count), never more than pcie_slots.
struct PcieShare {
  int slots = 0;
  const int32_t* table = nullptr;  // [k + 1], optional
  __device__ int most(int misses) const { return table ? min(slots, max(0, table[misses])) : slots; }
};

// Lane r holds a token's rank r, `miss` where its expert is not in VRAM: whether the GPU reads
// it over PCIe (up to the share of the token's misses, from the last rank up).
__device__ bool read_over_pcie(bool miss, int k, const PcieShare& share) {
  const int lane = int(threadIdx.x % 32);
  const unsigned misses = __ballot_sync(~0u, miss && lane < k);
  const unsigned above = lane == 31 ? 0u : misses & (~0u << (lane + 1));  // misses at higher ranks
  return miss && __popc(above) < share.most(__popc(misses));
}

// A pick's outputs: the slot the expert products read (kCpu: a zero row; kOtherLaunch: the PCIe
// launch's), the CPU's expert id (-1: in VRAM, -2: over PCIe), the weight, the PCIe id.
__device__ void write_pick(int64_t i, int32_t slot, int32_t cpu_id, int32_t ram, int32_t* experts, const float* weights,
                           const ExpertHandoff& h, int32_t* ram_ids) {
  experts[i] = slot;
  h.experts[i] = cpu_id;
  h.weights[i] = weights[i];
  if (ram_ids) ram_ids[i] = ram;
}

// Without the cache: a warp a token.
__device__ void route_token(int64_t t, int k, int32_t* experts, const float* weights, const int32_t* slot_of,
                            const ExpertHandoff& h, const PcieShare& share, int32_t* ram_ids) {
  const int lane = int(threadIdx.x % 32);
  const int64_t i = t * k + lane;
  const int32_t e = lane < k ? experts[i] : 0, slot = lane < k ? slot_of[e] : 0;
  const bool over_pcie = read_over_pcie(slot < 0, k, share);
  if (lane < k) {
    write_pick(i, slot >= 0 ? slot : over_pcie ? kOtherLaunch : kCpu, slot >= 0 ? -1 : over_pcie ? -2 : e,
               over_pcie ? e : kOtherLaunch, experts, weights, h, ram_ids);
  }
}

// With the cache: warp 0 of block 0 for every token of the step, the slots' stamps and experts
// staged in shared memory. The hits of every token mark their slots first, so that no later
// pick of the step evicts one; then each token's PCIe share takes the least recently used
// slots the step does not use (the lowest slot on ties), in rank order from the last.
__device__ void route_with_cache(int n, int k, int32_t* experts, const float* weights, int32_t* slot_of,
                                 const ExpertHandoff& h, const PcieShare& share, int32_t* ram_ids,
                                 const ExpertSlots& c) {
  __shared__ uint32_t stamp[kMaxExpertSlots];
  __shared__ int32_t expert_of[kMaxExpertSlots];
  const int lane = int(threadIdx.x);
  const uint32_t tick = *c.tick + 1;
  for (int s = lane; s < c.n_slots; s += 32) stamp[s] = c.stamp[s], expert_of[s] = c.expert_of[s];
  int32_t e[kMaxCacheTokens], slot[kMaxCacheTokens];
#pragma unroll
  for (int t = 0; t < kMaxCacheTokens; ++t) {
    e[t] = t < n && lane < k ? experts[t * k + lane] : 0;
    slot[t] = t < n && lane < k ? slot_of[e[t]] : 0;
  }
  __syncwarp();
#pragma unroll
  for (int t = 0; t < kMaxCacheTokens; ++t) {
    // (A shared expert's slot is past the routed ones: never stamped, never evicted.)
    if (t < n && lane < k && slot[t] >= 0 && slot[t] < c.n_slots) stamp[slot[t]] = tick;
  }
  __syncwarp();
#pragma unroll
  for (int t = 0; t < kMaxCacheTokens; ++t) {
    if (t >= n) break;
    // An expert an earlier token of the step brought in is a hit now (the only change a fill makes
    // to a slot another pick could hold: the step's own hits are never evicted).
    if (t > 0 && lane < k && slot[t] < 0) slot[t] = slot_of[e[t]];
    const bool fill = read_over_pcie(slot[t] < 0, k, share);
    int32_t cpu_id = slot[t] >= 0 ? -1 : e[t], ram = kOtherLaunch;
    for (unsigned todo = __ballot_sync(~0u, fill && lane < k); todo != 0;) {
      const int r = 31 - __clz(todo);  // the highest rank first
      todo &= ~(1u << r);
      unsigned long long best = ~0ull;  // (stamp << 32) | slot
      for (int s = lane; s < c.n_slots; s += 32) {
        if (stamp[s] < tick) best = min(best, (static_cast<unsigned long long>(stamp[s]) << 32) | unsigned(s));
      }
      for (int offset = 16; offset > 0; offset /= 2) best = min(best, __shfl_xor_sync(~0u, best, offset));
      if (best == ~0ull) break;  // the step uses every slot: the rest go to the CPU
      const int victim = int(best & 0xffffffffu);
      const int32_t in = __shfl_sync(~0u, e[t], r);
      if (lane == 0) {
        if (expert_of[victim] >= 0) slot_of[expert_of[victim]] = -1;
        slot_of[in] = victim;
        c.expert_of[victim] = in;
        expert_of[victim] = in;
        stamp[victim] = tick;
      }
      if (lane == r) slot[t] = victim, cpu_id = -2, ram = in;
      __syncwarp();
    }
    if (lane < k) write_pick(t * k + lane, slot[t] >= 0 ? slot[t] : kCpu, cpu_id, ram, experts, weights, h, ram_ids);
    __syncwarp();  // slot_of's changes before the next token reads it
  }
  for (int s = lane; s < c.n_slots; s += 32) c.stamp[s] = stamp[s];
  if (lane == 0) *c.tick = tick;
}

__global__ void __launch_bounds__(kThreads)
    publish_kernel(const float* __restrict__ u, int n, int64_t d, int32_t* __restrict__ experts,
                   const float* __restrict__ weights, int k, int32_t* __restrict__ slot_of, ExpertHandoff h,
                   int layer, unsigned* counter, int pcie_slots, int32_t* __restrict__ ram_ids,
                   const int32_t* __restrict__ pcie_table, ExpertSlots cache) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t stride = int64_t(gridDim.x) * kThreads, first = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const PcieShare share{.slots = pcie_slots, .table = pcie_table};
  if (cache.n_slots > 0) {
    if (blockIdx.x == 0 && threadIdx.x < 32) {
      route_with_cache(n, k, experts, weights, slot_of, h, share, ram_ids, cache);
    }
  } else {
    constexpr int kWarps = kThreads / 32;
    for (int64_t t = blockIdx.x * kWarps + threadIdx.x / 32; t < n; t += int64_t(gridDim.x) * kWarps) {
      route_token(t, k, experts, weights, slot_of, h, share, ram_ids);
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
    if (h.times) h.times[kHandoffTimes * layer] = gpu_clock_ns();
    __threadfence_system();
    *reinterpret_cast<volatile unsigned*>(h.ready + layer) = 1;
  }
}

__global__ void __launch_bounds__(kThreads) add_sum_kernel(ExpertHandoff h, int layer, int64_t count, float* x) {
  wait_for_previous_kernels();
  allow_next_kernel();
  wait_for_cpu_sum(h, layer);
  // A read of host memory is a trip over PCIe; a thread's reads of the sum go out together, kAhead
  // at a time, before any of its adds (x might alias the sum: a read after an add would wait).
  constexpr int kAhead = 4;
  const volatile float* sum = h.sum;
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t i0 = int64_t(blockIdx.x) * kThreads + threadIdx.x; i0 < count; i0 += kAhead * stride) {
    float s[kAhead];
#pragma unroll
    for (int j = 0; j < kAhead; ++j) s[j] = i0 + j * stride < count ? sum[i0 + j * stride] : 0.0f;
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      if (i0 + j * stride < count) x[i0 + j * stride] += s[j];
    }
  }
}

unsigned blocks_for(int64_t count) {
  return unsigned(std::min<int64_t>(64, std::max<int64_t>(1, (count + kThreads * 4 - 1) / (kThreads * 4))));
}

}  // namespace

cudaError_t publish_experts(const float* u, int n, int64_t d, int32_t* experts, const float* weights, int k,
                            int32_t* slot_of, const ExpertHandoff& handoff, int layer, unsigned* counter,
                            cudaStream_t stream, int pcie_slots, int32_t* ram_ids, const int32_t* pcie_table,
                            const ExpertSlots* cache) {
  if (n < 1 || k < 1 || (pcie_slots > 0 && ram_ids == nullptr)) return cudaErrorInvalidValue;
  if (k > 32) return cudaErrorInvalidValue;  // a lane a rank
  if (cache && (n > kMaxCacheTokens || cache->n_slots < 1 || cache->n_slots > kMaxExpertSlots)) {
    return cudaErrorInvalidValue;
  }
  launch(publish_kernel, blocks_for(int64_t(n) * d / 4), kThreads, 0, stream, u, n, d, experts, weights, k, slot_of,
         handoff, layer, counter, pcie_slots, ram_ids, pcie_table, cache ? *cache : ExpertSlots{});
  return cudaGetLastError();
}

cudaError_t add_cpu_sum(const ExpertHandoff& handoff, int layer, int n, int64_t d, float* x, cudaStream_t stream) {
  if (n < 1) return cudaErrorInvalidValue;
  // (A value a thread, 8 blocks for a decode token, took 20.7 us a launch against 11.0 for 2
  // blocks reading their four values one after another, in bench_cuda_decode_ops on the H200
  // machine: each block polls the flag and fences. These 2 blocks read theirs together.)
  launch(add_sum_kernel, blocks_for(int64_t(n) * d), kThreads, 0, stream, handoff, layer, int64_t(n) * d, x);
  return cudaGetLastError();
}

}  // namespace moe::cuda

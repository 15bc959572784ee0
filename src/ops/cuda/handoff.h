#pragma once
// The MoE hand-off between a GPU stream and a CPU thread, in host memory both can address
// (pinned, mapped: the GPU reads and writes it over PCIe, no copy engine involved), so that a
// whole decode step, hand-offs included, stays one CUDA graph.
//
// Per hybrid layer, in stream order:
//   publish_experts(): after routing, each (token, rank) slot goes to the GPU (its expert's
//     VRAM slot, in place) or to the CPU (the expert id, with its weight and the token's
//     normed row); then the layer's `ready` flag is raised.
//   ... the GPU computes its experts while the CPU thread, which watched `ready`, computes the
//     others and writes their weighted sum, then raises `done` ...
//   add_cpu_sum(): waits for `done`, then x += the CPU's sum (in a decode step the MoE combine
//     does this itself: CombineRows::cpu in activations.h, wait_for_cpu_sum() in handoff.cuh).
// The flags are zeroed by the host before each step, so the same graph serves every step.
#include <cstdint>

#include <cuda_runtime.h>

namespace moe::cuda {

// Device-usable pointers into host-mapped memory (the host reads and writes the same bytes).
struct ExpertHandoff {
  float* u = nullptr;          // [tokens][d] the normed rows the CPU's experts read
  int32_t* experts = nullptr;  // [tokens][k] the CPU's expert ids; -1: in VRAM, -2: read over PCIe
  float* weights = nullptr;    // [tokens][k]
  float* sum = nullptr;        // [tokens][d] the CPU's weighted sum of its experts
  unsigned* ready = nullptr;   // [hybrid layers] set by the GPU: u, experts and weights are there
  unsigned* done = nullptr;    // [hybrid layers] set by the CPU: sum is there
  // [hybrid layers] set by the GPU when its add found `done` down (it waited for the CPU): what
  // the PCIe share's balance (engine/pcie_balance.h) steers by. Optional.
  unsigned* waited = nullptr;
  // [hybrid layers][kHandoffTimes] the GPU's clock (ns) when it raised `ready`, when its add
  // began (the GPU's own experts of the layer done) and when the add saw `done`: where a step's
  // time goes on the GPU's side (CpuExperts::add_gpu_timeline). Optional.
  uint64_t* times = nullptr;
};
constexpr int kHandoffTimes = 3;

// A hybrid layer's VRAM experts as a cache that follows the routing (device memory; the host
// model of the policy, with its reasons, is engine/expert_cache.h). Routed slots 0..n_slots-1
// each hold expert_of[slot], last used in step stamp[slot] of the layer's *tick steps.
constexpr int kMaxExpertSlots = 1024;  // a layer's routed slots the cache can follow
struct ExpertSlots {
  int32_t* expert_of = nullptr;  // [n_slots]
  uint32_t* stamp = nullptr;     // [n_slots]
  uint32_t* tick = nullptr;      // one
  int n_slots = 0;
};

// experts: [n][k] routed ids (device), rewritten in place to VRAM slots (-1: the CPU's, -2:
// read over PCIe); slot_of: [n_expert + 1] an expert's VRAM slot or -1 (device). weights [n][k],
// u [n][d]. With pcie_slots > 0, up to that many of each token's slots not in VRAM (its last
// ones) are the GPU's to compute from RAM over PCIe: their expert ids go to ram_ids [n][k] (-2
// elsewhere) and the CPU skips them; pcie_table (device ints [k + 1], optional) lowers that
// number at run time, entry m for a token with m slots not in VRAM (engine/pcie_balance.h: a
// share of them, or a fixed count), so that a captured graph follows a share the host changes
// between steps. counter: a device unsigned, zero, left zero (the last block raises the flag).
// k <= 32.
// With `cache` (n <= 8 tokens, at most 1024 slots), a PCIe expert is instead copied into the least recently used
// slot the step does not use (slot_of and the cache updated here): its `experts` entry is that
// slot, its ram_ids entry the expert (fill_expert_slots() copies it before the products run).
cudaError_t publish_experts(const float* u, int n, int64_t d, int32_t* experts, const float* weights, int k,
                            int32_t* slot_of, const ExpertHandoff& handoff, int layer, unsigned* counter,
                            cudaStream_t stream, int pcie_slots = 0, int32_t* ram_ids = nullptr,
                            const int32_t* pcie_table = nullptr, const ExpertSlots* cache = nullptr);

// Waits for the CPU's `done` of `layer` (raising handoff.waited[layer], where there is one, if
// it had to), then x[n][d] += handoff.sum.
cudaError_t add_cpu_sum(const ExpertHandoff& handoff, int layer, int n, int64_t d, float* x, cudaStream_t stream);

}  // namespace moe::cuda

#pragma once
// The VRAM experts of a hybrid layer as a cache that follows the routing (issue 6 item 3): the
// host model of the policy the GPU runs in its publish kernel (ops/cuda/handoff.h,
// ExpertSlots), no CUDA in it. The GPU tests hold the kernel to this model decision by
// decision; the CPU tests measure the policy on routing of stated locality.
//
// Why this policy: copying a missed expert into VRAM and computing it on the CPU both read its
// 3.3 MB (Qwen3-Next) from host RAM, so a cache that copies every miss doubles the RAM traffic of
// its misses (measured: it lost, 34.9 against 48.3 t/s). But the GPU already reads some of the
// misses over PCIe itself (the PCIe experts): when that read lands in a slot instead of going
// straight into a product, the cache fills for free. So a step's routed experts found in a slot
// are hits (their slots marked used), up to `pcie_most` of each token's others (from its last
// rank up) go into the least recently used slots the step does not use, and the rest go to the
// CPU and stay in RAM. The admissions follow the PCIe share the balance sets (a share of each
// token's misses, counted when the token's turn comes: after the fills of the tokens before it).
#include <cstdint>
#include <span>
#include <vector>

#include "engine/routing_locality.h"

namespace moe {

class ExpertCache {
 public:
  static constexpr int32_t kCpu = -1;  // a pick the CPU computes

  // Slot s (of n_slots) starts holding expert s: the static placement the engine loads.
  ExpertCache(int n_expert, int n_slots);

  // Where a step's picks (routed[t * k + r]: token t's rank-r expert) are computed: the slot
  // (hit, or filled over PCIe this step) or kCpu. Updates the tables.
  struct Step {
    std::vector<int32_t> slot;
    std::vector<bool> filled;  // the pick's expert was copied into its slot this step
    int hits = 0, fills = 0;
  };
  Step step(std::span<const int32_t> routed, int k, int pcie_most);
  // The same with a token's PCIe share read from a table by its number of misses m (entry m of
  // k + 1: engine/pcie_balance.h), as the publish kernel reads it.
  Step step(std::span<const int32_t> routed, int k, std::span<const int32_t> pcie_table);

  int slot_of(int expert) const { return slot_of_[size_t(expert)]; }
  int expert_in(int slot) const { return expert_of_[size_t(slot)]; }
  int n_slots() const { return int(expert_of_.size()); }

 private:
  int least_recently_used() const;  // a slot the step does not use, the lowest on ties; -1: none

  std::vector<int32_t> slot_of_;    // [n_expert]
  std::vector<int32_t> expert_of_;  // [n_slots]
  std::vector<uint32_t> stamp_;     // [n_slots] the step that last used the slot
  uint32_t tick_ = 0;
};

// The policy's long run on one layer's routing of a stated locality: of a token's k picks, how
// many hit, were filled over PCIe, and fell to the CPU, on average, with `slots` slots and a
// PCIe share of `pcie_most` a token (counted after `warm_up` steps from the static placement).
struct CacheOutcome {
  double hits = 0, fills = 0, cpu = 0;
};
CacheOutcome simulate_cache(const RoutingLocality& locality, int slots, int pcie_most, int steps = 4000,
                            int warm_up = 1000);

}  // namespace moe

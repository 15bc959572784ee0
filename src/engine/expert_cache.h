#pragma once
// Which routed experts a GPU holds in each layer's VRAM slots, following the routing: the host
// side of the hybrid engine's expert cache (issue 6 item 3), no CUDA in it. The GPU side copies
// an expert's rows into a slot and keeps a table of expert -> slot; this class says which copies
// to start and when a slot may be used, and counts hits.
//
// Swaps are pipelined so that no decode step waits for a copy (docs/placement.md): observing a
// step's routing may start swaps; a started swap takes its slot out of use at once (the expert
// it held is no longer resident: the next step computes it elsewhere and never reads the slot)
// and the new expert becomes resident only when its copy is complete(). The policy is LRU over
// the experts a layer's tokens were routed to, with at most `max_swaps` copies started a layer a
// step (each is one expert's bytes over PCIe).
#include <cstdint>
#include <span>
#include <vector>

namespace moe {

class ExpertCache {
 public:
  // slots[layer]: VRAM slots of that layer (at most n_expert); slot s starts holding expert s,
  // the static placement the engine loads. admit_window: 0 copies in any expert a step misses;
  // W > 0 only one routed again within W steps of its last use (admission on a second use: fewer
  // copies of experts used once, each of which costs a copy's link time and evicts another).
  ExpertCache(int n_expert, std::vector<int> slots, int max_swaps, int admit_window = 0);

  struct Swap {
    int layer = 0, slot = 0;
    int expert_in = -1;   // to copy into the slot
    int expert_out = -1;  // the slot's expert until now (-1: none)
  };

  int n_layers() const { return int(layers_.size()); }
  // The slot holding `expert` ready to use, or -1 (not resident, or its copy not complete).
  int slot_of(int layer, int expert) const { return layers_[size_t(layer)].slot_of[size_t(expert)]; }

  // One step's routing of a layer (expert ids, any number of tokens; ids < 0 ignored): counts
  // hits against the experts resident now, updates recency, and returns the swaps started.
  std::vector<Swap> observe(int layer, std::span<const int32_t> routed);
  // The copy of a started swap has landed: its expert is resident in its slot.
  void complete(const Swap& swap);

  uint64_t hits() const { return hits_; }
  uint64_t picks() const { return picks_; }
  uint64_t swaps_started() const { return swaps_; }

 private:
  struct Layer {
    std::vector<int> slot_of;       // [n_expert]: ready slot or -1
    std::vector<int> held;          // [slots]: the expert a slot holds or is receiving, -1 if none
    std::vector<bool> pending;      // [slots]: a copy into the slot is under way
    std::vector<uint64_t> last;     // [n_expert]: the step each expert was last routed to (0: never)
    uint64_t step = 0;
  };
  std::vector<Layer> layers_;
  int max_swaps_, admit_window_;
  uint64_t hits_ = 0, picks_ = 0, swaps_ = 0;
};

}  // namespace moe

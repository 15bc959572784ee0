#include "engine/expert_cache.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

ExpertCache::ExpertCache(int n_expert, std::vector<int> slots, int max_swaps, int admit_window)
    : max_swaps_(max_swaps), admit_window_(admit_window) {
  if (n_expert < 1 || max_swaps < 0 || admit_window < 0) {
    fail("expert cache: {} experts, {} swaps a step, admission within {} steps", n_expert, max_swaps, admit_window);
  }
  for (int s : slots) {
    if (s < 0 || s > n_expert) fail("expert cache: {} slots for {} experts", s, n_expert);
    Layer L;
    L.slot_of.assign(size_t(n_expert), -1);
    L.held.resize(size_t(s));
    L.pending.assign(size_t(s), false);
    L.last.assign(size_t(n_expert), 0);
    for (int i = 0; i < s; ++i) L.held[size_t(i)] = i, L.slot_of[size_t(i)] = i;
    layers_.push_back(std::move(L));
  }
}

std::vector<ExpertCache::Swap> ExpertCache::observe(int layer, std::span<const int32_t> routed) {
  Layer& L = layers_.at(size_t(layer));
  const int n_expert = int(L.slot_of.size());
  L.step += 1;
  std::vector<int> missed;  // routed this step, not held (not even arriving), each once
  for (int32_t e : routed) {
    if (e < 0) continue;
    MOE_ASSERT(e < n_expert);
    picks_ += 1;
    hits_ += L.slot_of[size_t(e)] >= 0 ? 1 : 0;
    const bool held = L.slot_of[size_t(e)] >= 0 || std::find(L.held.begin(), L.held.end(), e) != L.held.end();
    const uint64_t previous = L.last[size_t(e)];
    const bool admitted = admit_window_ == 0 || (previous > 0 && L.step - previous <= uint64_t(admit_window_));
    if (!held && previous != L.step && admitted) missed.push_back(e);
    L.last[size_t(e)] = L.step;
  }
  std::vector<Swap> started;
  for (int e : missed) {
    if (int(started.size()) >= max_swaps_) break;
    // The victim: the least recently routed expert in a slot with no copy under way, and not
    // routed this step (evicting what the step just used would only thrash).
    int victim = -1;
    for (int s = 0; s < int(L.held.size()); ++s) {
      if (L.pending[size_t(s)]) continue;
      const int h = L.held[size_t(s)];
      const uint64_t age = h < 0 ? 0 : L.last[size_t(h)];
      if (h >= 0 && age == L.step) continue;
      if (victim < 0) {
        victim = s;
        continue;
      }
      const int v = L.held[size_t(victim)];
      if (age < (v < 0 ? 0 : L.last[size_t(v)])) victim = s;
    }
    if (victim < 0) break;  // every slot busy or just used
    const int out = L.held[size_t(victim)];
    if (out >= 0) L.slot_of[size_t(out)] = -1;
    L.held[size_t(victim)] = e;
    L.pending[size_t(victim)] = true;
    started.push_back({.layer = layer, .slot = victim, .expert_in = e, .expert_out = out});
    swaps_ += 1;
  }
  return started;
}

void ExpertCache::complete(const Swap& swap) {
  Layer& L = layers_.at(size_t(swap.layer));
  MOE_ASSERT(swap.slot >= 0 && swap.slot < int(L.held.size()) && L.pending[size_t(swap.slot)] &&
             L.held[size_t(swap.slot)] == swap.expert_in);
  L.pending[size_t(swap.slot)] = false;
  L.slot_of[size_t(swap.expert_in)] = swap.slot;
}

}  // namespace moe

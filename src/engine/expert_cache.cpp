#include "engine/expert_cache.h"

#include <algorithm>

#include "core/error.h"
#include "engine/pcie_balance.h"

namespace moe {

ExpertCache::ExpertCache(int n_expert, int n_slots)
    : slot_of_(size_t(n_expert), -1), expert_of_(size_t(n_slots)), stamp_(size_t(n_slots), 0) {
  if (n_slots < 1 || n_slots > n_expert) fail("expert cache: {} slots for {} experts", n_slots, n_expert);
  for (int s = 0; s < n_slots; ++s) slot_of_[size_t(s)] = s, expert_of_[size_t(s)] = s;
}

int ExpertCache::least_recently_used() const {
  int best = -1;
  for (int s = 0; s < n_slots(); ++s) {
    if (stamp_[size_t(s)] < tick_ && (best < 0 || stamp_[size_t(s)] < stamp_[size_t(best)])) best = s;
  }
  return best;
}

ExpertCache::Step ExpertCache::step(std::span<const int32_t> routed, int k, int pcie_most) {
  if (k < 1) fail("expert cache: {} picks a token", k);
  return step(routed, k, fixed_pcie_table(pcie_most, k));
}

ExpertCache::Step ExpertCache::step(std::span<const int32_t> routed, int k, std::span<const int32_t> pcie_table) {
  if (k < 1 || routed.size() % size_t(k) != 0) fail("expert cache: {} picks are not whole tokens of {}", routed.size(), k);
  if (pcie_table.size() != size_t(k) + 1) fail("expert cache: a PCIe table of {} entries for {} picks", pcie_table.size(), k);
  ++tick_;
  for (int32_t e : routed) {
    if (e < 0 || e >= int(slot_of_.size())) fail("expert cache: expert {} of {}", e, slot_of_.size());
    if (slot_of_[size_t(e)] >= 0) stamp_[size_t(slot_of_[size_t(e)])] = tick_;
  }
  Step out{.slot = std::vector<int32_t>(routed.size(), kCpu), .filled = std::vector<bool>(routed.size(), false)};
  for (size_t t = 0; t < routed.size() / size_t(k); ++t) {
    int misses = 0;
    for (int r = 0; r < k; ++r) misses += slot_of_[size_t(routed[t * size_t(k) + size_t(r)])] < 0;
    int pcie_left = std::max(0, pcie_table[size_t(misses)]);
    for (int r = k - 1; r >= 0; --r) {
      const size_t i = t * size_t(k) + size_t(r);
      const int32_t e = routed[i];
      if (slot_of_[size_t(e)] >= 0) {  // a hit (or an expert an earlier token of the step brought in)
        out.slot[i] = slot_of_[size_t(e)];
        ++out.hits;
        continue;
      }
      if (pcie_left == 0) continue;
      const int victim = least_recently_used();
      if (victim < 0) continue;
      --pcie_left;
      slot_of_[size_t(expert_of_[size_t(victim)])] = -1;
      slot_of_[size_t(e)] = victim;
      expert_of_[size_t(victim)] = e;
      stamp_[size_t(victim)] = tick_;
      out.slot[i] = victim;
      out.filled[i] = true;
      ++out.fills;
    }
  }
  return out;
}

CacheOutcome simulate_cache(const RoutingLocality& locality, int slots, int pcie_most, int steps, int warm_up) {
  const int k = locality.k();
  ExpertCache cache(locality.n_expert(), slots);
  RoutingLocality::Layer routing(locality, 7);
  CacheOutcome sum;
  for (int step = 0; step < warm_up + steps; ++step) {
    const std::vector<int> picks = routing.next(k);
    const ExpertCache::Step s = cache.step(std::vector<int32_t>(picks.begin(), picks.end()), k, pcie_most);
    if (step < warm_up) continue;
    sum.hits += s.hits, sum.fills += s.fills, sum.cpu += double(k - s.hits - s.fills);
  }
  return {.hits = sum.hits / steps, .fills = sum.fills / steps, .cpu = sum.cpu / steps};
}

}  // namespace moe

// ExpertCache (engine/expert_cache.h): the host model of the GPU's expert cache. Its choices
// by hand on small cases, its invariants over long random runs, and its hit rate on routing of
// Qwen3-Next's published locality for each PCIe share (the tests/cuda kernels must match it).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/error.h"
#include "engine/expert_cache.h"
#include "engine/routing_locality.h"

namespace moe {
namespace {

TEST(ExpertCache, HitsStayAndMissesTakeTheLeastRecentlyUsedSlots) {
  ExpertCache cache(8, 3);  // slots 0, 1, 2 hold experts 0, 1, 2
  // Token: experts 1, 5, 6 (ranks 0..2); one PCIe expert: the last rank's (6) fills the least
  // recently used slot the step does not use (0 and 2 are never used: the lowest, 0).
  ExpertCache::Step s = cache.step(std::vector<int32_t>{1, 5, 6}, 3, 1);
  EXPECT_EQ(s.slot, (std::vector<int32_t>{1, ExpertCache::kCpu, 0}));
  EXPECT_EQ(s.filled, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.fills, 1);
  EXPECT_EQ(cache.slot_of(6), 0);
  EXPECT_EQ(cache.slot_of(0), -1);
  // Next step: 2 is the least recently used now (0 and 1 were used a step ago).
  s = cache.step(std::vector<int32_t>{7, 6}, 2, 2);
  EXPECT_EQ(s.slot, (std::vector<int32_t>{2, 0}));
  EXPECT_EQ(cache.expert_in(2), 7);
  EXPECT_EQ(cache.slot_of(2), -1);
  // Two tokens of one step: the second finds the expert the first brought in (a hit).
  s = cache.step(std::vector<int32_t>{3, 3}, 1, 1);
  EXPECT_EQ(s.slot[0], s.slot[1]);
  EXPECT_EQ(s.fills, 1);
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(cache.slot_of(3), 1);  // slot 1 (expert 1) was the least recently used
}

// A share of the misses (engine/pcie_balance.h): each token's fills are its table entry for the
// number of its picks not in a slot when its turn comes (after the tokens before it filled).
TEST(ExpertCache, ATableGivesEachTokenTheEntryForItsMisses) {
  ExpertCache cache(16, 5);  // slots 0..4 hold experts 0..4
  const std::vector<int32_t> table{0, 1, 1, 2, 3};  // 1, 2 misses: one fill; 3: two; 4: three
  // Token 0: 0 is a hit, 8, 9, 10 miss (3): two fills, the last ranks (10, 9), into slots 2 and 3
  // (slot 1 holds token 1's expert 1: the step uses it). Token 1: 9 now a hit, 11 and 12 miss
  // (2): one fill (12, slot 4).
  const ExpertCache::Step s = cache.step(std::vector<int32_t>{0, 8, 9, 10, 9, 11, 12, 1}, 4, table);
  EXPECT_EQ(s.filled, (std::vector<bool>{false, false, true, true, false, false, true, false}));
  EXPECT_EQ(s.fills, 3);
  EXPECT_EQ(s.slot[1], ExpertCache::kCpu);
  EXPECT_EQ(s.slot[5], ExpertCache::kCpu);
  EXPECT_EQ(s.slot[4], s.slot[2]);  // token 1 finds 9 where token 0 put it
  EXPECT_THROW(cache.step(std::vector<int32_t>{0, 1}, 2, std::vector<int32_t>{0, 1}), Error);  // 2 + 1 entries
}

TEST(ExpertCache, NeverEvictsWhatTheStepUses) {
  ExpertCache cache(16, 2);
  // Both slots hit by the step: the misses find no free slot and stay with the CPU.
  const ExpertCache::Step s = cache.step(std::vector<int32_t>{0, 9, 1, 10}, 4, 4);
  EXPECT_EQ(s.slot, (std::vector<int32_t>{0, ExpertCache::kCpu, 1, ExpertCache::kCpu}));
  EXPECT_EQ(s.fills, 0);
  EXPECT_THROW(ExpertCache(4, 5), Error);
  EXPECT_THROW(ExpertCache(4, 0), Error);
  EXPECT_THROW(cache.step(std::vector<int32_t>{0, 1, 2}, 2, 1), Error);
  EXPECT_THROW(cache.step(std::vector<int32_t>{16}, 1, 1), Error);
}

TEST(ExpertCache, InvariantsHoldOverLongRandomRuns) {
  const int n_expert = 64, slots = 12, k = 6;
  ExpertCache cache(n_expert, slots);
  std::mt19937 rng(5);
  for (int step = 0; step < 3000; ++step) {
    const int n = 1 + int(rng() % 4), pcie = int(rng() % 4);
    std::vector<int32_t> routed;
    for (int t = 0; t < n; ++t) {
      std::set<int32_t> picked;
      while (int(picked.size()) < k) picked.insert(int32_t(rng() % n_expert));
      std::vector<int32_t> token(picked.begin(), picked.end());
      std::shuffle(token.begin(), token.end(), rng);
      routed.insert(routed.end(), token.begin(), token.end());
    }
    const ExpertCache::Step s = cache.step(routed, k, pcie);
    for (size_t i = 0; i < routed.size(); ++i) {
      // Every pick computed in VRAM is in the slot that holds its expert at the end of the step.
      if (s.slot[i] >= 0) {
        ASSERT_EQ(cache.expert_in(s.slot[i]), routed[i]);
      }
    }
    for (int t = 0; t < n; ++t) {
      const auto filled = std::count(s.filled.begin() + t * k, s.filled.begin() + (t + 1) * k, true);
      ASSERT_LE(filled, pcie);
    }
    // The tables are each other's inverse: every slot holds a distinct expert.
    std::set<int> held;
    for (int sl = 0; sl < slots; ++sl) {
      ASSERT_EQ(cache.slot_of(cache.expert_in(sl)), sl);
      held.insert(cache.expert_in(sl));
    }
    ASSERT_EQ(int(held.size()), slots);
    int resident = 0;
    for (int e = 0; e < n_expert; ++e) resident += cache.slot_of(e) >= 0;
    ASSERT_EQ(resident, slots);
  }
}

// Qwen3-Next's locality (512 experts, 10 a token), 71 slots (the 80B's share in 16 GiB): the
// hit rate climbs with the PCIe share from the static 71 / 512 towards what an ideal LRU cache
// of 71 gets, and the CPU's picks fall. Printed for docs/placement.md.
TEST(ExpertCache, FollowsRoutingLocalityWithThePcieShare) {
  const RoutingLocality model(512, 10);
  const int slots = 71;
  std::vector<double> hit(11);
  for (int pcie = 0; pcie <= 10; pcie += 1) {
    const CacheOutcome o = simulate_cache(model, slots, pcie, 5000);
    EXPECT_NEAR(o.hits + o.fills + o.cpu, 10.0, 1e-9);
    EXPECT_LE(o.fills, pcie + 1e-9);
    hit[size_t(pcie)] = o.hits / 10;
    std::printf("  PCIe share %2d of 10: hit rate %.3f, fills %.2f, CPU picks %.2f a step\n", pcie, hit[size_t(pcie)],
                o.fills, o.cpu);
  }
  std::printf("  an ideal LRU cache of %d: %.3f\n", slots, model.lru_hit_rate(slots));
  EXPECT_NEAR(hit[0], double(slots) / 512.0, 0.03);  // nothing admitted: the static share
  for (int pcie = 1; pcie <= 10; ++pcie) EXPECT_GE(hit[size_t(pcie)], hit[size_t(pcie) - 1] - 0.005);
  EXPECT_GT(hit[2], 0.5);
  EXPECT_NEAR(hit[10], model.lru_hit_rate(slots), 0.03);
}

}  // namespace
}  // namespace moe

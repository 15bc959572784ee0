// ExpertCache (engine/expert_cache.h): the host side of the VRAM expert cache. LRU choices,
// the pipelined swaps (a slot out of use from the start of its copy to its completion), the
// invariants over long random runs, and the hit rate on routing of Qwen3-Next's published
// locality against what an ideal LRU cache of the same size gets.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/error.h"
#include "engine/expert_cache.h"
#include "engine/routing_locality.h"

namespace moe {
namespace {

TEST(ExpertCache, StartsWithTheStaticPlacementAndSwapsTheLeastRecentlyUsed) {
  ExpertCache cache(8, {2}, 4);  // one layer, slots 0 and 1 hold experts 0 and 1
  EXPECT_EQ(cache.slot_of(0, 0), 0);
  EXPECT_EQ(cache.slot_of(0, 1), 1);
  EXPECT_EQ(cache.slot_of(0, 5), -1);
  const std::vector<int32_t> step1 = {0, 1};
  EXPECT_TRUE(cache.observe(0, step1).empty());
  EXPECT_EQ(cache.hits(), 2u);
  const std::vector<int32_t> step2 = {0, -1};  // -1: ignored
  EXPECT_TRUE(cache.observe(0, step2).empty());
  // Expert 5 routed: it replaces 1 (routed one step before 0), whose slot is out of use at once.
  const std::vector<int32_t> step3 = {5};
  const auto swaps = cache.observe(0, step3);
  ASSERT_EQ(swaps.size(), 1u);
  EXPECT_EQ(swaps[0].slot, 1);
  EXPECT_EQ(swaps[0].expert_in, 5);
  EXPECT_EQ(swaps[0].expert_out, 1);
  EXPECT_EQ(cache.slot_of(0, 1), -1);
  EXPECT_EQ(cache.slot_of(0, 5), -1);  // still being copied
  // Routed again while its copy is under way: a miss, and no second copy.
  EXPECT_TRUE(cache.observe(0, step3).empty());
  cache.complete(swaps[0]);
  EXPECT_EQ(cache.slot_of(0, 5), 1);
  EXPECT_EQ(cache.hits(), 3u);
  EXPECT_EQ(cache.picks(), 5u);
}

TEST(ExpertCache, KeepsWhatTheStepUsesAndStartsAtMostTheBudget) {
  ExpertCache cache(16, {3}, 1);
  const std::vector<int32_t> step = {0, 1, 2, 9, 10};  // two misses, all three slots used this step
  EXPECT_TRUE(cache.observe(0, step).empty());          // no victim that this step did not use
  const std::vector<int32_t> next = {9, 10, 11};
  const auto swaps = cache.observe(0, next);
  EXPECT_EQ(swaps.size(), 1u);  // the budget: one a step
  EXPECT_THROW(ExpertCache(4, {5}, 1), Error);
  EXPECT_THROW(ExpertCache(4, {2}, -1), Error);
}

// Random routing for many steps, copies completing one or two steps late: no expert is ever in
// two slots, a slot with a copy under way is never offered, and every ready slot holds its expert.
TEST(ExpertCache, InvariantsHoldOverLongRandomRuns) {
  const int n_expert = 32, slots = 6, k = 3;
  ExpertCache cache(n_expert, {slots, 0, slots}, 2);
  std::mt19937 rng(5);
  std::vector<ExpertCache::Swap> in_flight;
  for (int step = 0; step < 3000; ++step) {
    for (int layer = 0; layer < 3; ++layer) {
      std::vector<int32_t> routed;
      while (int(routed.size()) < k) {
        const int e = int(rng() % (rng() % 2 ? 8 : n_expert));  // some skew, so that caching helps
        if (std::find(routed.begin(), routed.end(), e) == routed.end()) routed.push_back(e);
      }
      for (const auto& s : cache.observe(layer, routed)) in_flight.push_back(s);
      std::set<int> ready_slots;
      for (int e = 0; e < n_expert; ++e) {
        const int s = cache.slot_of(layer, e);
        if (s < 0) continue;
        EXPECT_TRUE(ready_slots.insert(s).second) << "slot " << s << " offered twice";
        for (const auto& f : in_flight) EXPECT_FALSE(f.layer == layer && f.slot == s) << "slot under copy offered";
      }
      EXPECT_LE(int(ready_slots.size()), layer == 1 ? 0 : slots);
    }
    // A random half of the copies in flight land each step.
    std::vector<ExpertCache::Swap> still;
    for (size_t i = 0; i < in_flight.size(); ++i) {
      if (rng() % 2) {
        cache.complete(in_flight[i]);
      } else {
        still.push_back(in_flight[i]);
      }
    }
    in_flight = std::move(still);
  }
  EXPECT_GT(cache.hits(), 0u);
  EXPECT_GT(cache.swaps_started(), 0u);
}

// Routing of Qwen3-Next's locality (512 experts, 10 a token), 64 slots: with copies that land
// before the next step and no budget, the cache hits what an ideal LRU cache of 64 does (67%;
// the run starts from the static placement, a warm-up of a few dozen steps in 6000);
// a budget of 2 copies a step, or copies a step late, cost hits, still far above the static
// placement's 64 / 512.
TEST(ExpertCache, FollowsRoutingLocalityAsAnLruCacheDoes) {
  const RoutingLocality model(512, 10);
  auto run = [&](int max_swaps, bool late) {
    ExpertCache cache(512, {64}, max_swaps);
    RoutingLocality::Layer routing(model, 11);
    std::vector<ExpertCache::Swap> landing;
    for (int step = 0; step < 6000; ++step) {
      const auto picks = routing.next(10);
      const std::vector<int32_t> routed(picks.begin(), picks.end());
      const auto started = cache.observe(0, routed);
      for (const auto& s : landing) cache.complete(s);
      landing.clear();
      for (const auto& s : started) (late ? landing.push_back(s) : cache.complete(s));
    }
    std::printf("  %d copies a step at most%s: hit rate %.3f, %.2f copies a step\n", max_swaps,
                late ? ", landing a step late" : "", double(cache.hits()) / double(cache.picks()),
                double(cache.swaps_started()) / 6000.0);
    return double(cache.hits()) / double(cache.picks());
  };
  const double ideal = model.lru_hit_rate(64), unlimited = run(64, false), budget = run(2, false),
               late = run(64, true);
  std::printf("LRU ideal %.3f; cache: no budget %.3f, 2 copies a step %.3f, copies a step late %.3f\n", ideal,
              unlimited, budget, late);
  EXPECT_NEAR(unlimited, ideal, 0.03);
  EXPECT_LT(budget, unlimited);
  EXPECT_LT(late, unlimited);
  EXPECT_GT(budget, 2 * 64.0 / 512.0);
}

// Admission on a second use (the GPU run of 2026-11-27 (c): the copies cost more than their hits
// saved). Qwen3-Next's locality, 72 slots (the 80B's share in 16 GiB), 4 copies a step landing a
// step late, as the GPU side runs: admitting only experts routed again within W steps starts far
// fewer copies, each worth more hits, for a lower hit rate.
TEST(ExpertCache, AdmissionOnASecondUseCopiesLess) {
  const RoutingLocality model(512, 10);
  struct Outcome {
    double hit_rate, copies_a_step;
  };
  auto run = [&](int window) {
    ExpertCache cache(512, {72}, 4, window);
    RoutingLocality::Layer routing(model, 5);
    std::vector<ExpertCache::Swap> landing;
    const int steps = 6000;
    for (int step = 0; step < steps; ++step) {
      const auto picks = routing.next(10);
      const std::vector<int32_t> routed(picks.begin(), picks.end());
      const auto started = cache.observe(0, routed);
      for (const auto& s : landing) cache.complete(s);
      landing = started;
    }
    const Outcome o{double(cache.hits()) / double(cache.picks()), double(cache.swaps_started()) / steps};
    // Hits over the static placement's (72 of 512) per copy: what a copy buys.
    std::printf("  admit within %d steps (0: always): hit rate %.3f, %.2f copies a step, %.2f hits a copy\n", window,
                o.hit_rate, o.copies_a_step, (o.hit_rate - 72.0 / 512.0) * 10 / o.copies_a_step);
    return o;
  };
  const Outcome always = run(0), within2 = run(2), within8 = run(8);
  EXPECT_LT(within2.copies_a_step, 0.8 * always.copies_a_step);
  EXPECT_LT(within2.copies_a_step, within8.copies_a_step);
  EXPECT_GT(within2.hit_rate, 2 * 72.0 / 512.0);
  EXPECT_GT((within2.hit_rate - 72.0 / 512.0) / within2.copies_a_step,
            (always.hit_rate - 72.0 / 512.0) / always.copies_a_step);
  EXPECT_THROW(ExpertCache(8, {2}, 1, -1), Error);
}

}  // namespace
}  // namespace moe

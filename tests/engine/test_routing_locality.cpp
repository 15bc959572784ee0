// Routing with a stated locality (engine/routing_locality.h): an LRU cache run over its routing
// (written here, independently) hits what was asked, the experts stay equally likely in the
// long run, and the plan uses it.
#include <gtest/gtest.h>

#include <algorithm>
#include <list>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/units.h"
#include "engine/placement.h"
#include "engine/routing_locality.h"
#include "tiny_model.h"

namespace moe {
namespace {

// The share of picks an LRU cache of `slots` experts finds, over `tokens` tokens of `layer`'s
// routing after a warm-up of as many.
double lru_hits(RoutingLocality::Layer& layer, int k, int slots, int tokens) {
  std::list<int> cache;  // most recently used first
  int64_t hits = 0, picks = 0;
  for (int t = 0; t < 2 * tokens; ++t) {
    for (int e : layer.next(k)) {
      const auto it = std::find(cache.begin(), cache.end(), e);
      const bool hit = it != cache.end();
      if (hit) cache.erase(it);
      cache.push_front(e);
      if (int(cache.size()) > slots) cache.pop_back();
      if (t >= tokens) hits += hit, ++picks;
    }
  }
  return double(hits) / double(picks);
}

TEST(RoutingLocality, AnLruCacheHitsThePublishedRatesForQwen3Next) {
  const RoutingLocality model(512, 10);  // the defaults: 64 slots hit 67%, 128 hit 81%
  EXPECT_NEAR(model.lru_hit_rate(64), 0.67, 0.01);
  EXPECT_NEAR(model.lru_hit_rate(128), 0.81, 0.01);
  EXPECT_DOUBLE_EQ(model.lru_hit_rate(0), 0.0);
  EXPECT_NEAR(model.lru_hit_rate(512), 1.0, 1e-9);
  RoutingLocality::Layer layer(model, 42);  // another seed than the fit's
  EXPECT_NEAR(lru_hits(layer, 10, 64, 4000), 0.67, 0.015);
  EXPECT_NEAR(lru_hits(layer, 10, 128, 4000), 0.81, 0.015);
  EXPECT_NEAR(lru_hits(layer, 10, 256, 4000), model.lru_hit_rate(256), 0.015);  // between the fitted points too
}

TEST(RoutingLocality, TokensGetDistinctExpertsAndNoStaticHotSet) {
  const RoutingLocality model(512, 10);
  RoutingLocality::Layer layer(model, 7);
  std::vector<int64_t> first(512, 0), second(512, 0);
  const int tokens = 20000;
  for (int t = 0; t < tokens; ++t) {
    const std::vector<int> experts = layer.next(10);
    ASSERT_EQ(std::set<int>(experts.begin(), experts.end()).size(), 10u);
    for (int e : experts) {
      ASSERT_GE(e, 0);
      ASSERT_LT(e, 512);
      ++(t < tokens / 2 ? first : second)[size_t(e)];
    }
  }
  // The 32 experts used most in the first half carry about their uniform share (6.25%) of the
  // second half's picks (published for Qwen3-Next: ~10%), nowhere near what a hot set would.
  std::vector<int> order(512);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 32, order.end(),
                    [&](int a, int b) { return first[size_t(a)] > first[size_t(b)]; });
  int64_t covered = 0;
  for (int i = 0; i < 32; ++i) covered += second[size_t(order[size_t(i)])];
  EXPECT_LT(double(covered) / (tokens / 2 * 10), 0.15);
}

TEST(RoutingLocality, FitsOtherShapesAndRefusesImpossibleOnes) {
  const RoutingLocality small(128, 8);  // Qwen3-30B-A3B's shape, the same shares of its experts
  EXPECT_NEAR(small.lru_hit_rate(16), 0.67, 0.01);
  EXPECT_NEAR(small.lru_hit_rate(32), 0.81, 0.01);
  EXPECT_THROW(RoutingLocality(512, 10, 0.25, 0.81, 0.125, 0.67), Error);  // shares out of order
  EXPECT_THROW(RoutingLocality(512, 10, 0.125, 0.1, 0.25, 0.81), Error);   // below the uniform share
  EXPECT_THROW(RoutingLocality(8, 8), Error);                              // every expert every token
  RoutingLocality::Layer layer(small, 1);
  EXPECT_THROW(layer.next(129), Error);
}

TEST(RoutingLocality, ThePlanCountsTheVramExpertsAsAnLruCache) {
  test::TinyModel m("qwen3moe", "q8_0");
  const ModelConfig& c = m.model->config();
  const RoutingLocality local(c.n_expert, c.n_expert_used, 0.25, 0.4, 0.5, 0.7);
  PlacementRequest r{.vram_budget = 64 * GiB, .context = 256, .ubatch = 64, .runtime_reserve = 1 * MiB,
                     .bandwidth = {.ram_gb_s = 100, .gpu_gb_s = 1000}};
  r.n_cpu_moe = 0;  // every expert in VRAM: all hits either way
  EXPECT_NEAR(plan_placement(*m.reader, c, r).hit_rate, 1.0, 1e-9);
  const PlacementPlan all = plan_placement(*m.reader, c, r);
  r.n_cpu_moe = -1;
  // Room for a quarter of each layer's experts.
  r.vram_budget = all.used() - all.experts_vram + all.experts_vram / 4;
  const PlacementPlan even = plan_placement(*m.reader, c, r);
  r.locality = &local;
  const PlacementPlan planned = plan_placement(*m.reader, c, r);
  EXPECT_EQ(planned.vram_experts, even.vram_experts);  // the same placement ...
  EXPECT_NEAR(even.hit_rate, 0.25, 1e-9);              // ... hit as often as it holds experts,
  EXPECT_NEAR(planned.hit_rate, local.lru_hit_rate(c.n_expert / 4), 1e-6);  // or as the cache does
  EXPECT_GT(planned.overlapped_tok_s, even.overlapped_tok_s);
  const RoutingLocality wrong(c.n_expert * 2, c.n_expert_used, 0.25, 0.4, 0.5, 0.7);
  r.locality = &wrong;
  EXPECT_THROW(plan_placement(*m.reader, c, r), Error);
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {


std::vector<float> last_logits(Model& model, RoutingSource* source) {
  model.set_routing_source(source);
  KvCache cache = make_kv_cache(model.config(), GgmlType::F32, 64);
  SequenceState seq(cache);
  ThreadPool pool(2);
  const std::vector<TokenId> tokens = {3, 14, 15, 92, 65};
  std::vector<float> logits(size_t(model.config().n_vocab));
  model.forward(tokens, seq, Logits::Last, logits, pool);
  model.set_routing_source(nullptr);
  return logits;
}

// The engines' routing hook (Model::set_routing_source): the source's experts replace the
// router's, for both MoE architectures; the same source gives the same logits, another set of
// experts others; a source naming an expert the model lacks, or one twice, is refused.
TEST(RoutingSource, ReplacesTheRoutersChoiceInTheCpuEngine) {
  for (const char* arch : {"qwen3moe", "qwen3next"}) {
    SCOPED_TRACE(arch);
    test::TinyModel m(arch, "f32");
    const int k = m.model->config().n_expert_used;
    ASSERT_EQ(k, 2);
    test::FixedRouting low({0, 1}), high({6, 7}), bad({0, 8}), twice({3, 3});
    const auto plain = last_logits(*m.model, nullptr), a = last_logits(*m.model, &low),
               a_again = last_logits(*m.model, &low), b = last_logits(*m.model, &high);
    EXPECT_EQ(a, a_again);
    EXPECT_NE(a, b);
    EXPECT_NE(a, plain);
    EXPECT_EQ(last_logits(*m.model, nullptr), plain);  // unset: the router again
    EXPECT_THROW(last_logits(*m.model, &bad), Error);
    EXPECT_THROW(last_logits(*m.model, &twice), Error);
  }
}

// LocalRouting: per layer an independent stream of Qwen3-Next-like routing.
TEST(RoutingSource, LocalRoutingGivesEachLayerItsOwnDistinctPicks) {
  const RoutingLocality model(512, 10);
  LocalRouting routing(model, 3, 7);
  std::vector<int32_t> l0(40), l1(40);
  routing.route(0, 4, l0);
  routing.route(1, 4, l1);
  EXPECT_NE(l0, l1);
  for (int t = 0; t < 4; ++t) {
    const std::set<int32_t> token(l0.begin() + t * 10, l0.begin() + (t + 1) * 10);
    EXPECT_EQ(token.size(), 10u);
    EXPECT_GE(*token.begin(), 0);
    EXPECT_LT(*token.rbegin(), 512);
  }
}

}  // namespace
}  // namespace moe

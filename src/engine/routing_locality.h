#pragma once
// Expert routing with the temporal locality of a real model, for benchmarks and plans: synth's
// random weights route every token anywhere (no locality: the worst case for an expert cache),
// while real routers come back to the experts they used a few tokens ago. What is published for
// Qwen3-Next (512 experts, 10 a token; llama.cpp PR #27861): per layer, an LRU cache of 64
// experts hits about 67% of the picks, one of 128 about 81%; there is no static hot set.
//
// The model: each layer keeps its experts in order of last use (a stack) and each of a token's
// k picks takes the expert at depth d with probability proportional to (d + a)^-b (an LRU
// stack model), distinct within the token. a and b are fitted so that an LRU cache updated
// pick by pick, simulated over the model's own routing, hits the given shares at two cache
// sizes; the same simulation gives the hit rate at every other size. Every expert is equally
// likely in the long run: no static skew. Cache sizes scale with the expert count (12.5% and
// 25% of the experts for the published points), which is an assumption for other models.
#include <cstdint>
#include <span>
#include <random>
#include <vector>

#include "models/model.h"

namespace moe {

class RoutingLocality {
 public:
  // The fit for n_expert experts, k a token: LRU caches of share_1 and share_2 of them hit
  // hit_1 and hit_2 (share_1 < share_2, hit_1 < hit_2, both above the uniform shares). Throws
  // moe::Error when no (a, b) comes within 0.01 of both.
  RoutingLocality(int n_expert, int k, double share_1 = 0.125, double hit_1 = 0.67, double share_2 = 0.25,
                  double hit_2 = 0.81);

  int n_expert() const { return int(prefix_.size()) - 1; }
  int k() const { return k_; }
  // The share of picks an LRU cache of `slots` experts (per layer) hits, from the simulation.
  double lru_hit_rate(int slots) const;
  double a() const { return a_; }
  double b() const { return b_; }

  // One layer's routing: k distinct experts a token, drawn by stack depth.
  class Layer {
   public:
    Layer(const RoutingLocality& model, uint64_t seed);
    // The next token's k experts (most likely first).
    std::vector<int> next(int k);

   private:
    const RoutingLocality* model_;
    std::mt19937_64 rng_;
    std::vector<int> stack_;  // experts, most recently used first
  };

 private:
  // Routes `tokens` tokens and returns the LRU cache's hit rate at every size: element C is the
  // share of picks found among the C experts used last (the stack updated pick by pick).
  std::vector<double> simulate_lru(int tokens, uint64_t seed) const;

  int k_ = 1;
  double a_ = 1, b_ = 1;
  std::vector<double> prefix_;    // prefix_[d]: the weight of depths below d (prefix_[0] = 0)
  std::vector<double> lru_hits_;  // simulate_lru() of the fitted model
};

// Routing with a RoutingLocality for a whole model (bench --routing local): one independent
// stack of experts a layer, fed to the engines through Model::set_routing_source.
class LocalRouting final : public RoutingSource {
 public:
  LocalRouting(const RoutingLocality& model, int n_layer, uint64_t seed);
  void route(int layer, int n, std::span<int32_t> experts) override;

 private:
  std::vector<RoutingLocality::Layer> layers_;
  int k_;
};

}  // namespace moe

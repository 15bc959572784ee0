#pragma once
#include <cstdint>

namespace moe::cuda {

// Where a routing goes (device pointers) and how: per token the top k of n_expert logits (the
// CPU's route_token), and with shared_expert >= 0 one more entry: that id, weighted by sigmoid
// of the logit after the experts' (Qwen3-Next's shared expert gate).
struct RouteTarget {
  int n_expert = 0, k = 0;
  bool renormalize = true;
  int shared_expert = -1;
  int32_t* experts = nullptr;  // [n_tok][k (+ 1)]
  float* weights = nullptr;
  unsigned* counter = nullptr;  // a fused product's count of finished blocks: zero, and left zero
};

}  // namespace moe::cuda

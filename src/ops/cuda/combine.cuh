#pragma once
// The MoE combine of a pair of values, shared by the combine kernel (elementwise.cu) and the combine
// fused with the next block's norm (activations.cu).
#include "ops/cuda/activations.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {

// Values 2p and 2p + 1 of token t's combine: its k expert rows weighted and summed in rank
// order, each product rounded before it is added (the CPU's sum), then the gated shared expert.
// The rows' pairs (one 8-byte load a row) and the routing weights of the first kMaxPairLoads
// ranks are loaded together: one memory latency instead of k in a row. width even.
constexpr int kMaxPairLoads = 11;  // Qwen3-Next's 10 experts and the shared one

__device__ inline float2 combine_pair(const CombineRows& c, int64_t t, int64_t p, int64_t width) {
  const int k = c.k;
  auto pair = [&](const float* row) { return reinterpret_cast<const float2*>(row)[p]; };
  float2 v[kMaxPairLoads];
  float w[kMaxPairLoads];
#pragma unroll
  for (int r = 0; r < kMaxPairLoads; ++r) {
    if (r < k) v[r] = pair(c.rows + (t * k + r) * width), w[r] = c.weights[t * k + r];
  }
  float2 s = {0.0f, 0.0f};
  auto add = [&](float wr, float2 vr) {
    s.x = __fadd_rn(s.x, __fmul_rn(wr, vr.x));
    s.y = __fadd_rn(s.y, __fmul_rn(wr, vr.y));
  };
#pragma unroll
  for (int r = 0; r < kMaxPairLoads; ++r) {
    if (r < k) add(w[r], v[r]);
  }
  for (int r = kMaxPairLoads; r < k; ++r) add(c.weights[t * k + r], pair(c.rows + (t * k + r) * width));
  if (c.shared) add(sigmoid(c.shared_logit[t * c.logit_stride]), pair(c.shared + t * width));
  return s;
}

}  // namespace moe::cuda

#pragma once
// The MoE combine of one value, shared by the combine kernel (elementwise.cu) and the combine
// fused with the next block's norm (activations.cu).
#include "ops/cuda/activations.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {

constexpr int kMaxCombineLoads = 16;

// Token t's combined value at column i: its k expert rows weighted and summed in rank order,
// each product rounded before it is added (the CPU's sum), then the gated shared expert. The
// first kMaxCombineLoads rows are loaded together: one memory latency instead of k in a row.
__device__ inline float combine_value(const CombineRows& c, int64_t t, int64_t i, int64_t width) {
  const int k = c.k;
  float v[kMaxCombineLoads], w[kMaxCombineLoads];
#pragma unroll
  for (int r = 0; r < kMaxCombineLoads; ++r) {
    if (r < k) v[r] = c.rows[(t * k + r) * width + i], w[r] = c.weights[t * k + r];
  }
  float s = 0.0f;
#pragma unroll
  for (int r = 0; r < kMaxCombineLoads; ++r) {
    if (r < k) s = __fadd_rn(s, __fmul_rn(w[r], v[r]));
  }
  for (int r = kMaxCombineLoads; r < k; ++r) s = __fadd_rn(s, __fmul_rn(c.weights[t * k + r], c.rows[(t * k + r) * width + i]));
  if (c.shared) s = __fadd_rn(s, __fmul_rn(sigmoid(c.shared_logit[t * c.logit_stride]), c.shared[t * width + i]));
  return s;
}

// Values 2p and 2p + 1 of token t's combine, each with combine_value's arithmetic: the rows'
// pairs (one 8-byte load a row) and the routing weights of the first kMaxPairLoads ranks all
// loaded together. width even.
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

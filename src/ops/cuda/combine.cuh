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

}  // namespace moe::cuda

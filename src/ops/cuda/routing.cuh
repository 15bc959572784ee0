#pragma once
// MoE routing of one token by one warp: the CPU's route_token (models/blocks.cpp) with the
// softmax sum in double. Shared by the routing kernel (routing.cu) and the router product that
// routes in its last thread block (matvec.cu).
#include <cfloat>
#include <cstdint>

#include "ops/cuda/route_target.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {

// Lane l holds experts l, l + 32, ... (kPerLane of them: the loops are unrolled). The logits
// are read through L2 (ld.cg): in the fused product other blocks wrote them in this launch.
template <int kPerLane>
__device__ inline void route_token(const float* l, const RouteTarget& r, int t) {
  const int lane = threadIdx.x, n_expert = r.n_expert, k = r.k;
  float max = -FLT_MAX;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    if (e < n_expert) max = fmaxf(max, __ldcg(l + e));
  }
  max = warp_max(max);
  float p[kPerLane];
  double sum = 0;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    p[j] = e < n_expert ? expf(__ldcg(l + e) - max) : 0.0f;
    sum += p[j];
  }
  sum = warp_sum(sum);
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) p[j] = lane + 32 * j < n_expert ? float(p[j] / sum) : -1.0f;

  double selected = 0;
  float chosen_p = 0;  // lane r keeps rank r's probability
  int chosen_e = 0;
  for (int rank = 0; rank < k; ++rank) {
    // This lane's best candidate, then the warp's: highest probability, lower id on ties.
    float best = -1.0f;
    int best_e = n_expert;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (p[j] > best) best = p[j], best_e = lane + 32 * j;
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
      const float b = __shfl_xor_sync(0xFFFFFFFFu, best, off);
      const int be = __shfl_xor_sync(0xFFFFFFFFu, best_e, off);
      if (b > best || (b == best && be < best_e)) best = b, best_e = be;
    }
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {  // taken (a constant index keeps p in registers)
      if (lane + 32 * j == best_e) p[j] = -1.0f;
    }
    selected += best;
    if (lane == rank) chosen_p = best, chosen_e = best_e;
  }
  const int width = r.shared_expert >= 0 ? k + 1 : k;
  if (lane < k) {
    r.experts[int64_t(t) * width + lane] = chosen_e;
    r.weights[int64_t(t) * width + lane] = r.renormalize ? float(chosen_p / selected) : chosen_p;
  } else if (lane == k && r.shared_expert >= 0) {  // its gate logit follows the experts' logits
    r.experts[int64_t(t) * width + k] = r.shared_expert;
    r.weights[int64_t(t) * width + k] = sigmoid(__ldcg(l + n_expert));
  }
}

}  // namespace moe::cuda

#pragma once
// MoE routing of one token by one warp: the CPU's route_token (models/blocks.cpp), its sums in
// double. Shared by the routing kernel (routing.cu) and the router product that
// routes in its last thread block (matvec.cu).
#include <cstdint>

#include "ops/cuda/route_target.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {

// A logit as an unsigned key in the same order (-0 taken as +0, as the comparison of floats
// does), never 0: 0 marks an expert taken or past the end. NaN logits have no order.
__device__ __forceinline__ unsigned logit_key(float v) {
  const unsigned u = __float_as_uint(v + 0.0f);
  return max((u & 0x80000000u) ? ~u : (u | 0x80000000u), 1u);
}
__device__ __forceinline__ float key_logit(unsigned key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

// Lane l holds experts l, l + 32, ... (kPerLane of them: the loops are unrolled). The logits
// are read through L2 (ld.cg): in the fused product other blocks wrote them in this launch.
// The routing is a chain of dependent steps run by one warp while the rest of the GPU waits,
// so each step is kept short: every logit load is issued before the first is used (one memory
// latency, not one a logit), the top k are picked on the logits (the CPU's order: the softmax
// keeps it), each rank's pick is two warp reductions, and with renormalization only the chosen
// ones' exponentials are taken (the softmax's denominator cancels).
template <int kPerLane>
__device__ inline void route_token(const float* l, const RouteTarget& r, int t) {
  const int lane = threadIdx.x, n_expert = r.n_expert, k = r.k;
  const bool gate_lane = r.shared_expert >= 0 && lane == k;  // its gate logit follows the experts'
  const float gate_logit = gate_lane ? __ldcg(l + n_expert) : 0.0f;
  // Experts past n_expert read the last logit again and are left out.
  float logit[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) logit[j] = __ldcg(l + min(lane + 32 * j, n_expert - 1));
  unsigned key[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) key[j] = lane + 32 * j < n_expert ? logit_key(logit[j]) : 0;
  // The lane's best: highest key, the lower id (lower j) on ties.
  unsigned best = 0;
  int best_j = 0;
  auto find_best = [&] {
    best = 0, best_j = 0;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (key[j] > best) best = key[j], best_j = j;
    }
  };
  find_best();

  double selected = 0;
  float max_logit = 0, chosen_x = 0;  // lane r keeps rank r's exp(logit - max)
  int chosen_e = 0;
  for (int rank = 0; rank < k; ++rank) {
    // The warp's best: highest logit, the lowest id among the lanes that hold it.
    const unsigned top = warp_max(best);
    const int e = int(warp_min(best == top ? unsigned(lane + 32 * best_j) : ~0u));
    if (lane == e % 32) {  // its lane takes it out (a constant index keeps key in registers)
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        if (j == best_j) key[j] = 0;
      }
      find_best();
    }
    const float chosen = key_logit(top);
    if (rank == 0) max_logit = chosen;
    const float x = expf(chosen - max_logit);
    selected += x;
    if (lane == rank) chosen_x = x, chosen_e = e;
  }
  float weight = 0;
  if (r.renormalize) {
    weight = float(chosen_x / selected);
  } else {  // the probability itself: the whole softmax's sum
    double sum = 0;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) sum += lane + 32 * j < n_expert ? double(expf(logit[j] - max_logit)) : 0.0;
    weight = float(chosen_x / warp_sum(sum));
  }
  const int width = r.shared_expert >= 0 ? k + 1 : k;
  if (lane < k) {
    r.experts[int64_t(t) * width + lane] = chosen_e;
    r.weights[int64_t(t) * width + lane] = weight;
  } else if (gate_lane) {
    r.experts[int64_t(t) * width + k] = r.shared_expert;
    r.weights[int64_t(t) * width + k] = sigmoid(gate_logit);
  }
}

// route_token with the fewest experts a lane that hold n_expert (at most 512).
__device__ inline void route_token_any(const float* l, const RouteTarget& r, int t) {
  if (r.n_expert <= 128) {
    route_token<4>(l, r, t);
  } else if (r.n_expert <= 256) {
    route_token<8>(l, r, t);
  } else {
    route_token<16>(l, r, t);
  }
}

}  // namespace moe::cuda

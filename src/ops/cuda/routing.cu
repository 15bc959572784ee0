// MoE routing, one warp per token: the CPU's route_token (models/blocks.cpp) with the softmax
// sum in double; lane l holds the experts l, l + 32, ...
#include <cfloat>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/ops.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxExperts = 512, kWarps = 4;

// kPerLane: experts per lane, the smallest of 4, 8, 16 that holds n_expert (the loops over a
// lane's experts are unrolled: 128 experts need not pay for 512).
template <int kPerLane>
__global__ void route_kernel(const float* __restrict__ logits, int64_t stride, int n_tok, int n_expert, int k,
                             bool renormalize, int shared_expert, int32_t* experts, float* weights) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int t = blockIdx.x * kWarps + threadIdx.y, lane = threadIdx.x;
  if (t >= n_tok) return;
  const float* l = logits + int64_t(t) * stride;
  float max = -FLT_MAX;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    if (e < n_expert) max = fmaxf(max, l[e]);
  }
  max = warp_max(max);
  float p[kPerLane];
  double sum = 0;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    p[j] = e < n_expert ? expf(l[e] - max) : 0.0f;
    sum += p[j];
  }
  sum = warp_sum(sum);
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) p[j] = lane + 32 * j < n_expert ? float(p[j] / sum) : -1.0f;

  double selected = 0;
  float chosen_p = 0;  // lane r keeps rank r's probability
  int chosen_e = 0;
  for (int r = 0; r < k; ++r) {
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
    if (lane == r) chosen_p = best, chosen_e = best_e;
  }
  const int width = shared_expert >= 0 ? k + 1 : k;
  if (lane < k) {
    experts[int64_t(t) * width + lane] = chosen_e;
    weights[int64_t(t) * width + lane] = renormalize ? float(chosen_p / selected) : chosen_p;
  } else if (lane == k && shared_expert >= 0) {  // its gate logit follows the experts' logits
    experts[int64_t(t) * width + k] = shared_expert;
    weights[int64_t(t) * width + k] = sigmoid(l[n_expert]);
  }
}

}  // namespace

cudaError_t route_top_k(const float* logits, int n_tok, int n_expert, int k, bool renormalize, int32_t* experts,
                        float* weights, cudaStream_t stream, int64_t logit_stride, int shared_expert) {
  const int64_t stride = logit_stride ? logit_stride : n_expert;
  if (n_expert > kMaxExperts || k < 1 || k + (shared_expert >= 0) > 32 || k > n_expert) return cudaErrorInvalidValue;
  if (shared_expert >= 0 && stride <= n_expert) return cudaErrorInvalidValue;  // no gate logit
  if (n_tok == 0) return cudaSuccess;
  const dim3 block(32, kWarps), grid(unsigned((n_tok + kWarps - 1) / kWarps));
  auto run = [&](auto kernel) {
    return launch(kernel, grid, block, 0, stream, logits, stride, n_tok, n_expert, k, renormalize, shared_expert,
                  experts, weights);
  };
  if (n_expert <= 128) return run(route_kernel<4>);
  if (n_expert <= 256) return run(route_kernel<8>);
  return run(route_kernel<16>);
}

}  // namespace moe::cuda

// MoE routing, one warp per token (routing.cuh).
#include <algorithm>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/ops.h"
#include "ops/cuda/routing.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxExperts = 512, kWarps = 4;

// kPerLane: experts per lane, the smallest of 4, 8, 16 that holds n_expert (the loops over a
// lane's experts are unrolled: 128 experts need not pay for 512).
template <int kPerLane>
__global__ void route_kernel(const float* __restrict__ logits, int64_t stride, int n_tok, RouteTarget r) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int t = blockIdx.x * kWarps + threadIdx.y;
  if (t < n_tok) route_token<kPerLane>(logits + int64_t(t) * stride, r, t);
}

__global__ void force_kernel(const int32_t* __restrict__ forced, int n, int k, int width, int32_t* experts) {
  wait_for_previous_kernels();
  allow_next_kernel();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n * k; i += gridDim.x * blockDim.x) {
    experts[(i / k) * width + i % k] = forced[i];
  }
}

}  // namespace

cudaError_t force_experts(const int32_t* forced, int n, int k, int width, int32_t* experts, cudaStream_t stream) {
  if (n < 1 || k < 1 || width < k) return cudaErrorInvalidValue;
  const int threads = 256, blocks = std::min(64, (n * k + threads - 1) / threads);
  launch(force_kernel, blocks, threads, 0, stream, forced, n, k, width, experts);
  return cudaGetLastError();
}

cudaError_t route_top_k(const float* logits, int n_tok, int n_expert, int k, bool renormalize, int32_t* experts,
                        float* weights, cudaStream_t stream, int64_t logit_stride, int shared_expert) {
  const int64_t stride = logit_stride ? logit_stride : n_expert;
  if (n_expert > kMaxExperts || k < 1 || k + (shared_expert >= 0) > 32 || k > n_expert) return cudaErrorInvalidValue;
  if (shared_expert >= 0 && stride <= n_expert) return cudaErrorInvalidValue;  // no gate logit
  if (n_tok == 0) return cudaSuccess;
  const dim3 block(32, kWarps), grid(unsigned((n_tok + kWarps - 1) / kWarps));
  const RouteTarget r{.n_expert = n_expert, .k = k, .renormalize = renormalize, .shared_expert = shared_expert,
                      .experts = experts, .weights = weights};
  auto run = [&](auto kernel) { return launch(kernel, grid, block, 0, stream, logits, stride, n_tok, r); };
  if (n_expert <= 128) return run(route_kernel<4>);
  if (n_expert <= 256) return run(route_kernel<8>);
  return run(route_kernel<16>);
}

}  // namespace moe::cuda

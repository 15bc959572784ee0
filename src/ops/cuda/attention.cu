// Causal attention over a sequence's f16 KV cache, and the cache writes.
//
// attend: one block per (query token, head), its kSplit warps taking every kSplit-th position
// (split-K: decode has one query token, so the positions are where the parallelism is). Lane l
// holds dims l, l + 32, ... of the query, the running output and the keys/values it reads;
// each warp runs an online softmax (running max and sum) over its positions, and the block
// merges the warps' partial results at the end.
#include <cuda_fp16.h>

#include <cfloat>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/attention.h"

namespace moe::cuda {
namespace {

constexpr int kMaxDimsPerLane = 8;  // head_dim <= 256
constexpr int kSplit = 8;

__global__ void attend_kernel(const float* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
                              const int32_t* __restrict__ pos, int n, int n_head, int n_head_kv, int head_dim,
                              float scale, float* __restrict__ out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t task = blockIdx.x;
  const int t = int(task / n_head), h = int(task % n_head), lane = threadIdx.x, warp = threadIdx.y;
  const int kv_head = h / (n_head / n_head_kv), kv_dim = n_head_kv * head_dim, per_lane = head_dim / 32;
  const float* qh = q + (int64_t(t) * n_head + h) * head_dim;
  float qv[kMaxDimsPerLane], acc[kMaxDimsPerLane];
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    qv[i] = i < per_lane ? qh[lane + 32 * i] : 0.0f;
    acc[i] = 0.0f;
  }
  float max = -FLT_MAX, sum = 0.0f;
  const int visible = pos[t] + 1;
  for (int p = warp; p < visible; p += kSplit) {
    const __half* kp = k + int64_t(p) * kv_dim + kv_head * head_dim;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) {
      if (i < per_lane) s += qv[i] * __half2float(kp[lane + 32 * i]);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
    s *= scale;
    const float new_max = fmaxf(max, s), correction = expf(max - new_max), weight = expf(s - new_max);
    const __half* vp = v + int64_t(p) * kv_dim + kv_head * head_dim;
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) {
      if (i < per_lane) acc[i] = acc[i] * correction + weight * __half2float(vp[lane + 32 * i]);
    }
    sum = sum * correction + weight;
    max = new_max;
  }
  // Merge: every warp's output rescaled to the largest running max.
  __shared__ float warp_max[kSplit], warp_sum[kSplit], warp_acc[kSplit][32 * kMaxDimsPerLane];
  if (lane == 0) warp_max[warp] = max, warp_sum[warp] = sum;
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    if (i < per_lane) warp_acc[warp][lane + 32 * i] = acc[i];
  }
  __syncthreads();
  if (warp != 0) return;
  float top = -FLT_MAX;
  for (int w = 0; w < kSplit; ++w) top = fmaxf(top, warp_max[w]);
  float total = 0.0f, scale_of[kSplit];
  for (int w = 0; w < kSplit; ++w) {
    scale_of[w] = expf(warp_max[w] - top);
    total += warp_sum[w] * scale_of[w];
  }
  float* oh = out + (int64_t(t) * n_head + h) * head_dim;
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    if (i >= per_lane) continue;
    float o = 0.0f;
    for (int w = 0; w < kSplit; ++w) o += warp_acc[w][lane + 32 * i] * scale_of[w];
    oh[lane + 32 * i] = o / total;
  }
}

__global__ void store_kv_kernel(const float* __restrict__ k, const float* __restrict__ v, int n, int kv_dim,
                                const int32_t* __restrict__ pos, __half* kc, __half* vc) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * kv_dim) return;
  const int t = int(i / kv_dim), d = int(i % kv_dim);
  const int64_t at = int64_t(pos[t]) * kv_dim + d;
  kc[at] = __float2half_rn(k[i]);
  vc[at] = __float2half_rn(v[i]);
}

}  // namespace

cudaError_t attend(const float* q, const __half* k, const __half* v, const int32_t* pos, int n, int n_head,
                   int n_head_kv, int head_dim, float scale, float* out, cudaStream_t stream) {
  if (head_dim % 32 != 0 || head_dim > 32 * kMaxDimsPerLane || n_head % n_head_kv != 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const dim3 block(32, kSplit), grid(unsigned(int64_t(n) * n_head));
  launch(attend_kernel, grid, block, 0, stream, q, k, v, pos, n, n_head, n_head_kv, head_dim, scale, out);
  return cudaGetLastError();
}

cudaError_t store_kv(const float* k, const float* v, int n, int kv_dim, const int32_t* pos, __half* k_cache,
                     __half* v_cache, cudaStream_t stream) {
  const int64_t total = int64_t(n) * kv_dim;
  if (total == 0) return cudaSuccess;
  launch(store_kv_kernel, unsigned((total + 255) / 256), 256, 0, stream, k, v, n, kv_dim, pos, k_cache, v_cache);
  return cudaGetLastError();
}

}  // namespace moe::cuda

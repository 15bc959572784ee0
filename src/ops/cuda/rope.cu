// NEOX RoPE: one thread per rotated pair (i, i + n_rot / 2) of one head of one token.
#include <cuda_fp16.h>

#include "ops/cuda/kv_values.cuh"
#include "ops/cuda/launch.cuh"
#include "ops/cuda/ops.h"
#include "ops/cuda/rope.cuh"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

__global__ void rope_neox_kernel(float* x, const int32_t* __restrict__ pos, int n_tok, int n_head, int head_dim,
                                 int n_rot, const double* __restrict__ freq) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int half = n_rot / 2;
  const int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= int64_t(n_tok) * n_head * half) return;
  const int i = int(id % half);
  const int64_t head = id / half;  // token * n_head + h
  const int t = int(head / n_head);
  const float2 rot = rope_rotation(freq, pos[t], i);
  const float c = rot.x, s = rot.y;
  float* h = x + head * head_dim;
  const float a = h[i], b = h[i + half];
  // Rounded products, then the sum, as the CPU build computes them (no fused multiply-add).
  h[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
  h[i + half] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
}

constexpr int kHeadsPerBlock = 4;

// One warp per head (the n_head query heads of a token, then its n_head_kv key heads).
template <KvType kType>
__global__ void qk_norm_rope_store_kernel(float* q, float* k, const float* __restrict__ v,
                                          const float* __restrict__ q_norm, const float* __restrict__ k_norm,
                                          float eps, const int32_t* __restrict__ pos, int n, int n_head, int n_head_kv,
                                          int head_dim, int n_rot, const double* __restrict__ freq, void* k_cache,
                                          void* v_cache) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int heads = n_head + n_head_kv;
  const int64_t id = int64_t(blockIdx.x) * kHeadsPerBlock + threadIdx.y;
  if (id >= int64_t(n) * heads) return;
  const int t = int(id / heads), hh = int(id % heads), lane = threadIdx.x;
  const bool is_q = hh < n_head;
  float* x = is_q ? q + (int64_t(t) * n_head + hh) * head_dim : k + (int64_t(t) * n_head_kv + hh - n_head) * head_dim;
  const float* w = is_q ? q_norm : k_norm;
  __shared__ float normed[kHeadsPerBlock][kMaxRopeHeadDim];
  __shared__ float2 rot[kHeadsPerBlock][kMaxRopeHeadDim / 2];
  fill_rotations(freq, pos[t], n_rot, rot[threadIdx.y], lane, 32);
  rms_norm_head(x, w, eps, head_dim, normed[threadIdx.y]);  // its __syncwarp also publishes rot
  rotate_head(normed[threadIdx.y], head_dim, n_rot, rot[threadIdx.y], x);
  if (!is_q) {  // the warp stores the head, 32 values at a time, each lane the values it wrote
    for (int i = lane; i < head_dim; i += 32) {
      const int64_t at = int64_t(pos[t]) * n_head_kv * head_dim + int64_t(hh - n_head) * head_dim + i - lane;
      kv_keep_lanes<kType>(k_cache, at, x[i]);
      kv_keep_lanes<kType>(v_cache, at, v[(int64_t(t) * n_head_kv + hh - n_head) * head_dim + i]);
    }
  }
}

}  // namespace

cudaError_t qk_norm_rope_store(float* q, float* k, const float* v, const float* q_norm, const float* k_norm, float eps,
                               const int32_t* pos, int n, int n_head, int n_head_kv, int head_dim, int n_rot,
                               const double* freq, KvType type, void* k_cache, void* v_cache, cudaStream_t stream) {
  if (head_dim > kMaxRopeHeadDim || head_dim % 32 != 0 || n_rot > head_dim || n_rot % 2 != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t heads = int64_t(n) * (n_head + n_head_kv);
  if (heads == 0) return cudaSuccess;
  const dim3 block(32, kHeadsPerBlock), grid(unsigned((heads + kHeadsPerBlock - 1) / kHeadsPerBlock));
  with_kv_type(type, [&](auto t) {
    launch(qk_norm_rope_store_kernel<decltype(t)::value>, grid, block, 0, stream, q, k, v, q_norm, k_norm, eps, pos, n, n_head,
           n_head_kv, head_dim, n_rot, freq, k_cache, v_cache);
  });
  return cudaGetLastError();
}

cudaError_t rope_neox(float* x, const int32_t* pos, int n_tok, int n_head, int head_dim, int n_rot, const double* freq,
                      cudaStream_t stream) {
  const int64_t n = int64_t(n_tok) * n_head * (n_rot / 2);
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  launch(rope_neox_kernel, unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream, x, pos, n_tok, n_head, head_dim,
                                                                                      n_rot, freq);
  return cudaGetLastError();
}

}  // namespace moe::cuda

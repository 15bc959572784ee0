#pragma once
// A head's RMSNorm and NEOX rotation by one warp, shared by the q/k norm + RoPE + KV store
// kernel (rope.cu) and the decode attention that norms and rotates its own query and key
// (attention.cu), so both compute the same bits.
#include "ops/cuda/warp.cuh"

namespace moe::cuda {

constexpr int kMaxRopeHeadDim = 256;

// out[i] for i < head_dim (lane l writes l, l + 32, ...): x RMS-normed with weights w (sum of
// squares in double, as rms_norm()), then its first n_rot dims rotated at position pos (the
// angle pos * freq[j] in double, as rope_neox()). `normed` is the warp's scratch of head_dim
// floats in shared memory; out may be x.
__device__ inline void norm_rope_head(const float* x, const float* w, float eps, int head_dim, int n_rot,
                                      const double* freq, int pos, float* normed, float* out) {
  const int lane = threadIdx.x;
  double sum = 0;
  for (int i = lane; i < head_dim; i += 32) sum += double(x[i]) * x[i];
  sum = warp_sum(sum);
  const float scale = float(1.0 / sqrt(sum / double(head_dim) + eps));
  for (int i = lane; i < head_dim; i += 32) normed[i] = x[i] * scale * w[i];
  __syncwarp();
  const int half = n_rot / 2;
  for (int i = lane; i < head_dim; i += 32) {
    float o = normed[i];
    if (i < n_rot) {
      const int j = i < half ? i : i - half;  // the pair (j, j + half)
      const double theta = double(pos) * freq[j];
      const float c = float(cos(theta)), sn = float(sin(theta)), a = normed[j], b = normed[j + half];
      o = i < half ? __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, sn)) : __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, c));
    }
    out[i] = o;
  }
  __syncwarp();
}

}  // namespace moe::cuda

#pragma once
// A head's RMSNorm and NEOX rotation, shared by the RoPE kernels (rope.cu) and the decode
// attention that norms and rotates its own query and key (attention.cu), so all compute the
// same bits.
#include "ops/cuda/warp.cuh"

namespace moe::cuda {

constexpr int kMaxRopeHeadDim = 256;

// The rotation of pair j at position pos: the cosine and sine of the angle pos * freq[j],
// computed in double and rounded to float, as rope_neox() does on the CPU.
__device__ inline float2 rope_rotation(const double* freq, int pos, int j) {
  const double theta = double(pos) * freq[j];
  return make_float2(float(cos(theta)), float(sin(theta)));
}

// rot[j] for the n_rot / 2 pairs, thread `index` of `count` taking every count-th pair. The
// double sine and cosine are long dependent chains: a head's pairs computed side by side by
// many threads cost one chain, where one warp walking all of them cost several.
__device__ inline void fill_rotations(const double* freq, int pos, int n_rot, float2* rot, int index, int count) {
  for (int j = index; j < n_rot / 2; j += count) rot[j] = rope_rotation(freq, pos, j);
}

// normed[i] for i < head_dim (lane l writes l, l + 32, ...): x RMS-normed with weights w, the
// sum of squares in double, as rms_norm() on the CPU. One warp.
__device__ inline void rms_norm_head(const float* x, const float* w, float eps, int head_dim, float* normed) {
  const int lane = threadIdx.x;
  double sum = 0;
  for (int i = lane; i < head_dim; i += 32) sum += double(x[i]) * x[i];
  sum = warp_sum(sum);
  const float scale = float(1.0 / sqrt(sum / double(head_dim) + eps));
  for (int i = lane; i < head_dim; i += 32) normed[i] = x[i] * scale * w[i];
  __syncwarp();
}

// out[i] for i < head_dim (lane l writes l, l + 32, ...): the first n_rot dims of a normed head
// rotated NEOX-style by the table rot (fill_rotations), the rest as they are. One warp; out may
// be the head rms_norm_head read, not `normed`.
__device__ inline void rotate_head(const float* normed, int head_dim, int n_rot, const float2* rot, float* out) {
  const int lane = threadIdx.x, half = n_rot / 2;
  for (int i = lane; i < head_dim; i += 32) {
    float o = normed[i];
    if (i < n_rot) {
      const int j = i < half ? i : i - half;  // the pair (j, j + half)
      const float c = rot[j].x, sn = rot[j].y, a = normed[j], b = normed[j + half];
      o = i < half ? __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, sn)) : __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, c));
    }
    out[i] = o;
  }
  __syncwarp();
}

}  // namespace moe::cuda

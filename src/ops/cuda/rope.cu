// NEOX RoPE: one thread per rotated pair (i, i + n_rot / 2) of one head of one token.
#include "ops/cuda/ops.h"

namespace moe::cuda {
namespace {

__global__ void rope_neox_kernel(float* x, const int32_t* __restrict__ pos, int n_tok, int n_head, int head_dim,
                                 int n_rot, float base) {
  const int half = n_rot / 2;
  const int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= int64_t(n_tok) * n_head * half) return;
  const int i = int(id % half);
  const int64_t head = id / half;  // token * n_head + h
  const int t = int(head / n_head);
  const double theta = double(pos[t]) * pow(double(base), -2.0 * i / n_rot);
  const float c = float(cos(theta)), s = float(sin(theta));
  float* h = x + head * head_dim;
  const float a = h[i], b = h[i + half];
  // Rounded products, then the sum, as the CPU build computes them (no fused multiply-add).
  h[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
  h[i + half] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
}

}  // namespace

cudaError_t rope_neox(float* x, const int32_t* pos, int n_tok, int n_head, int head_dim, int n_rot, float base,
                      cudaStream_t stream) {
  const int64_t n = int64_t(n_tok) * n_head * (n_rot / 2);
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  rope_neox_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(x, pos, n_tok, n_head, head_dim,
                                                                                      n_rot, base);
  return cudaGetLastError();
}

}  // namespace moe::cuda

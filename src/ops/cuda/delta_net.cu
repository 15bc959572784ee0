// The delta-net's kernels. The state is the big operand (d_v x d_k floats per value head,
// 2 MiB a layer for Qwen3-Next-80B): each warp keeps one row of it in registers for all the
// tokens of a call, so prefill reads and writes the state once, not once a token.
#include "ops/cuda/launch.cuh"
#include "ops/cuda/delta_net.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxConvKernel = 8, kMaxStateDim = 256, kRowsPerBlock = 4;

__device__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// One thread per channel, the tokens in order; the CPU's sum order (taps oldest first).
__global__ void conv1d_silu_kernel(float* x, int n, int channels, int64_t x_stride, const float* __restrict__ w, int K,
                                   float* state) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  float hist[kMaxConvKernel];
  for (int i = 0; i < K - 1; ++i) hist[i] = state[int64_t(c) * (K - 1) + i];
  const float* wc = w + int64_t(c) * K;
  for (int t = 0; t < n; ++t) {
    float& v = x[int64_t(t) * x_stride + c];
    float y = 0.0f;
    for (int tap = 0; tap < K - 1; ++tap) y = __fadd_rn(y, __fmul_rn(wc[tap], hist[tap]));
    y = __fadd_rn(y, __fmul_rn(wc[K - 1], v));
    for (int i = 0; i + 1 < K - 1; ++i) hist[i] = hist[i + 1];
    hist[K - 2] = v;
    v = silu(y);
  }
  for (int i = 0; i < K - 1; ++i) state[int64_t(c) * (K - 1) + i] = hist[i];
}

// x / max(||x||, eps) of a warp's vector (kPer values a lane), the CPU's l2_normalize.
template <int kPer>
__device__ void l2_normalize(float (&x)[kPer], int per, float eps) {
  double sum = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    if (i < per) sum += double(x[i]) * x[i];
  }
  const float inv = float(1.0 / fmax(sqrt(warp_sum(sum)), double(eps)));
#pragma unroll
  for (int i = 0; i < kPer; ++i) x[i] *= inv;
}

// One warp per state row (value head h, value j); lane l holds columns l, l + 32, ...
template <int kPer>
__global__ void delta_rule_kernel(DeltaRuleBatch b) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.y, lane = threadIdx.x;
  if (row >= b.n_v_heads * b.d_v) return;
  const int h = row / b.d_v, j = row % b.d_v;
  const int r = b.n_v_heads / b.n_k_heads, kh = h / r, key_dim = b.n_k_heads * b.d_k;
  const int per = b.d_k / 32;
  const float q_scale = 1.0f / sqrtf(float(b.d_k));
  const float a = b.a[h], dt_bias = b.dt_bias[h];
  float* srow = b.state + int64_t(row) * b.d_k;
  float s[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) s[i] = i < per ? srow[lane + 32 * i] : 0.0f;

  for (int t = 0; t < b.n; ++t) {
    const float* x = b.qkv + int64_t(t) * b.qkv_stride;
    const float* q_in = x + kh * b.d_k;
    const float* k_in = x + key_dim + kh * b.d_k;
    float q[kPer], k[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      q[i] = i < per ? q_in[lane + 32 * i] : 0.0f;
      k[i] = i < per ? k_in[lane + 32 * i] : 0.0f;
    }
    l2_normalize(q, per, b.eps);
    l2_normalize(k, per, b.eps);
#pragma unroll
    for (int i = 0; i < kPer; ++i) q[i] *= q_scale;
    const float v = x[2 * key_dim + h * b.d_v + j];
    const float* gates = b.ba + int64_t(t) * b.ba_stride + kh * 2 * r;
    const float beta = sigmoid(gates[h % r]);
    const float decay = expf(a * softplus(gates[r + h % r] + dt_bias));

    float sk = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      s[i] *= decay;
      sk += s[i] * k[i];
    }
    const float delta = beta * (v - warp_sum(sk));
    float o = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      s[i] += k[i] * delta;
      o += s[i] * q[i];
    }
    o = warp_sum(o);
    if (lane == 0) b.out[int64_t(t) * b.n_v_heads * b.d_v + row] = o;
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    if (i < per) srow[lane + 32 * i] = s[i];
  }
}

// One warp per row: the sum of squares in double, as the CPU's rms_norm.
__global__ void gated_rms_norm_kernel(const float* o, const float* __restrict__ z, const float* __restrict__ w,
                                      float eps, int64_t rows, int width, float* out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const int lane = threadIdx.x;
  const float* x = o + row * width;
  double sum = 0;
  for (int i = lane; i < width; i += 32) sum += double(x[i]) * x[i];
  const float scale = float(1.0 / sqrt(warp_sum(sum) / double(width) + eps));
  for (int i = lane; i < width; i += 32) out[row * width + i] = x[i] * scale * w[i] * silu(z[row * width + i]);
}

}  // namespace

cudaError_t conv1d_silu(float* x, int n, int channels, int64_t x_stride, const float* w, int K, float* state,
                        cudaStream_t stream) {
  if (K < 2 || K > kMaxConvKernel) return cudaErrorInvalidValue;
  if (n == 0 || channels == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  launch(conv1d_silu_kernel, unsigned((channels + kThreads - 1) / kThreads), kThreads, 0, stream, x, n, channels,
         x_stride,
                                                                                              w, K, state);
  return cudaGetLastError();
}

cudaError_t delta_rule(const DeltaRuleBatch& b, cudaStream_t stream) {
  if (b.d_k % 32 != 0 || b.d_k > kMaxStateDim || b.n_k_heads <= 0 || b.n_v_heads % b.n_k_heads != 0) {
    return cudaErrorInvalidValue;
  }
  if (b.n == 0) return cudaSuccess;
  const int rows = b.n_v_heads * b.d_v;
  const dim3 block(32, kRowsPerBlock), grid(unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  if (b.d_k <= 128) {
    launch(delta_rule_kernel<4>, grid, block, 0, stream, b);
  } else {
    launch(delta_rule_kernel<8>, grid, block, 0, stream, b);
  }
  return cudaGetLastError();
}

cudaError_t gated_rms_norm(const float* o, const float* z, const float* w, float eps, int64_t rows, int width,
                           float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const dim3 block(32, kRowsPerBlock), grid(unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  launch(gated_rms_norm_kernel, grid, block, 0, stream, o, z, w, eps, rows, width, out);
  return cudaGetLastError();
}

}  // namespace moe::cuda

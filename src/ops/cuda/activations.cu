// Activation quantization, one warp per block: the CPU's arithmetic (ops/cpu/quantize.cpp)
// value for value, so the integer sums of the products are the same on both backends.
#include <cuda_fp16.h>

#include "ops/cuda/activations.h"

namespace moe::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

// Q8_0: lane i quantizes value i of a 32-value block.
__global__ void quantize_q8_0_kernel(const float* __restrict__ x, int64_t n_blocks, int8_t* __restrict__ qs,
                                     float* __restrict__ scales) {
  const int64_t b = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (b >= n_blocks) return;
  const float v = x[b * 32 + threadIdx.x];
  float amax = fabsf(v);
#pragma unroll
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, off));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  qs[b * 32 + threadIdx.x] = int8_t(roundf(v * id));
  if (threadIdx.x == 0) scales[b] = __half2float(__float2half_rn(d));
}

// Q8_K: lane i holds values 8i .. 8i + 7 of a 256-value block.
__global__ void quantize_q8_k_kernel(const float* __restrict__ x, int64_t n_blocks, int8_t* __restrict__ qs,
                                     float* __restrict__ scales, int* __restrict__ sums) {
  const int64_t b = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (b >= n_blocks) return;
  const int lane = threadIdx.x;
  const float* in = x + b * 256 + 8 * lane;
  float v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = in[i];
  // The signed value of largest magnitude, the first one on ties (the CPU scans in order).
  float amax = 0.0f, max = 0.0f;
  int first = 256;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (fabsf(v[i]) > amax) amax = fabsf(v[i]), max = v[i], first = 8 * lane + i;
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    const float a = __shfl_xor_sync(0xFFFFFFFFu, amax, off), m = __shfl_xor_sync(0xFFFFFFFFu, max, off);
    const int f = __shfl_xor_sync(0xFFFFFFFFu, first, off);
    if (a > amax || (a == amax && f < first)) amax = a, max = m, first = f;
  }
  int8_t q[8] = {};
  float d = 0.0f;
  if (max != 0.0f) {
    const float iscale = -127.0f / max;
#pragma unroll
    for (int i = 0; i < 8; ++i) q[i] = int8_t(min(127, __float2int_rn(iscale * v[i])));
    d = 1.0f / iscale;
  }
  int sum = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    qs[b * 256 + 8 * lane + i] = q[i];
    sum += q[i];
  }
  // Lanes 2j and 2j + 1 hold the 16 values of sum j.
  sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
  if (lane % 2 == 0) sums[b * 16 + lane / 2] = sum;
  if (lane == 0) scales[b] = d;
}

}  // namespace

cudaError_t launch_quantize_q8_0(const float* x, int64_t n, int8_t* qs, float* scales, cudaStream_t stream) {
  const int64_t n_blocks = n / 32;
  const dim3 block(32, kWarpsPerBlock), grid(unsigned((n_blocks + kWarpsPerBlock - 1) / kWarpsPerBlock));
  quantize_q8_0_kernel<<<grid, block, 0, stream>>>(x, n_blocks, qs, scales);
  return cudaGetLastError();
}

cudaError_t launch_quantize_q8_k(const float* x, int64_t n, int8_t* qs, float* scales, int* sums, cudaStream_t stream) {
  const int64_t n_blocks = n / 256;
  const dim3 block(32, kWarpsPerBlock), grid(unsigned((n_blocks + kWarpsPerBlock - 1) / kWarpsPerBlock));
  quantize_q8_k_kernel<<<grid, block, 0, stream>>>(x, n_blocks, qs, scales, sums);
  return cudaGetLastError();
}

}  // namespace moe::cuda

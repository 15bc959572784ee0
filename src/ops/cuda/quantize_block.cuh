#pragma once
// Activation quantization inside a kernel, the CPU's arithmetic (ops/cpu/quantize.cpp) value
// for value: the quantization kernels (activations.cu) and the fused kernels that quantize
// their own inputs or outputs (a product's SwiGLU, attention's output) share these, so a fused
// kernel writes the bytes of the ops it fuses.
#include <cuda_fp16.h>

#include <cstdint>

#include "ops/cuda/warp.cuh"

namespace moe::cuda {

// The Q8_0 rounding of one warp's 32 values (lane i holds value i): quantize_row_q8_0's
// arithmetic (the scale from the largest magnitude, the reciprocal multiplied and rounded half
// away from zero), each lane's int8 and the block's scale as the f16 it is kept in.
struct LaneQ8_0 {
  int8_t q;
  __half d;
};
__device__ inline LaneQ8_0 round_lanes_q8_0(float v) {
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  return {int8_t(roundf(v * id)), __float2half_rn(d)};
}

// The Q4_0 rounding of one warp's 32 values (lane i holds value i): quantize_row_q4_0's
// arithmetic: the scale maps the value of largest magnitude (with its sign, the first on ties)
// to -8; each value times the reciprocal plus 8.5, truncated (no fused multiply-add, as the CPU
// build computes it) and capped at 15. Each lane's level (0..15) and the block's f16 scale.
struct LaneQ4_0 {
  int q;
  __half d;
};
// The warp's value of largest magnitude with its sign, the first (lowest index) on ties, as the
// CPU's in-order scan finds it: each lane brings its own candidate (amax = |max|, at `first`);
// every lane ends with the warp's.
__device__ inline void warp_signed_absmax(float& amax, float& max, int& first) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    const float a = __shfl_xor_sync(0xFFFFFFFFu, amax, off), m = __shfl_xor_sync(0xFFFFFFFFu, max, off);
    const int f = __shfl_xor_sync(0xFFFFFFFFu, first, off);
    if (a > amax || (a == amax && f < first)) amax = a, max = m, first = f;
  }
}

__device__ inline LaneQ4_0 round_lanes_q4_0(float v) {
  float amax = fabsf(v), max = v;
  int first = threadIdx.x & 31;
  warp_signed_absmax(amax, max, first);
  const float d = (amax == 0.0f ? 0.0f : max) / -8.0f;  // all zero: the CPU keeps max at +0
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  return {min(15, __float2int_rz(__fadd_rn(__fmul_rn(v, id), 8.5f))), __float2half_rn(d)};
}

// One warp quantizes one Q8_0 block: lane i holds value i of the block ...
__device__ inline void quantize_lanes_q8_0(float v, int8_t* qs, float* scale) {
  const LaneQ8_0 r = round_lanes_q8_0(v);
  qs[threadIdx.x] = r.q;
  if (threadIdx.x == 0) *scale = __half2float(r.d);
}

// ... the 32 values at x (Q8_0) ...
__device__ inline void quantize_block_q8_0(const float* x, int8_t* qs, float* scale) {
  quantize_lanes_q8_0(x[threadIdx.x], qs, scale);
}

// ... or the 256 values at x (Q8_K, lane i takes values 8i .. 8i + 7; sums[16]).
__device__ inline void quantize_block_q8_k(const float* x, int8_t* qs, float* scale, int* sums) {
  const int lane = threadIdx.x;
  float v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = x[8 * lane + i];
  // The signed value of largest magnitude, the first one on ties (the CPU scans in order).
  float amax = 0.0f, max = 0.0f;
  int first = 256;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (fabsf(v[i]) > amax) amax = fabsf(v[i]), max = v[i], first = 8 * lane + i;
  }
  warp_signed_absmax(amax, max, first);
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
    qs[8 * lane + i] = q[i];
    sum += q[i];
  }
  // Lanes 2j and 2j + 1 hold the 16 values of sum j.
  sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
  if (lane % 2 == 0) sums[lane / 2] = sum;
  if (lane == 0) *scale = d;
}

// The warps of a block quantize row `row` of `width` values, held in shared memory: warp
// `first` takes the row's quantization block `first`, then every `step`-th (by default the
// block's warps share the row; a grid whose blocks all hold the row shares it out by grid-wide
// warp numbers).
__device__ inline void quantize_row(const float* values, int64_t row, int64_t width, bool k_quant, int8_t* qs,
                                    float* scales, int* sums, int64_t first = threadIdx.y, int64_t step = blockDim.y) {
  const int block = k_quant ? 256 : 32;
  for (int64_t b = first; b < width / block; b += step) {
    const int64_t at = row * width + b * block;
    if (k_quant) {
      quantize_block_q8_k(values + b * block, qs + at, scales + at / 256, sums + at / 16);
    } else {
      quantize_block_q8_0(values + b * block, qs + at, scales + at / 32);
    }
  }
}


}  // namespace moe::cuda

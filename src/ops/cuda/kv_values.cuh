#pragma once
// Reading and writing the KV cache's values in either of its types (attention.h's KvType), for
// the kernels that store keys and values (rope.cu, attention.cu) and those that read them.
// Writes round as the CPU engine's cache does (quantize_row / f32_to_f16), so a value stored on
// either side reads back as the same float.
#include <cuda_fp16.h>

#include <cstdint>

#include "ops/cuda/attention.h"
#include "ops/cuda/quantize_block.cuh"

namespace moe::cuda {

// Value i of a cache (i counts values: position * kv_dim + dim).
template <KvType kType>
__device__ __forceinline__ float kv_value(const void* cache, int64_t i) {
  if constexpr (kType == KvType::F16) {
    return __half2float(static_cast<const __half*>(cache)[i]);
  } else {
    const auto* block = static_cast<const uint8_t*>(cache) + (i >> 5) * int64_t(kKvQ8BlockBytes);
    return __half2float(*reinterpret_cast<const __half*>(block)) * float(int8_t(block[2 + (i & 31)]));
  }
}

// One warp keeps 32 consecutive values, value `lane` of them in each lane, starting at value i
// (a multiple of 32), and returns each lane's value as the cache now reads it. With cache null
// nothing is written: the value is only rounded (Q8_0: with the scale of the warp's 32).
// Every lane of the warp must take part.
template <KvType kType>
__device__ __forceinline__ float kv_keep_lanes(void* cache, int64_t i, float v) {
  const int lane = threadIdx.x & 31;
  if constexpr (kType == KvType::F16) {
    const __half h = __float2half_rn(v);
    if (cache) static_cast<__half*>(cache)[i + lane] = h;
    return __half2float(h);
  } else {
    const LaneQ8_0 r = round_lanes_q8_0(v);
    if (cache) {
      auto* block = static_cast<uint8_t*>(cache) + (i >> 5) * int64_t(kKvQ8BlockBytes);
      block[2 + lane] = uint8_t(r.q);
      if (lane == 0) *reinterpret_cast<__half*>(block) = r.d;
    }
    return __half2float(r.d) * float(r.q);
  }
}

}  // namespace moe::cuda

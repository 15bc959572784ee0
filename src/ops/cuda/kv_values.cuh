#pragma once
// Reading and writing the KV cache's values in any of its types (attention.h's KvType), for
// the kernels that store keys and values (rope.cu, attention.cu) and those that read them.
// Writes round as the CPU engine's cache does (quantize_row / f32_to_f16), so a value stored on
// either side reads back as the same float.
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "ops/cuda/attention.h"
#include "ops/cuda/quantize_block.cuh"

namespace moe::cuda {

// Bytes of one block of 32 values of a quantized cache.
template <KvType kType>
constexpr int64_t kKvBlockBytes = int64_t(kType == KvType::Q8_0 ? kKvQ8BlockBytes : kKvQ4BlockBytes);

// Value j (0..31) of a quantized block as the integer its scale multiplies (Q4_0: level - 8).
template <KvType kType>
__device__ __forceinline__ int kv_block_int(const uint8_t* block, int j) {
  if constexpr (kType == KvType::Q8_0) {
    return int8_t(block[2 + j]);
  } else {
    const int byte = block[2 + (j & 15)];
    return (j < 16 ? byte & 15 : byte >> 4) - 8;
  }
}
__device__ __forceinline__ float kv_block_scale(const uint8_t* block) {
  return __half2float(*reinterpret_cast<const __half*>(block));
}

// kDims consecutive values of one position's head, value `first` (a multiple of kDims) onward:
// what one lane of decode attention reads a position (lane l takes dims kDims * l ...). kDims
// divides 32, so the run lies in one block of a quantized cache: its bytes come in 2-byte
// loads (a block's values are 2-byte aligned) and one scale, instead of a byte and a scale a
// value; an f16 run is one load of 2 kDims bytes.
template <KvType kType, int kDims>
struct KvRun {
  static_assert(kDims == 1 || kDims == 2 || kDims == 4 || kDims == 8);
  static constexpr int kBytes = kType == KvType::F16 ? 2 * kDims : kDims;
  uint32_t raw[(kBytes + 3) / 4] = {};  // f16 bits, int8 values, or Q4_0 levels (0..15), in order
  float scale = 1.0f;

  __device__ __forceinline__ void load(const void* cache, int64_t first) {
    if constexpr (kType == KvType::F16) {
      const auto* p = static_cast<const __half*>(cache) + first;
      if constexpr (kDims == 8) {
        const uint4 u = *reinterpret_cast<const uint4*>(p);
        raw[0] = u.x, raw[1] = u.y, raw[2] = u.z, raw[3] = u.w;
      } else if constexpr (kDims == 4) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        raw[0] = u.x, raw[1] = u.y;
      } else if constexpr (kDims == 2) {
        raw[0] = *reinterpret_cast<const uint32_t*>(p);
      } else {
        raw[0] = *reinterpret_cast<const unsigned short*>(p);
      }
    } else {
      const auto* block = static_cast<const uint8_t*>(cache) + (first >> 5) * kKvBlockBytes<kType>;
      const int j = int(first & 31);
      scale = kv_block_scale(block);
      const uint8_t* q = block + 2 + (kType == KvType::Q8_0 ? j : j % 16);
      if constexpr (kDims == 1) {
        raw[0] = *q;
      } else {
        const auto* h = reinterpret_cast<const unsigned short*>(q);
#pragma unroll
        for (int k = 0; k < kDims / 2; ++k) raw[k / 2] |= uint32_t(h[k]) << (16 * (k % 2));
      }
      if constexpr (kType == KvType::Q4_0) {  // values 16..31 of a block are the high nibbles
#pragma unroll
        for (int w = 0; w < (kBytes + 3) / 4; ++w) raw[w] = (raw[w] >> (j < 16 ? 0 : 4)) & 0x0F0F0F0Fu;
      }
    }
  }
  // Value i of the run as a float.
  __device__ __forceinline__ float value(int i) const {
    if constexpr (kType == KvType::F16) {
      return __half2float(__ushort_as_half((unsigned short)(raw[i / 2] >> (16 * (i % 2)))));
    } else {
      const int byte = int((raw[i / 4] >> (8 * (i % 4))) & 0xFF);
      return scale * float(kType == KvType::Q8_0 ? int(int8_t(byte)) : byte - 8);
    }
  }
};

// Value i of a cache (i counts values: position * kv_dim + dim): a run of one.
template <KvType kType>
__device__ __forceinline__ float kv_value(const void* cache, int64_t i) {
  KvRun<kType, 1> run;
  run.load(cache, i);
  return run.value(0);
}

// One warp keeps 32 consecutive values, value `lane` of them in each lane, starting at value i
// (a multiple of 32), and returns each lane's value as the cache now reads it. With cache null
// nothing is written: the value is only rounded (Q8_0, Q4_0: with the scale of the warp's 32).
// Every lane of the warp must take part.
template <KvType kType>
__device__ __forceinline__ float kv_keep_lanes(void* cache, int64_t i, float v) {
  const int lane = threadIdx.x & 31;
  auto* block = cache ? static_cast<uint8_t*>(cache) + (i >> 5) * kKvBlockBytes<kType> : nullptr;
  if constexpr (kType == KvType::F16) {
    const __half h = __float2half_rn(v);
    if (cache) static_cast<__half*>(cache)[i + lane] = h;
    return __half2float(h);
  } else if constexpr (kType == KvType::Q8_0) {
    const LaneQ8_0 r = round_lanes_q8_0(v);
    if (block) {
      block[2 + lane] = uint8_t(r.q);
      if (lane == 0) *reinterpret_cast<__half*>(block) = r.d;
    }
    return __half2float(r.d) * float(r.q);
  } else {
    const LaneQ4_0 r = round_lanes_q4_0(v);
    const int high = __shfl_down_sync(0xFFFFFFFFu, r.q, 16);  // lane j < 16 packs values j and j + 16
    if (block) {
      if (lane < 16) block[2 + lane] = uint8_t(r.q | (high << 4));
      if (lane == 0) *reinterpret_cast<__half*>(block) = r.d;
    }
    return __half2float(r.d) * float(r.q - 8);
  }
}

// Calls f(std::integral_constant<KvType, T>{}) with the cache type given at run time, for the
// launchers that pick a kernel instantiation.
template <class F>
decltype(auto) with_kv_type(KvType type, F&& f) {
  switch (type) {
    case KvType::Q8_0: return f(std::integral_constant<KvType, KvType::Q8_0>{});
    case KvType::Q4_0: return f(std::integral_constant<KvType, KvType::Q4_0>{});
    default: return f(std::integral_constant<KvType, KvType::F16>{});
  }
}

}  // namespace moe::cuda

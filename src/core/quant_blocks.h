#pragma once
// Quantized block layouts, byte for byte as ggml stores them in GGUF files (see
// reference/qwen-architectures.md section 6). A row of n values is n / kBlock consecutive
// blocks; blocks are packed (no padding) and may sit at any byte address, so code reads
// them through memcpy or unaligned SIMD loads, never through an aligned pointer cast.
#include <cstdint>

#include "core/fp16.h"

namespace moe {

constexpr int kQK8_0 = 32;   // values per Q8_0 / Q4_0 block
constexpr int kQK_K = 256;   // values per K-quant super-block
constexpr int kKScaleBytes = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

// x[i] = d * qs[i]
struct BlockQ8_0 {
  f16 d;
  int8_t qs[kQK8_0];
};

// x[j] = d * ((qs[j] & 0xF) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8)
struct BlockQ4_0 {
  f16 d;
  uint8_t qs[kQK8_0 / 2];
};

// Activation-only format of the K-quant dot products: x[i] = d * qs[i];
// bsums[j] = sum of qs[16j .. 16j + 15], which folds the weights' offsets into one multiply.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

// Eight sub-blocks of 32 values, 6-bit scale sc and 6-bit min m each (packed in scales):
// x = d * sc * q - dmin * m, q in 0..15.
struct BlockQ4_K {
  f16 d;
  f16 dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};

// Like Q4_K with a fifth bit per value in qh: q in 0..31.
struct BlockQ5_K {
  f16 d;
  f16 dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};

// Sixteen sub-blocks of 16 values with a signed 8-bit scale: x = d * sc * (q - 32),
// q in 0..63 (low 4 bits in ql, high 2 bits in qh). Note d comes last.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  f16 d;
};

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block.
inline void unpack_k_scale(const uint8_t* scales, int j, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = scales[j] & 63;
    m = scales[j + 4] & 63;
  } else {
    sc = uint8_t((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4));
    m = uint8_t((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

}  // namespace moe

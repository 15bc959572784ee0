#pragma once
// Weights repacked at load into a layout the decode kernels read faster: 16 rows interleaved.
//
// Why: a Q4_K row kernel spends most of its instructions rearranging each 144-byte block
// (unpacking 6-bit scales, broadcasting them to the lanes of their sub-blocks, reordering
// nibbles) and, at one token, reaches only ~20 GB/s a core. With 16 rows side by side, a SIMD
// lane is a row: four activation bytes are broadcast to all 16 lanes, a sub-block's scales for
// the 16 rows are one 16-byte load, and a weight byte is used as it lies.
//
// BlockQ4_Kx16: 16 rows x 256 values of Q4_K, the same quantized numbers rearranged:
//   d[16], dmin[16]          f16, row r's block scales
//   scales[8][16]            6-bit scale of sub-block s (32 values) for row r, one byte each
//   mins[4][16][2]           the mins of sub-blocks 2p and 2p + 1 for row r, side by side
//   qs[8][4][16][4]          sub-block s, chunk c, row r, byte b: value s*32 + 4c + b in the
//                            low nibble, value s*32 + 16 + 4c + b in the high nibble
// 2368 bytes against 16 x 144 = 2304: the expanded scales cost 2.8% more bytes.
// A matrix in this layout is rows / 16 groups, each cols / 256 such blocks back to back.
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/cpu_features.h"
#include "core/ggml_type.h"
#include "core/quant_blocks.h"

namespace moe {

constexpr int kInterleaveRows = 16;

struct BlockQ4_Kx16 {
  f16 d[kInterleaveRows];
  f16 dmin[kInterleaveRows];
  uint8_t scales[8][kInterleaveRows];
  uint8_t mins[4][kInterleaveRows][2];
  uint8_t qs[8][4][kInterleaveRows][4];
};
static_assert(sizeof(BlockQ4_Kx16) == 2368);

// How a WeightView's bytes are arranged.
enum class WeightLayout : uint8_t {
  Rows,          // GGUF's: one row after another
  Q4_Kx16,       // Q4_K, 16 rows interleaved (above)
};

// The weight type an interleaved layout holds; nullopt for Rows, which holds any.
std::optional<GgmlType> interleaved_type(WeightLayout layout);

// The interleaved layout for a weight type, or Rows when there is none (or the CPU has no
// kernel for it: the interleaved kernels need AVX-512 VNNI; elsewhere it would only be slower).
WeightLayout interleaved_layout(GgmlType type, SimdLevel level);
inline WeightLayout interleaved_layout(GgmlType type) { return interleaved_layout(type, active_simd_level()); }

// Bytes of one group of 16 rows of `cols` values in `layout`.
size_t interleaved_group_bytes(WeightLayout layout, int64_t cols);

// Repacks groups [g0, g1) of a rows x cols matrix: src is in GGUF row layout (row_stride
// bytes apart), dst the whole interleaved matrix. rows must be a multiple of 16.
void interleave_groups(WeightLayout layout, int64_t cols, const std::byte* src, size_t row_stride, int64_t g0,
                       int64_t g1, std::byte* dst);

// out[r * kMaxDotTokens + t] = dot(row r of the group, token t), r < 16, t < n_tok (1..4):
// x holds Q8_K activation rows x_stride bytes apart. A token's result does not depend on
// n_tok, and every kernel of a layout gives the same bits (integer sums per block, then the
// same float operations in the same order).
using GroupDotFn = void (*)(int64_t k, const std::byte* group, const std::byte* x, size_t x_stride, int n_tok,
                            float* out);

GroupDotFn group_dot_kernel(WeightLayout layout, SimdLevel level);  // throws for Rows
inline GroupDotFn group_dot_kernel(WeightLayout layout) { return group_dot_kernel(layout, active_simd_level()); }

// Per level; nullptr where a level has no kernel. The scalar one is the reference.
GroupDotFn group_dot_scalar(WeightLayout layout);
GroupDotFn group_dot_avx512(WeightLayout layout);

}  // namespace moe

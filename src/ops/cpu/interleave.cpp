// Repacking into the interleaved layouts, their scalar reference kernel and the run-time
// choice of kernel. Compiled without SIMD flags.
#include "ops/cpu/interleave.h"

#include <cmath>
#include <cstring>

#include "core/bytes.h"
#include "core/error.h"
#include "ops/cpu/vec_dot.h"

namespace moe {

WeightLayout interleaved_layout(GgmlType type, SimdLevel level) {
  if (type == GgmlType::Q4_K && vec_dot_level(level) == SimdLevel::Avx512) return WeightLayout::Q4_Kx16;
  return WeightLayout::Rows;
}

std::optional<GgmlType> interleaved_type(WeightLayout layout) {
  if (layout == WeightLayout::Q4_Kx16) return GgmlType::Q4_K;
  return std::nullopt;
}

size_t interleaved_group_bytes(WeightLayout layout, int64_t cols) {
  MOE_ASSERT(layout == WeightLayout::Q4_Kx16 && cols % kQK_K == 0);
  return static_cast<size_t>(cols / kQK_K) * sizeof(BlockQ4_Kx16);
}

namespace {

BlockQ4_Kx16 interleave_q4_k(const BlockQ4_K (&rows)[kInterleaveRows]) {
  BlockQ4_Kx16 out;
  for (int r = 0; r < kInterleaveRows; ++r) {
    const BlockQ4_K& b = rows[r];
    out.d[r] = b.d;
    out.dmin[r] = b.dmin;
    // The block's 256 quants in value order: group g of 64 values is 32 bytes, low nibbles first.
    uint8_t q[kQK_K];
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        q[64 * g + l] = b.qs[32 * g + l] & 0x0F;
        q[64 * g + 32 + l] = b.qs[32 * g + l] >> 4;
      }
    }
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      unpack_k_scale(b.scales, s, sc, m);
      out.scales[s][r] = sc;
      out.mins[s / 2][r][s % 2] = m;
      for (int c = 0; c < 4; ++c) {
        for (int i = 0; i < 4; ++i) {
          const int v = 32 * s + 4 * c + i;
          out.qs[s][c][r][i] = uint8_t(q[v] | q[v + 16] << 4);
        }
      }
    }
  }
  return out;
}

// The reference: per row and block, the integer sums of the scaled quants and of the mins,
// then two fused multiply-adds, exactly as the SIMD kernels order them.
void group_dot_q4_k_x16(int64_t k, const std::byte* group, const std::byte* x, size_t xs, int n_tok, float* out) {
  for (int t = 0; t < n_tok; ++t) {
    float acc[kInterleaveRows] = {};
    for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
      const auto b = load_unaligned<BlockQ4_Kx16>(group + ib * sizeof(BlockQ4_Kx16));
      const auto a = load_unaligned<BlockQ8_K>(x + t * xs + ib * sizeof(BlockQ8_K));
      for (int r = 0; r < kInterleaveRows; ++r) {
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 8; ++s) {
          int32_t sub = 0;
          for (int c = 0; c < 4; ++c) {
            for (int i = 0; i < 4; ++i) {
              const uint8_t q = b.qs[s][c][r][i];
              sub += (q & 0x0F) * a.qs[32 * s + 4 * c + i] + (q >> 4) * a.qs[32 * s + 16 + 4 * c + i];
            }
          }
          isum += sub * b.scales[s][r];
          msum += b.mins[s / 2][r][s % 2] * (a.bsums[2 * s] + a.bsums[2 * s + 1]);
        }
        const float d = f16_to_f32(b.d[r]), dmin = f16_to_f32(b.dmin[r]);
        acc[r] = std::fma(float(isum), d * a.d, acc[r]);
        acc[r] = std::fma(-float(msum), dmin * a.d, acc[r]);
      }
    }
    for (int r = 0; r < kInterleaveRows; ++r) out[r * kMaxDotTokens + t] = acc[r];
  }
}

}  // namespace

void interleave_groups(WeightLayout layout, int64_t cols, const std::byte* src, size_t row_stride, int64_t g0,
                       int64_t g1, std::byte* dst) {
  MOE_ASSERT(layout == WeightLayout::Q4_Kx16 && cols % kQK_K == 0 && g0 <= g1);
  const int64_t nb = cols / kQK_K;
  const size_t group_bytes = interleaved_group_bytes(layout, cols);
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t ib = 0; ib < nb; ++ib) {
      BlockQ4_K rows[kInterleaveRows];
      for (int r = 0; r < kInterleaveRows; ++r) {
        const std::byte* row = src + static_cast<size_t>(g * kInterleaveRows + r) * row_stride;
        rows[r] = load_unaligned<BlockQ4_K>(row + ib * sizeof(BlockQ4_K));
      }
      const BlockQ4_Kx16 block = interleave_q4_k(rows);
      std::memcpy(dst + static_cast<size_t>(g) * group_bytes + ib * sizeof(BlockQ4_Kx16), &block, sizeof block);
    }
  }
}

GroupDotFn group_dot_scalar(WeightLayout layout) {
  return layout == WeightLayout::Q4_Kx16 ? group_dot_q4_k_x16 : nullptr;
}

GroupDotFn group_dot_kernel(WeightLayout layout, SimdLevel level) {
  GroupDotFn fn = vec_dot_level(level) == SimdLevel::Avx512 ? group_dot_avx512(layout) : nullptr;
  if (!fn) fn = group_dot_scalar(layout);
  if (!fn) fail("no kernel for interleaved weight layout {}", static_cast<int>(layout));
  return fn;
}

}  // namespace moe

// K-quant (Q4_K, Q5_K, Q6_K) quantizers and decoders.
//
// Quantizing works in two levels, like the format: first every sub-block gets the float
// scale (and min) that minimises its squared error, by trying a range of step sizes and
// refitting each one by least squares; then those per-sub-block floats are themselves
// quantized to 6 or 8 bits against the super-block's f16 d (and dmin), and the values are
// finally re-rounded against the scales exactly as the decoder will reconstruct them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/bytes.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "ops/cpu/quantize.h"

namespace moe {
namespace {

// Round to nearest, ties to even, as lrintf in the default rounding mode, for |x| < 2^22:
// adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits. Inline, where
// lrintf is a libm call in the innermost loop of every quantizer here.
inline int nearest(float x) {
  const float shifted = x + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007FFFFF) - 0x00400000;
}

// Least-squares fit of x ~ s * L - m with L in [0, nmax] and m >= 0 (the format stores
// -m as an unsigned min, so offsets above zero are not representable). Returns s, m.
struct ScaleMin {
  float scale, min;
};

ScaleMin fit_scale_min(const float* x, int n, int nmax, QuantEffort effort) {
  float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  lo = std::min(lo, 0.0f);
  if (hi <= lo) return {0.0f, -lo};
  ScaleMin best{(hi - lo) / float(nmax), -lo};
  float best_err = INFINITY;
  // Step sizes around (hi - lo) / nmax; each rounding is then refit, so a slightly larger
  // or smaller step may move the rounding boundaries to a better place.
  const int trials = effort == QuantEffort::Best ? 10 : 0;
  for (int t = -trials; t <= trials; ++t) {
    const float iscale = (float(nmax) + 0.1f * float(t)) / (hi - lo);
    float sum_l = 0, sum_l2 = 0, sum_x = 0, sum_lx = 0;
    int l[kQK_K];
    for (int i = 0; i < n; ++i) {
      l[i] = std::clamp(nearest(iscale * (x[i] - lo)), 0, nmax);
      sum_l += float(l[i]);
      sum_l2 += float(l[i] * l[i]);
      sum_x += x[i];
      sum_lx += float(l[i]) * x[i];
    }
    const float det = float(n) * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float s = (float(n) * sum_lx - sum_l * sum_x) / det;
    float offset = (sum_l2 * sum_x - sum_l * sum_lx) / det;
    if (offset > 0) {  // refit without the offset
      offset = 0;
      s = sum_lx / sum_l2;
    }
    if (s <= 0) continue;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float e = s * float(l[i]) + offset - x[i];
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best = {s, -offset};
    }
  }
  return best;
}

// Least-squares fit of x ~ s * L with L in [-32, 31] (Q6_K). Returns s (either sign).
float fit_scale_symmetric(const float* x, int n, QuantEffort effort) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0;
  float best = max / -32.0f, best_err = INFINITY;
  // Mapping the extreme value to -32 uses the level with no positive twin; the trials also
  // try smaller and larger steps (the refit decides), including mapping it to +31.
  const int trials = effort == QuantEffort::Best ? 12 : 0;
  for (int t = -trials; t <= trials; ++t) {
    const float iscale = (-32.0f + 0.25f * float(t)) / max;
    float sum_lx = 0, sum_l2 = 0;
    int l[16];
    for (int i = 0; i < n; ++i) {
      l[i] = std::clamp(nearest(iscale * x[i]), -32, 31);
      sum_lx += float(l[i]) * x[i];
      sum_l2 += float(l[i] * l[i]);
    }
    if (sum_l2 == 0) continue;
    const float s = sum_lx / sum_l2;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float e = s * float(l[i]) - x[i];
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best = s;
    }
  }
  return best;
}

// Q4_K / Q5_K share everything but the width of q (4 or 5 bits): fills d, dmin, scales and
// the per-value levels L (0..nmax).
void quantize_k_scales(const float* x, int nmax, QuantEffort effort, f16& d_out, f16& dmin_out, uint8_t* packed,
                       uint8_t* levels) {
  constexpr int kSub = 32;
  float scale[8], min[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const ScaleMin sm = fit_scale_min(x + kSub * j, kSub, nmax, effort);
    scale[j] = sm.scale;
    min[j] = sm.min;
    max_scale = std::max(max_scale, scale[j]);
    max_min = std::max(max_min, min[j]);
  }
  d_out = f32_to_f16(max_scale / 63.0f);
  dmin_out = f32_to_f16(max_min / 63.0f);
  const float d = f16_to_f32(d_out), dmin = f16_to_f32(dmin_out);
  uint8_t sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = uint8_t(d > 0 ? std::clamp(nearest(scale[j] / d), 0, 63) : 0);
    m[j] = uint8_t(dmin > 0 ? std::clamp(nearest(min[j] / dmin), 0, 63) : 0);
  }
  for (int j = 0; j < 4; ++j) {
    packed[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    packed[j + 4] = uint8_t(m[j] | ((m[j + 4] >> 4) << 6));
    packed[j + 8] = uint8_t((sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4));
  }
  // Re-round every value against the scale and min the decoder will actually use.
  for (int j = 0; j < 8; ++j) {
    const float s = d * float(sc[j]), offset = dmin * float(m[j]);
    for (int i = 0; i < kSub; ++i) {
      levels[kSub * j + i] = uint8_t(s > 0 ? std::clamp(nearest((x[kSub * j + i] + offset) / s), 0, nmax) : 0);
    }
  }
}

}  // namespace

void quantize_row_q4_k(const float* x, std::byte* y, int64_t n, QuantEffort effort) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    BlockQ4_K b;
    uint8_t l[kQK_K];
    quantize_k_scales(x + i * kQK_K, 15, effort, b.d, b.dmin, b.scales, l);
    // Group g holds sub-block 2g in the low nibbles and 2g + 1 in the high nibbles.
    for (int g = 0; g < 4; ++g) {
      for (int j = 0; j < 32; ++j) b.qs[32 * g + j] = uint8_t(l[64 * g + j] | (l[64 * g + 32 + j] << 4));
    }
    std::memcpy(y + i * sizeof(BlockQ4_K), &b, sizeof b);
  }
}

void quantize_row_q5_k(const float* x, std::byte* y, int64_t n, QuantEffort effort) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    BlockQ5_K b;
    uint8_t l[kQK_K];
    quantize_k_scales(x + i * kQK_K, 31, effort, b.d, b.dmin, b.scales, l);
    std::memset(b.qh, 0, sizeof b.qh);
    for (int g = 0; g < 4; ++g) {
      for (int j = 0; j < 32; ++j) {
        const uint8_t lo = l[64 * g + j], hi = l[64 * g + 32 + j];
        b.qs[32 * g + j] = uint8_t((lo & 0x0F) | ((hi & 0x0F) << 4));
        b.qh[j] |= uint8_t(((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
      }
    }
    std::memcpy(y + i * sizeof(BlockQ5_K), &b, sizeof b);
  }
}

void quantize_row_q6_k(const float* x, std::byte* y, int64_t n, QuantEffort effort) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* in = x + i * kQK_K;
    float scale[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      scale[j] = fit_scale_symmetric(in + 16 * j, 16, effort);
      if (std::fabs(scale[j]) > amax) {
        amax = std::fabs(scale[j]);
        max_scale = scale[j];
      }
    }
    BlockQ6_K b{};
    // Like the values, the largest scale maps to -128, the int8 level without a positive twin.
    const float iscale = max_scale != 0 ? -128.0f / max_scale : 0.0f;
    b.d = f32_to_f16(max_scale != 0 ? 1.0f / iscale : 0.0f);
    const float d = f16_to_f32(b.d);
    uint8_t l[kQK_K];
    for (int j = 0; j < 16; ++j) {
      b.scales[j] = int8_t(std::min(127, nearest(iscale * scale[j])));
      const float s = d * float(b.scales[j]);
      for (int k = 0; k < 16; ++k) {
        l[16 * j + k] = uint8_t(s != 0 ? std::clamp(nearest(in[16 * j + k] / s), -32, 31) + 32 : 32);
      }
    }
    // Each half of 128 values: four runs of 32 share ql (low/high nibbles) and qh (2 bits each).
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = l + 128 * h;
      for (int k = 0; k < 32; ++k) {
        b.ql[64 * h + k] = uint8_t((q[k] & 0x0F) | ((q[k + 64] & 0x0F) << 4));
        b.ql[64 * h + k + 32] = uint8_t((q[k + 32] & 0x0F) | ((q[k + 96] & 0x0F) << 4));
        b.qh[32 * h + k] =
            uint8_t((q[k] >> 4) | ((q[k + 32] >> 4) << 2) | ((q[k + 64] >> 4) << 4) | ((q[k + 96] >> 4) << 6));
      }
    }
    std::memcpy(y + i * sizeof(BlockQ6_K), &b, sizeof b);
  }
}

namespace {

// Q4_K and Q5_K share the scale layout and the two-sub-blocks-per-64 order; Q5_K adds a fifth
// bit per value from qh (bit 2g for the low nibbles of group g, 2g + 1 for the high ones).
template <typename Block>
void dequantize_row_q45_k(const std::byte* x, float* y, int64_t n) {
  constexpr bool kHighBits = std::is_same_v<Block, BlockQ5_K>;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_unaligned<Block>(x + i * sizeof(Block));
    const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
    float* out = y + i * kQK_K;
    for (int g = 0; g < 4; ++g) {
      uint8_t sc0, m0, sc1, m1;
      unpack_k_scale(b.scales, 2 * g, sc0, m0);
      unpack_k_scale(b.scales, 2 * g + 1, sc1, m1);
      const float d0 = d * float(sc0), o0 = dmin * float(m0);
      const float d1 = d * float(sc1), o1 = dmin * float(m1);
      for (int l = 0; l < 32; ++l) {
        int lo = b.qs[32 * g + l] & 0x0F, hi = b.qs[32 * g + l] >> 4;
        if constexpr (kHighBits) {
          lo += 16 * ((b.qh[l] >> (2 * g)) & 1);
          hi += 16 * ((b.qh[l] >> (2 * g + 1)) & 1);
        }
        out[64 * g + l] = d0 * float(lo) - o0;
        out[64 * g + 32 + l] = d1 * float(hi) - o1;
      }
    }
  }
}

}  // namespace

void dequantize_row_q4_k(const std::byte* x, float* y, int64_t n) { dequantize_row_q45_k<BlockQ4_K>(x, y, n); }
void dequantize_row_q5_k(const std::byte* x, float* y, int64_t n) { dequantize_row_q45_k<BlockQ5_K>(x, y, n); }

void dequantize_row_q6_k(const std::byte* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_unaligned<BlockQ6_K>(x + i * sizeof(BlockQ6_K));
    const float d = f16_to_f32(b.d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* out = y + i * kQK_K + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l] = d * float(sc[is + 0]) * float(q1);
        out[l + 32] = d * float(sc[is + 2]) * float(q2);
        out[l + 64] = d * float(sc[is + 4]) * float(q3);
        out[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

}  // namespace moe

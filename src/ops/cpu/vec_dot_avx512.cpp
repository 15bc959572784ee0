// AVX-512 kernels (F, BW, VL, DQ, VNNI, with F16C). Built with -mavx512* flags; only ever
// called after vec_dot_level() has checked the CPU.
//
// Integer formats: Q8_0 / Q4_0 use vpdpbusd (u8 x s8 -> i32) on |w| and x with w's sign,
// two 32-value blocks per zmm. K-quants decode 128 weights into u8 lanes, multiply with
// vpmaddubsw (u8 x s8 -> i16 pairs) and apply the sub-block scales with vpdpwssd, which
// fuses the scale multiply and the i32 accumulation. Every weight block is decoded once and
// used for all NT tokens; each token's instruction sequence is the same for every NT.
#include "ops/cpu/simd_common.h"  // first: it includes <immintrin.h>
#include "ops/cpu/interleave.h"
#include "ops/cpu/vec_dot.h"

namespace moe {
namespace {

using namespace simd;

inline __m512i load512(const std::byte* p) { return _mm512_loadu_si512(p); }
inline __m256i load256(const std::byte* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load128(const std::byte* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// ---- f32 activations: F32, F16, BF16 weights --------------------------------------------

struct F32W {
  static __m512 load(const std::byte* w, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(w) + i);
  }
};
struct F16W {
  static __m512 load(const std::byte* w, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + 2 * i));
  }
};
struct BF16W {  // bf16 -> f32 is a 16-bit shift
  static __m512 load(const std::byte* w, int64_t i, __mmask16 m) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, w + 2 * i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
};

template <typename W>
struct DotFloat {
  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const float* xp[NT];
    __m512 acc0[NT], acc1[NT];
    for (int t = 0; t < NT; ++t) {
      xp[t] = reinterpret_cast<const float*>(x + t * xs);
      acc0[t] = acc1[t] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {  // two accumulators hide the FMA latency for NT = 1
      const __m512 w0 = W::load(w, i, 0xFFFF), w1 = W::load(w, i + 16, 0xFFFF);
      for (int t = 0; t < NT; ++t) {
        acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp[t] + i), acc0[t]);
        acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp[t] + i + 16), acc1[t]);
      }
    }
    for (; i < k; i += 16) {  // masked tail: any k
      const __mmask16 m = k - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - i)) - 1);
      const __m512 w0 = W::load(w, i, m);
      for (int t = 0; t < NT; ++t) acc0[t] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, xp[t] + i), acc0[t]);
    }
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
  }
};

// ---- Q8_0 / Q4_0 weights x Q8_0 activations ---------------------------------------------

// The 32 signed weights of one block (Q4_0: nibbles minus 8, low nibbles first).
template <bool kQ4>
inline __m256i block_weights(const std::byte* b) {
  if constexpr (kQ4) {
    const __m128i q = load128(b + 2), m4 = _mm_set1_epi8(0x0F);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m4)),
                                              _mm_and_si128(_mm_srli_epi16(q, 4), m4), 1);
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
  } else {
    return load256(b + 2);
  }
}

// [d0 x 8 | d1 x 8]: the f16 scales of two blocks `stride` bytes apart, as the zmm that
// scales their two halves. One conversion and one permute instead of two of each.
inline __m512 pair_scale(const std::byte* b, size_t stride) {
  uint16_t h0, h1;
  std::memcpy(&h0, b, 2);
  std::memcpy(&h1, b + stride, 2);
  const __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128(int(uint32_t(h0) | uint32_t(h1) << 16)));
  return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                               _mm512_castps128_ps512(d));
}

// An odd block count's last block (weights at b, activations at xb) added to acc's lower
// half. Shared by the row kernel and the tiles, so both give the same bits.
template <bool kQ4>
inline void add_last_block(const std::byte* b, const std::byte* xb, __m512& acc) {
  const __m256i wv = block_weights<kQ4>(b);
  const __mmask32 neg = _mm256_movepi8_mask(wv);
  const __m256i xv = _mm256_mask_sub_epi8(load256(xb + 2), neg, _mm256_setzero_si256(), load256(xb + 2));
  const __m256i isum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wv), xv);
  const __m256 part = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(load_f16(b) * load_f16(xb)));
  acc = _mm512_add_ps(acc, _mm512_zextps256_ps512(part));
}

template <bool kQ4>
struct DotQ8_0 {
  static constexpr size_t kWB = kQ4 ? kQ4_0Bytes : kQ8_0Bytes;

  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const int64_t nb = k / kQK8_0;
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
      const std::byte* b0 = w + ib * kWB;
      // Q8_0: vpdpbusd wants an unsigned operand, so multiply |w| by x carrying w's sign.
      // Q4_0: multiply the unsigned nibbles q and subtract 8 * sum(x) (a second vpdpbusd).
      __m512i wq;
      __mmask64 neg = 0;
      if constexpr (kQ4) {
        const __m256i q01 = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(b0 + 2)), load128(b0 + kWB + 2), 1);
        const __m512i z = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(q01), _mm256_srli_epi16(q01, 4), 1), _mm512_set1_epi8(0x0F));
        wq = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));  // [lo0 hi0 lo1 hi1]: value order
      } else {
        const __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(load256(b0 + 2)), load256(b0 + kWB + 2), 1);
        wq = _mm512_abs_epi8(wv);
        neg = _mm512_movepi8_mask(wv);
      }
      const __m512 wd = pair_scale(b0, kWB);
      for (int t = 0; t < NT; ++t) {
        const std::byte* xb = x + t * xs + ib * kQ8_0Bytes;
        __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(load256(xb + 2)), load256(xb + kQ8_0Bytes + 2), 1);
        __m512i isum;
        if constexpr (kQ4) {
          isum = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xv),
                                  _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), xv));
        } else {
          xv = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
          isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xv);
        }
        const __m512 scale = _mm512_mul_ps(wd, pair_scale(xb, kQ8_0Bytes));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[t]);
      }
    }
    if (ib < nb) {  // odd block count: the last block alone, in the lower half
      for (int t = 0; t < NT; ++t) add_last_block<kQ4>(w + ib * kWB, x + t * xs + ib * kQ8_0Bytes, acc[t]);
    }
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
  }
};

// A tile of 4 rows x T tokens (1..4) of the same products, for prefill. Bit-identical to DotQ8_0: every
// int32 lane holds the same integer and meets the same float scale in the same order. What
// changes is where the work is shared: Q8_0 feeds x + 128 as the unsigned operand (so the
// weights need no sign trick per token) and starts each row's lanes at -128 * sum(w); Q4_0
// starts each token's lanes at -8 * sum(x). The per-token scale is built once per row tile.
template <bool kQ4, int T>
struct TileQ8_0 {
  static constexpr size_t kWB = kQ4 ? kQ4_0Bytes : kQ8_0Bytes;
  static constexpr int R = kGemmTileRows;

  static void run(int64_t k, const std::byte* w, size_t ws, const std::byte* x, size_t xs, float* out) {
    const int64_t nb = k / kQK8_0;
    __m512 acc[R][T];
    for (auto& row : acc) {
      for (auto& a : row) a = _mm512_setzero_ps();
    }
    const __m512i zero = _mm512_setzero_si512();
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
      __m512i xv[T], xfix[T];
      __m512 xd[T];
      for (int t = 0; t < T; ++t) {
        const std::byte* xb = x + t * xs + ib * kQ8_0Bytes;
        const __m512i raw = _mm512_inserti64x4(_mm512_castsi256_si512(load256(xb + 2)), load256(xb + kQ8_0Bytes + 2), 1);
        if constexpr (kQ4) {
          xv[t] = raw;
          xfix[t] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(8), raw));
        } else {
          xv[t] = _mm512_xor_si512(raw, _mm512_set1_epi8(char(0x80)));  // x + 128 as u8
        }
        xd[t] = pair_scale(xb, kQ8_0Bytes);
      }
      for (int r = 0; r < R; ++r) {
        const std::byte* b0 = w + r * ws + ib * kWB;
        __m512i wq, wfix = zero;
        if constexpr (kQ4) {
          const __m256i q01 = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(b0 + 2)), load128(b0 + kWB + 2), 1);
          const __m512i z = _mm512_and_si512(
              _mm512_inserti64x4(_mm512_castsi256_si512(q01), _mm256_srli_epi16(q01, 4), 1), _mm512_set1_epi8(0x0F));
          wq = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
        } else {
          wq = _mm512_inserti64x4(_mm512_castsi256_si512(load256(b0 + 2)), load256(b0 + kWB + 2), 1);
          wfix = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(char(0x80)), wq));
        }
        const __m512 wd = pair_scale(b0, kWB);
        for (int t = 0; t < T; ++t) {
          const __m512i isum = kQ4 ? _mm512_dpbusd_epi32(xfix[t], wq, xv[t]) : _mm512_dpbusd_epi32(wfix, xv[t], wq);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wd, xd[t]), acc[r][t]);
        }
      }
    }
    if (ib < nb) {  // odd block count: exactly as DotQ8_0's tail
      for (int r = 0; r < R; ++r) {
        for (int t = 0; t < T; ++t) {
          add_last_block<kQ4>(w + r * ws + ib * kWB, x + t * xs + ib * kQ8_0Bytes, acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) out[r * kGemmTileTokens + t] = _mm512_reduce_add_ps(acc[r][t]);
    }
  }
};

// ---- Q4_K / Q5_K weights x Q8_K activations ---------------------------------------------

template <bool kQ5>
struct DotQ45K {
  static constexpr size_t kWB = kQ5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static constexpr size_t kQs = kQ5 ? kQ5_KQs : kQ4_KQs;

  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    // Lane l of sc16[j] must hold the scale of sub-block 2j (l < 16) or 2j + 1 (l >= 16).
    const __m512i upper_half = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(1), 1);
    // Lanes 2i and 2i + 1 of the min vector hold m_i (entry 8 + i of the unpacked bytes).
    const __m256i min_index = _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();

    for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
      const std::byte* b = w + ib * kWB;
      const float d = load_f16(b), dmin = load_f16(b + 2);
      const __m256i sm16 = _mm256_cvtepu8_epi16(k_scales_vector(unpack_k_scales(b + 4)));
      const __m256i mins = _mm256_permutexvar_epi16(min_index, sm16);
      __m512i sc16[4], wq[4];
      const __m256i qh = kQ5 ? load256(b + kQ5_KQh) : _mm256_setzero_si256();
      for (int h = 0; h < 2; ++h) {
        const __m512i q = load512(b + kQs + 64 * h);
        __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        if constexpr (kQ5) {
          // Bytes 0..31 are group 2h (qh bits 4h, 4h+1), bytes 32..63 group 2h+1 (4h+2, 4h+3).
          const __m512i bits = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(qh, 4 * h)),
                                                  _mm256_srli_epi16(qh, 4 * h + 2), 1);
          lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(bits, _mm512_set1_epi8(1)), 4));
          hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(bits, _mm512_set1_epi8(2)), 3));
        }
        // Reorder to value order: [lo of group 2h | hi of 2h], [lo of 2h+1 | hi of 2h+1].
        wq[2 * h] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
        wq[2 * h + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
      }
      for (int j = 0; j < 4; ++j) {
        const __m512i index = _mm512_add_epi16(_mm512_set1_epi16(int16_t(2 * j)), upper_half);
        sc16[j] = _mm512_permutexvar_epi16(index, _mm512_castsi256_si512(sm16));
      }
      for (int t = 0; t < NT; ++t) {
        const std::byte* xb = x + t * xs + ib * kQ8_KBytes;
        const float dx = load_f32(xb);
        __m512i isum = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
          const __m512i p = _mm512_maddubs_epi16(wq[j], load512(xb + kQ8_KQs + 64 * j));
          isum = _mm512_dpwssd_epi32(isum, p, sc16[j]);
        }
        // The mins multiply the sums of the activations, which Q8_K carries per 16 values.
        const __m256i msum = _mm256_madd_epi16(load256(xb + kQ8_KBsums), mins);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * dx), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(msum)), _mm512_set1_ps(dmin * dx), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
  }
};

// ---- Q6_K weights x Q8_K activations -----------------------------------------------------

struct DotQ6K {
  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    // Lane l of sc16[j] holds the scale of sub-block 4j + l / 8 (16 values = 8 i16 pairs).
    const __m512i lane_group = _mm512_srli_epi16(
        _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9,
                         8, 7, 6, 5, 4, 3, 2, 1, 0),
        3);
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();

    for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
      const std::byte* b = w + ib * sizeof(BlockQ6_K);
      const float d = load_f16(b + kQ6_KD);
      const __m256i sc_all = _mm256_cvtepi8_epi16(load128(b + kQ6_KScales));
      __m512i sc16[4], wq[4];
      for (int h = 0; h < 2; ++h) {
        const __m512i ql = load512(b + 64 * h);
        const __m256i qh = load256(b + kQ6_KQh + 32 * h);
        // Bytes 0..31 take qh bits (0,1) / (4,5), bytes 32..63 bits (2,3) / (6,7).
        const __m512i bits = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        wq[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(bits, m2), 4));
        wq[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(bits, 4), m2), 4));
      }
      for (int j = 0; j < 4; ++j) {
        const __m512i index = _mm512_add_epi16(lane_group, _mm512_set1_epi16(int16_t(4 * j)));
        sc16[j] = _mm512_permutexvar_epi16(index, _mm512_castsi256_si512(sc_all));
      }
      for (int t = 0; t < NT; ++t) {
        const std::byte* xb = x + t * xs + ib * kQ8_KBytes;
        __m512i isum = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
          const __m512i p = _mm512_maddubs_epi16(wq[j], load512(xb + kQ8_KQs + 64 * j));
          isum = _mm512_dpwssd_epi32(isum, p, sc16[j]);
        }
        // q was stored +32: subtract 32 * sum_j sc_j * bsum_j.
        const __m256i bias = _mm256_madd_epi16(load256(xb + kQ8_KBsums), sc_all);
        isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(bias, 5)));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * load_f32(xb)), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
  }
};

// ---- Q4_K, 16 rows interleaved (ops/cpu/interleave.h) x Q8_K activations -----------------

// Lane r of every vector is row r. Per sub-block, vpdpbusd multiplies four weights of each
// row by four activation bytes broadcast to all lanes: low nibbles as they are, high nibbles
// masked in place (16 x their value, divided out exactly once per sub-block). The sub-block's
// integer sum meets its 6-bit scale in int32; the mins meet the activations' sums per 32
// values with vpdpwssd. Only the block's two float scales are applied in float, as the scalar
// reference does.
template <int NT>
struct GroupDotQ4_Kx16 {
  static constexpr size_t kScales = offsetof(BlockQ4_Kx16, scales), kMins = offsetof(BlockQ4_Kx16, mins),
                          kQs = offsetof(BlockQ4_Kx16, qs), kDmin = offsetof(BlockQ4_Kx16, dmin);

  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const __m512i low = _mm512_set1_epi8(0x0F), high = _mm512_set1_epi8(char(0xF0));
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
      const std::byte* b = w + ib * sizeof(BlockQ4_Kx16);
      const std::byte* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = x + t * xs + ib * kQ8_KBytes;
      __m512i isum[NT], msum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = msum[t] = _mm512_setzero_si512();
      for (int s = 0; s < 8; ++s) {
        __m512i lo[NT], hi[NT];
        for (int t = 0; t < NT; ++t) lo[t] = hi[t] = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) {
          const __m512i q = load512(b + kQs + (4 * s + c) * 64);
          const __m512i ql = _mm512_and_si512(q, low), qh = _mm512_and_si512(q, high);
          for (int t = 0; t < NT; ++t) {
            const std::byte* a = xb[t] + kQ8_KQs + 32 * s + 4 * c;
            lo[t] = _mm512_dpbusd_epi32(lo[t], ql, _mm512_set1_epi32(int(load_u32(a))));
            hi[t] = _mm512_dpbusd_epi32(hi[t], qh, _mm512_set1_epi32(int(load_u32(a + 16))));
          }
        }
        const __m512i sc = _mm512_cvtepu8_epi32(load128(b + kScales + 16 * s));
        for (int t = 0; t < NT; ++t) {
          const __m512i sub = _mm512_add_epi32(lo[t], _mm512_srai_epi32(hi[t], 4));
          isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(sub, sc));
        }
      }
      for (int t = 0; t < NT; ++t) {
        // Sums of 32 activations as int16 pairs: lane i of `pairs` = (sum of sub-block 2i', 2i'+1)
        // for i = 0, 1, 4, 5 (packs works within 128-bit halves).
        const __m256i sums32 = _mm256_madd_epi16(load256(xb[t] + kQ8_KBsums), _mm256_set1_epi16(1));
        const __m512i pairs = _mm512_zextsi256_si512(_mm256_packs_epi32(sums32, sums32));
        for (int p = 0; p < 4; ++p) {
          const __m512i m = _mm512_cvtepu8_epi16(load256(b + kMins + 32 * p));
          const __m512i bp = _mm512_permutexvar_epi32(_mm512_set1_epi32(p < 2 ? p : p + 2), pairs);
          msum[t] = _mm512_dpwssd_epi32(msum[t], m, bp);
        }
      }
      const __m512 d = _mm512_cvtph_ps(load256(b)), dmin = _mm512_cvtph_ps(load256(b + kDmin));
      for (int t = 0; t < NT; ++t) {
        const __m512 dx = _mm512_set1_ps(load_f32(xb[t]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, dx), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(dmin, dx), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) {
      alignas(64) float rows[kInterleaveRows];
      _mm512_store_ps(rows, acc[t]);
      for (int r = 0; r < kInterleaveRows; ++r) out[r * kMaxDotTokens + t] = rows[r];
    }
  }
};

void group_dot_q4_k_x16(int64_t k, const std::byte* w, const std::byte* x, size_t xs, int n_tok, float* out) {
  switch (n_tok) {
    case 1: GroupDotQ4_Kx16<1>::run(k, w, x, xs, out); break;
    case 2: GroupDotQ4_Kx16<2>::run(k, w, x, xs, out); break;
    case 3: GroupDotQ4_Kx16<3>::run(k, w, x, xs, out); break;
    default: GroupDotQ4_Kx16<4>::run(k, w, x, xs, out); break;
  }
}

template <template <bool, int> class Tile, bool kQ4>
void by_tile_tokens(int64_t k, const std::byte* w, size_t ws, const std::byte* x, size_t xs, int n_tok, float* out) {
  switch (n_tok) {
    case 1: Tile<kQ4, 1>::run(k, w, ws, x, xs, out); break;
    case 2: Tile<kQ4, 2>::run(k, w, ws, x, xs, out); break;
    case 3: Tile<kQ4, 3>::run(k, w, ws, x, xs, out); break;
    default: Tile<kQ4, 4>::run(k, w, ws, x, xs, out); break;
  }
}
static_assert(kGemmTileTokens == 4, "by_tile_tokens instantiates 1..4");

}  // namespace

GroupDotFn group_dot_avx512(WeightLayout layout) {
  return layout == WeightLayout::Q4_Kx16 ? group_dot_q4_k_x16 : nullptr;
}

GemmTileFn gemm_tile_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::Q8_0: return by_tile_tokens<TileQ8_0, false>;
    case GgmlType::Q4_0: return by_tile_tokens<TileQ8_0, true>;
    default: return nullptr;
  }
}

VecDotFn vec_dot_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return by_tokens<DotFloat<F32W>>;
    case GgmlType::F16: return by_tokens<DotFloat<F16W>>;
    case GgmlType::BF16: return by_tokens<DotFloat<BF16W>>;
    case GgmlType::Q8_0: return by_tokens<DotQ8_0<false>>;
    case GgmlType::Q4_0: return by_tokens<DotQ8_0<true>>;
    case GgmlType::Q4_K: return by_tokens<DotQ45K<false>>;
    case GgmlType::Q5_K: return by_tokens<DotQ45K<true>>;
    case GgmlType::Q6_K: return by_tokens<DotQ6K>;
    default: return nullptr;
  }
}

}  // namespace moe

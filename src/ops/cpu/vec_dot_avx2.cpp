// AVX2 kernels (with FMA and F16C). Built with -mavx2 -mfma -mf16c; only ever called after
// vec_dot_level() has checked the CPU.
//
// Integer formats multiply u8 x s8 with vpmaddubsw into i16 pairs (Q8_0 / Q4_0: |w| times x
// carrying w's sign) and widen with vpmaddwd, which also applies the K-quant sub-block
// scales. Each weight block is decoded once for all NT tokens, and each token's instruction
// sequence is the same for every NT.
#include "ops/cpu/simd_common.h"  // first: it includes <immintrin.h>
#include "ops/cpu/vec_dot.h"

namespace moe {
namespace {

using namespace simd;

inline __m256i load256(const std::byte* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load128(const std::byte* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- f32 activations: F32, F16, BF16 weights --------------------------------------------

struct F32W {
  static __m256 load(const std::byte* w, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + i); }
  static float one(const std::byte* w, int64_t i) { return load_f32(w + 4 * i); }
};
struct F16W {
  static __m256 load(const std::byte* w, int64_t i) { return _mm256_cvtph_ps(load128(w + 2 * i)); }
  static float one(const std::byte* w, int64_t i) { return load_f16(w + 2 * i); }
};
struct BF16W {  // bf16 -> f32 is a 16-bit shift
  static __m256 load(const std::byte* w, int64_t i) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(w + 2 * i)), 16));
  }
  static float one(const std::byte* w, int64_t i) { return load_bf16(w + 2 * i); }
};

template <typename W>
struct DotFloat {
  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const float* xp[NT];
    __m256 acc0[NT], acc1[NT];
    for (int t = 0; t < NT; ++t) {
      xp[t] = reinterpret_cast<const float*>(x + t * xs);
      acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m256 w0 = W::load(w, i), w1 = W::load(w, i + 8);
      for (int t = 0; t < NT; ++t) {
        acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp[t] + i), acc0[t]);
        acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp[t] + i + 8), acc1[t]);
      }
    }
    for (int t = 0; t < NT; ++t) {
      float sum = hsum(_mm256_add_ps(acc0[t], acc1[t]));
      for (int64_t j = i; j < k; ++j) sum += W::one(w, j) * xp[t][j];
      out[t] = sum;
    }
  }
};

// ---- Q8_0 / Q4_0 weights x Q8_0 activations ---------------------------------------------

template <bool kQ4>
struct DotQ8_0 {
  static constexpr size_t kWB = kQ4 ? kQ4_0Bytes : kQ8_0Bytes;

  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < k / kQK8_0; ++ib) {
      const std::byte* b = w + ib * kWB;
      __m256i wv;
      if constexpr (kQ4) {  // low nibbles are values 0..15, high nibbles 16..31; both minus 8
        const __m128i q = load128(b + 2), m4 = _mm_set1_epi8(0x0F);
        wv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m4)),
                                     _mm_and_si128(_mm_srli_epi16(q, 4), m4), 1);
        wv = _mm256_sub_epi8(wv, _mm256_set1_epi8(8));
      } else {
        wv = load256(b + 2);
      }
      // vpmaddubsw wants an unsigned operand: multiply |w| by x carrying w's sign.
      const __m256i wabs = _mm256_sign_epi8(wv, wv);
      const float d = load_f16(b);
      for (int t = 0; t < NT; ++t) {
        const std::byte* xb = x + t * xs + ib * kQ8_0Bytes;
        const __m256i p = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(load256(xb + 2), wv));
        const __m256i isum = _mm256_madd_epi16(p, ones);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * load_f16(xb)), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(acc[t]);
  }
};

// ---- Q4_K / Q5_K weights x Q8_K activations ---------------------------------------------

template <bool kQ5>
struct DotQ45K {
  static constexpr size_t kWB = kQ5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static constexpr size_t kQs = kQ5 ? kQ5_KQs : kQ4_KQs;

  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit0 = _mm256_set1_epi8(1);
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();

    for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
      const std::byte* b = w + ib * kWB;
      const float d = load_f16(b), dmin = load_f16(b + 2);
      const KScales ks = unpack_k_scales(b + 4);
      const uint64_t scales = ks.sc_lo | (uint64_t(ks.sc_hi) << 32);  // byte j: scale of sub-block j
      const __m256i sm16 = _mm256_cvtepu8_epi16(k_scales_vector(ks));
      // Lanes 2i and 2i + 1 hold m_i, to pair with the activations' 16 bsums.
      const __m128i m8 = _mm256_extracti128_si256(sm16, 1);
      const __m256i mins = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(m8, m8)),
                                                   _mm_unpackhi_epi16(m8, m8), 1);
      const __m256i qh = kQ5 ? load256(b + kQ5_KQh) : _mm256_setzero_si256();
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
      for (int g = 0; g < 4; ++g) {  // group g: sub-block 2g in low nibbles, 2g + 1 in high
        const __m256i q = load256(b + kQs + 32 * g);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if constexpr (kQ5) {
          const __m256i bits = _mm256_srli_epi16(qh, 2 * g);
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(bits, bit0), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bits, 1), bit0), 4));
        }
        const __m256i sc_lo = _mm256_set1_epi16(int16_t((scales >> (16 * g)) & 0xFF));
        const __m256i sc_hi = _mm256_set1_epi16(int16_t((scales >> (16 * g + 8)) & 0xFF));
        for (int t = 0; t < NT; ++t) {
          const std::byte* xq = x + t * xs + ib * kQ8_KBytes + kQ8_KQs + 64 * g;
          const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(xq)), sc_lo);
          const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(xq + 32)), sc_hi);
          isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(p_lo, p_hi));
        }
      }
      for (int t = 0; t < NT; ++t) {
        const std::byte* xb = x + t * xs + ib * kQ8_KBytes;
        const float dx = load_f32(xb);
        // The mins multiply the sums of the activations, which Q8_K carries per 16 values.
        const __m256i msum = _mm256_madd_epi16(load256(xb + kQ8_KBsums), mins);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * dx), acc[t]);
        acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dmin * dx), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(acc[t]);
  }
};

// ---- Q6_K weights x Q8_K activations -----------------------------------------------------

struct DotQ6K {
  template <int NT>
  static void run(int64_t k, const std::byte* w, const std::byte* x, size_t xs, float* out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();

    for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
      const std::byte* b = w + ib * sizeof(BlockQ6_K);
      const float d = load_f16(b + kQ6_KD);
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + kQ6_KScales);
      const __m256i sc_all = _mm256_cvtepi8_epi16(load128(b + kQ6_KScales));
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = load256(b + 64 * h), ql1 = load256(b + 64 * h + 32);
        const __m256i qh = load256(b + kQ6_KQh + 32 * h);
        // Runs of 32 values: ql0 low / ql1 low / ql0 high / ql1 high nibbles, with qh bit
        // pairs (0,1), (2,3), (4,5), (6,7).
        const __m256i wq[4] = {
            _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
            _mm256_or_si256(_mm256_and_si256(ql1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)),
        };
        for (int r = 0; r < 4; ++r) {
          const int s = 8 * h + 2 * r;  // the run's two 16-value sub-blocks
          const __m256i sc16 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(sc[s])),
                                                       _mm_set1_epi16(sc[s + 1]), 1);
          for (int t = 0; t < NT; ++t) {
            const std::byte* xq = x + t * xs + ib * kQ8_KBytes + kQ8_KQs + 128 * h + 32 * r;
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], load256(xq)), sc16);
            isum[t] = _mm256_add_epi32(isum[t], p);
          }
        }
      }
      for (int t = 0; t < NT; ++t) {
        const std::byte* xb = x + t * xs + ib * kQ8_KBytes;
        // q was stored +32: subtract 32 * sum_j sc_j * bsum_j.
        const __m256i bias = _mm256_madd_epi16(load256(xb + kQ8_KBsums), sc_all);
        const __m256i total = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(bias, 5));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(d * load_f32(xb)), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(acc[t]);
  }
};

}  // namespace

VecDotFn vec_dot_avx2(GgmlType type) {
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

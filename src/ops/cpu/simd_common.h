#pragma once
// Helpers shared by the SIMD kernel files (vec_dot_avx2.cpp, vec_dot_avx512.cpp) only.
//
// Everything here has internal linkage on purpose: those files are compiled with -mavx2 /
// -mavx512*, and an `inline` function with external linkage could be emitted there with AVX
// instructions and then picked by the linker for callers in files built for any x86-64 CPU.
// For the same reason the SIMD files do not call the inline helpers of core/fp16.h or
// core/quant_blocks.h.
// GCC 12's AVX-512 headers trip -Wuninitialized on their own _mm512_undefined_*() helpers
// (GCC bug 105593); the pragma covers the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/quant_blocks.h"
#include "ops/cpu/vec_dot.h"

namespace moe::simd {

// Byte offsets of the fields the kernels read (blocks sit at any address, so no struct access).
constexpr size_t kQ8_0Bytes = sizeof(BlockQ8_0);
constexpr size_t kQ4_0Bytes = sizeof(BlockQ4_0);
constexpr size_t kQ8_KBytes = sizeof(BlockQ8_K);
constexpr size_t kQ8_KQs = offsetof(BlockQ8_K, qs);
constexpr size_t kQ8_KBsums = offsetof(BlockQ8_K, bsums);
constexpr size_t kQ4_KQs = offsetof(BlockQ4_K, qs);
constexpr size_t kQ5_KQh = offsetof(BlockQ5_K, qh);
constexpr size_t kQ5_KQs = offsetof(BlockQ5_K, qs);
constexpr size_t kQ6_KQh = offsetof(BlockQ6_K, qh);
constexpr size_t kQ6_KScales = offsetof(BlockQ6_K, scales);
constexpr size_t kQ6_KD = offsetof(BlockQ6_K, d);

// f16 at p -> f32 with F16C (exact, like core/fp16.h).
static inline float load_f16(const std::byte* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

static inline float load_f32(const std::byte* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

static inline uint32_t load_u32(const std::byte* p) {
  uint32_t u;
  std::memcpy(&u, p, 4);
  return u;
}

static inline float load_bf16(const std::byte* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The eight 6-bit scales and mins of a Q4_K / Q5_K block, unpacked from its 12 packed bytes
// (layout in core/quant_blocks.h) with 32-bit word operations: four sub-blocks per word.
struct KScales {
  uint32_t sc_lo, sc_hi;  // bytes: scales of sub-blocks 0..3, 4..7
  uint32_t m_lo, m_hi;    // bytes: mins of sub-blocks 0..3, 4..7
};

static inline KScales unpack_k_scales(const std::byte* packed) {
  uint32_t u[3];
  std::memcpy(u, packed, 12);
  // Sub-blocks 4..7 keep their low 4 bits in bytes 8..11 and their top 2 bits in the top
  // bits of bytes 0..3 (scales) and 4..7 (mins); ">> 2" moves bits 6..7 to 4..5 in place.
  return {u[0] & 0x3F3F3F3Fu, (u[2] & 0x0F0F0F0Fu) | ((u[0] >> 2) & 0x30303030u), u[1] & 0x3F3F3F3Fu,
          ((u[2] >> 4) & 0x0F0F0F0Fu) | ((u[1] >> 2) & 0x30303030u)};
}

// Bytes 0..7: scales of sub-blocks 0..7; bytes 8..15: their mins.
static inline __m128i k_scales_vector(const KScales& k) {
  return _mm_set_epi32(int(k.m_hi), int(k.m_lo), int(k.sc_hi), int(k.sc_lo));
}

// A VecDotFn for a kernel type with run<NT>(k, w, x, x_stride, out) for NT = 1..4 tokens.
template <typename Kernel>
static void by_tokens(int64_t k, const std::byte* w, const std::byte* x, size_t xs, int n_tok, float* out) {
  switch (n_tok) {
    case 1: Kernel::template run<1>(k, w, x, xs, out); break;
    case 2: Kernel::template run<2>(k, w, x, xs, out); break;
    case 3: Kernel::template run<3>(k, w, x, xs, out); break;
    default: Kernel::template run<4>(k, w, x, xs, out); break;
  }
}
static_assert(kMaxDotTokens == 4, "by_tokens instantiates 1..4");

}  // namespace moe::simd

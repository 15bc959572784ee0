#pragma once
// IEEE binary16 and bfloat16 as plain 16-bit storage types, with exact conversions.
// f32 -> f16 rounds to nearest even (what F16C's vcvtps2ph does), so the scalar reference and
// the SIMD paths store identical bits. f32 -> bf16 follows ggml: round to nearest even, NaN kept
// quiet.
#include <bit>
#include <cstdint>
#include <cstring>

namespace moe {

struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2);

constexpr float f16_to_f32(f16 h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1F;
  uint32_t mant = h.bits & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf or NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal: shift the mantissa up until its leading one reaches the implicit bit.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | uint32_t(112 - e) << 23 | ((mant & 0x3FF) << 13);
  }
  return std::bit_cast<float>(bits);
}

constexpr f16 f32_to_f16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7FFFFFFF;
  if (abs >= 0x7F800000u) {  // inf or NaN (NaN stays a quiet NaN)
    return {uint16_t(sign | 0x7C00 | (abs > 0x7F800000u ? 0x200 | ((abs >> 13) & 0x3FF) : 0))};
  }
  if (abs >= 0x477FF000u) return {uint16_t(sign | 0x7C00)};  // rounds to >= 65520: overflow
  const int exp = int(abs >> 23);
  if (exp < 113) {
    // Result is subnormal (or zero): value = mant * 2^-24 with rounding to nearest even.
    if (exp < 102) return {sign};  // below half of the smallest subnormal
    const uint32_t mant = (abs & 0x7FFFFF) | 0x800000;
    const int shift = 126 - exp;  // 14..24
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    return {uint16_t(sign | q)};
  }
  uint32_t h = ((uint32_t(exp) - 112) << 10) | ((abs >> 13) & 0x3FF);
  const uint32_t rem = abs & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // carry may bump the exponent: correct
  return {uint16_t(sign | h)};
}

constexpr float bf16_to_f32(bf16 h) { return std::bit_cast<float>(uint32_t(h.bits) << 16); }

constexpr bf16 f32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7FFFFFFF) > 0x7F800000u) return {uint16_t((u >> 16) | 0x40)};  // quiet NaN
  return {uint16_t((u + 0x7FFF + ((u >> 16) & 1)) >> 16)};
}

}  // namespace moe

// core/fp16.h conversions against the hardware the SIMD kernels use: F16C (vcvtps2ph /
// vcvtph2ps) and AVX512-BF16 (vcvtneps2bf16). The scalar reference and the SIMD paths must
// store and read identical bits, including subnormals, infinities, NaNs and rounding ties.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "ops_test_util.h"

namespace moe {
namespace {

__attribute__((target("f16c"))) uint16_t hw_f32_to_f16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

__attribute__((target("avx512f,avx512bf16"))) void hw_f32_to_bf16(const float* in, uint16_t* out) {
  const __m256bh r = _mm512_cvtneps_pbh(_mm512_loadu_ps(in));
  std::memcpy(out, &r, 32);
}

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }
float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

std::vector<float> edge_values() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e30f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), from_bits(0x7F800001),  // signalling NaN
                          from_bits(0xFFC12345), from_bits(0x00000001),                     // f32 subnormal
                          std::ldexp(1.0f, -24), std::ldexp(1.0f, -25), std::ldexp(3.0f, -26),
                          std::ldexp(1.0f, -14), std::ldexp(1023.0f, -24), std::ldexp(1.5f, -25)};
  // Ties between neighbouring halves, around 1 and in the subnormal range: to even.
  for (int k = 0; k < 8; ++k) {
    v.push_back(1.0f + float(2 * k + 1) * std::ldexp(1.0f, -11));
    v.push_back(float(2 * k + 1) * std::ldexp(1.0f, -25));
  }
  return v;
}

TEST(Fp16Simd, F32ToF16MatchesF16C) {
  if (!cpu_features().avx2) GTEST_SKIP() << "no F16C";
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  auto values = edge_values();
  for (int i = 0; i < 1'000'000; ++i) values.push_back(from_bits(rng()));  // every exponent
  std::uniform_real_distribution<float> small(-70000.0f, 70000.0f);
  for (int i = 0; i < 200'000; ++i) values.push_back(small(rng) * std::ldexp(1.0f, -int(rng() % 30)));
  for (float f : values) {
    ASSERT_EQ(f32_to_f16(f).bits, hw_f32_to_f16(f)) << std::hex << "f32 bits 0x" << bits(f);
  }
}

TEST(Fp16Simd, F16ToF32MatchesF16C) {
  if (!cpu_features().avx2) GTEST_SKIP() << "no F16C";
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float mine = f16_to_f32({uint16_t(h)}), hw = hw_f16_to_f32(uint16_t(h));
    if (std::isnan(hw)) {
      ASSERT_TRUE(std::isnan(mine)) << std::hex << h;  // NaN payload quieting may differ
      continue;
    }
    ASSERT_EQ(bits(mine), bits(hw)) << std::hex << "half 0x" << h;
  }
}

// vcvtneps2bf16 rounds to nearest even and quiets NaNs like ggml, but always flushes
// subnormal inputs to zero, so those are compared with the rule instead.
TEST(Fp16Simd, F32ToBf16MatchesAvx512Bf16) {
  if (!cpu_features().avx512_bf16) GTEST_SKIP() << "no AVX512-BF16";
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  auto values = edge_values();
  for (int i = 0; i < 1'000'000; ++i) values.push_back(from_bits(rng()));
  for (uint32_t u = 0x3F800000; u < 0x3F800000 + 0x300000; u += 0x10000) {  // exact ties around 1.0
    values.push_back(from_bits(u + 0x8000));
  }
  while (values.size() % 16 != 0) values.push_back(0.0f);
  for (size_t i = 0; i < values.size(); i += 16) {
    uint16_t hw[16];
    hw_f32_to_bf16(&values[i], hw);
    for (int j = 0; j < 16; ++j) {
      const float f = values[i + j];
      const uint16_t mine = f32_to_bf16(f).bits;
      if (std::fpclassify(f) == FP_SUBNORMAL) {
        // Round to nearest even by hand: the result is a bf16 subnormal or zero.
        const uint32_t u = bits(f), lower = u & 0xFFFF, up = (lower > 0x8000 || (lower == 0x8000 && (u & 0x10000)));
        ASSERT_EQ(mine, uint16_t((u >> 16) + up)) << std::hex << u;
        continue;
      }
      ASSERT_EQ(mine, hw[j]) << std::hex << "f32 bits 0x" << bits(f);
    }
  }
}

TEST(Fp16Simd, Bf16RoundTripIsExactForBf16Values) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32({uint16_t(h)});
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f).bits, h) << std::hex << h;
  }
}

}  // namespace
}  // namespace moe

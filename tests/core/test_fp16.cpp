#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/fp16.h"

namespace moe {
namespace {

bool is_nan_bits(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }

TEST(Fp16, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32({uint16_t(h)});
    if (is_nan_bits(uint16_t(h))) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_TRUE(is_nan_bits(f32_to_f16(f).bits));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f).bits, h) << "h=0x" << std::hex << h;
  }
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(f16_to_f32({0x3C00}), 1.0f);
  EXPECT_EQ(f16_to_f32({0xC000}), -2.0f);
  EXPECT_EQ(f16_to_f32({0x7BFF}), 65504.0f);
  EXPECT_EQ(f16_to_f32({0x0001}), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32({0x03FF}), std::ldexp(1023.0f, -24));
  EXPECT_TRUE(std::isinf(f16_to_f32({0x7C00})));
  EXPECT_EQ(f32_to_f16(65520.0f).bits, 0x7C00);  // rounds up to infinity
  EXPECT_EQ(f32_to_f16(65519.0f).bits, 0x7BFF);
  EXPECT_EQ(f32_to_f16(1e-10f).bits, 0x0000);
  EXPECT_EQ(f32_to_f16(-1e-10f).bits, 0x8000);
}

// Halfway between two neighbouring halves rounds to the even one; anything above rounds up.
TEST(Fp16, RoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x7BFF; ++h) {
    const float lo = f16_to_f32({uint16_t(h)}), hi = f16_to_f32({uint16_t(h + 1)});
    const double mid = (double(lo) + double(hi)) / 2;
    const float midf = float(mid);
    if (double(midf) != mid) continue;  // midpoint not representable in f32 (cannot happen, but be safe)
    const uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
    ASSERT_EQ(f32_to_f16(midf).bits, even) << "h=0x" << std::hex << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(midf, hi)).bits, h + 1) << "h=0x" << std::hex << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(midf, lo)).bits, h) << "h=0x" << std::hex << h;
  }
}

TEST(Bf16, RoundsLikeGgml) {
  EXPECT_EQ(f32_to_bf16(1.0f).bits, 0x3F80);
  EXPECT_EQ(bf16_to_f32({0x3F80}), 1.0f);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)).bits, 0x3F80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)).bits, 0x3F82);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()).bits, 0x7F80);
  const uint16_t nan = f32_to_bf16(std::numeric_limits<float>::quiet_NaN()).bits;
  EXPECT_TRUE((nan & 0x7F80) == 0x7F80 && (nan & 0x7F) != 0);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) continue;  // NaN
    ASSERT_EQ(f32_to_bf16(bf16_to_f32({uint16_t(h)})).bits, h);
  }
}

}  // namespace
}  // namespace moe

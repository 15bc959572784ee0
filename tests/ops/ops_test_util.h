#pragma once
// Shared helpers of the kernel tests: seeded random data (a fresh seed per run, printed with
// every failure; MOE_TEST_SEED=<n> replays one), quantized rows, and the SIMD levels to test.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16.h"
#include "core/ggml_type.h"
#include "core/quant_blocks.h"
#include "ops/cpu/quantize.h"
#include "ops/cpu/vec_dot.h"

namespace moe::test {

inline uint32_t test_seed() {
  static const uint32_t seed = [] {
    if (const char* s = std::getenv("MOE_TEST_SEED")) return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
    return std::random_device{}();
  }();
  return seed;
}

// Put `SEED_TRACE();` at the top of a test: every failure then names the seed to replay.
#define SEED_TRACE() SCOPED_TRACE("MOE_TEST_SEED=" + std::to_string(::moe::test::test_seed()))

inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float sigma = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<std::byte> quantize(GgmlType type, const std::vector<float>& x, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(type, cols);
  std::vector<std::byte> out(rb * rows);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(type, std::span(x).subspan(r * cols, cols), std::span(out).subspan(r * rb, rb));
  }
  return out;
}

inline std::vector<float> dequantize(GgmlType type, const std::vector<std::byte>& q, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(type, cols);
  std::vector<float> out(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(type, std::span(q).subspan(r * rb, rb), std::span(out).subspan(r * cols, cols));
  }
  return out;
}

// Random bytes in a quantized format, with every block scale set to a sane finite f16 so the
// quants' full bit range (including 6-bit scales of 63 and int8 -128) gets exercised.
inline std::vector<std::byte> random_blocks(std::mt19937& rng, GgmlType type, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(type, cols);
  std::vector<std::byte> out(rb * rows);
  for (auto& b : out) b = std::byte(rng() & 0xFF);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  auto set_f16 = [&](size_t offset) {
    const f16 h = f32_to_f16(scale(rng));
    std::memcpy(out.data() + offset, &h, 2);
  };
  const size_t bs = type_size(type);
  for (size_t off = 0; off < out.size(); off += bs) {
    switch (type) {
      case GgmlType::Q8_0:
      case GgmlType::Q4_0: set_f16(off); break;
      case GgmlType::Q4_K:
      case GgmlType::Q5_K:
        set_f16(off);
        set_f16(off + 2);
        break;
      case GgmlType::Q6_K: set_f16(off + offsetof(BlockQ6_K, d)); break;
      default: return quantize(type, random_floats(rng, rows * cols), rows, cols);  // float formats
    }
  }
  return out;
}

// Every SIMD level this CPU runs (always includes Scalar).
inline std::vector<SimdLevel> runnable_levels() {
  std::vector<SimdLevel> levels{SimdLevel::Scalar};
  if (best_simd_level() >= SimdLevel::Avx2) levels.push_back(SimdLevel::Avx2);
  if (vec_dot_level(SimdLevel::Avx512) == SimdLevel::Avx512) levels.push_back(SimdLevel::Avx512);
  return levels;
}

// Sets the active SIMD level for a scope and restores the previous one.
class ScopedSimdLevel {
 public:
  explicit ScopedSimdLevel(SimdLevel level) : saved_(active_simd_level()) { set_simd_level(level); }
  ~ScopedSimdLevel() { set_simd_level(saved_); }
  ScopedSimdLevel(const ScopedSimdLevel&) = delete;
  ScopedSimdLevel& operator=(const ScopedSimdLevel&) = delete;

 private:
  SimdLevel saved_;
};

inline const std::vector<GgmlType>& weight_types() {
  static const std::vector<GgmlType> types{GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,
                                           GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  return types;
}

// Row lengths to test for a format: odd multiples of its block size, small and large.
inline std::vector<int64_t> test_cols(GgmlType type) {
  if (block_size(type) == 256) return {256, 512, 2304, 4096 + 256};
  if (block_size(type) == 32) return {32, 256, 288, 4096 + 256 + 32};
  return {1, 7, 32, 33, 256, 288, 4096 + 256 + 3};
}

}  // namespace moe::test

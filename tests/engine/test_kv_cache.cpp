#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "engine/kv_cache.h"

namespace moe {
namespace {

std::vector<float> random_row(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(KvCache, RowsComeBackThroughTheCacheType) {
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
    KvCache cache(2, 128, type, 100);
    SequenceState seq(cache);
    seq.grow(40);  // three blocks, the last one partly used
    for (int64_t p = 0; p < 40; ++p) {
      for (int layer = 0; layer < 2; ++layer) {
        seq.write(p, layer, false, random_row(128, uint32_t(p * 4 + layer * 2)));
        seq.write(p, layer, true, random_row(128, uint32_t(p * 4 + layer * 2 + 1)));
      }
    }
    const double tolerance = type == GgmlType::F32 ? 0 : type == GgmlType::F16 ? 2e-3 : type == GgmlType::Q8_0 ? 0.03 : 0.4;
    std::vector<float> back(128);
    for (int64_t p = 0; p < 40; ++p) {
      for (int layer = 0; layer < 2; ++layer) {
        for (bool value : {false, true}) {
          const auto want = random_row(128, uint32_t(p * 4 + layer * 2 + (value ? 1 : 0)));
          seq.read(p, layer, value, back);
          for (size_t i = 0; i < 128; ++i) ASSERT_NEAR(back[i], want[i], tolerance) << type_name(type);
        }
      }
    }
  }
}

TEST(KvCache, SequencesShareThePoolAndGiveBlocksBack) {
  KvCache cache(1, 64, GgmlType::F16, 64);  // 4 blocks
  EXPECT_EQ(cache.free_blocks(), 4);
  {
    SequenceState a(cache), b(cache);
    a.grow(17);  // 2 blocks
    b.grow(16);  // 1 block
    EXPECT_EQ(cache.free_blocks(), 1);
    SequenceState c(cache);
    EXPECT_THROW(c.grow(33), Error);
    a.truncate(5);
    EXPECT_EQ(a.length(), 5);
    EXPECT_EQ(cache.free_blocks(), 1 + 1 - 1);  // a gave one back, c took one before failing
  }
  EXPECT_EQ(cache.free_blocks(), 4);
}

TEST(KvCache, RejectsUnsupportedTypesAndShapes) {
  EXPECT_THROW(KvCache(1, 64, GgmlType::Q4_K, 16), Error);
  EXPECT_THROW(KvCache(1, 48, GgmlType::Q8_0, 16), Error);
}

}  // namespace
}  // namespace moe

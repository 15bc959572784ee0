#include <gtest/gtest.h>

#include "core/ggml_type.h"

namespace moe {
namespace {

TEST(GgmlType, GeometryMatchesTheSpec) {
  EXPECT_EQ(type_size(GgmlType::Q8_0), 34u);
  EXPECT_EQ(block_size(GgmlType::Q8_0), 32u);
  EXPECT_EQ(type_size(GgmlType::Q4_K), 144u);
  EXPECT_EQ(type_size(GgmlType::Q5_K), 176u);
  EXPECT_EQ(type_size(GgmlType::Q6_K), 210u);
  EXPECT_EQ(block_size(GgmlType::Q6_K), 256u);
  EXPECT_EQ(type_size(GgmlType::BF16), 2u);
  EXPECT_EQ(row_bytes(GgmlType::Q8_0, 2048), 2048u / 32 * 34);
}

TEST(GgmlType, UnknownIdsAreRejected) {
  EXPECT_FALSE(type_traits(4).has_value());   // removed Q4_2
  EXPECT_FALSE(type_traits(31).has_value());  // removed
  EXPECT_FALSE(type_traits(1000).has_value());
  EXPECT_TRUE(type_traits(30).has_value());
}

TEST(GgmlType, ParseIsCaseInsensitive) {
  EXPECT_EQ(parse_type("Q4_K"), GgmlType::Q4_K);
  EXPECT_EQ(parse_type("bf16"), GgmlType::BF16);
  EXPECT_FALSE(parse_type("q4_k_m").has_value());
}

}  // namespace
}  // namespace moe

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/units.h"

namespace moe {
namespace {

TEST(Units, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(79ull * GiB), "79.0 GiB");
  EXPECT_EQ(format_bytes(812ull * GiB), "812 GiB");
}

TEST(Units, ParseBytes) {
  EXPECT_EQ(parse_bytes("16GiB"), 16 * GiB);
  EXPECT_EQ(parse_bytes("16G"), 16 * GiB);
  EXPECT_EQ(parse_bytes("512 MiB"), 512 * MiB);
  EXPECT_EQ(parse_bytes("1.5k"), 1536u);
  EXPECT_EQ(parse_bytes("4096"), 4096u);
  EXPECT_THROW(parse_bytes("lots"), Error);
  EXPECT_THROW(parse_bytes("16 parsecs"), Error);
  EXPECT_THROW(parse_bytes("-1G"), Error);
  EXPECT_THROW(parse_bytes("1e30"), Error);
}

}  // namespace
}  // namespace moe

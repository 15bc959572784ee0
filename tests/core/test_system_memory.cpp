#include <gtest/gtest.h>

#include "core/system_memory.h"
#include "core/units.h"

namespace moe {
namespace {

TEST(SystemMemory, ParsesMeminfo) {
  const SystemMemory m = parse_meminfo(
      "MemTotal:       24683620 kB\n"
      "MemFree:         1000000 kB\n"
      "MemAvailable:   24180680 kB\n"
      "Buffers:          123456 kB\n"
      "HugePages_Total:       0\n");
  EXPECT_EQ(m.total, 24683620ull * 1024);
  EXPECT_EQ(m.available, 24180680ull * 1024);
  EXPECT_EQ(m.cgroup_limit, 0u);
}

TEST(SystemMemory, MeminfoWithoutMemAvailableFallsBackToMemFree) {
  // Kernels before 3.14 have no MemAvailable; the last line also lacks its newline.
  const SystemMemory m = parse_meminfo("MemTotal: 2048 kB\nMemFree: 512 kB");
  EXPECT_EQ(m.total, 2 * MiB);
  EXPECT_EQ(m.available, 512 * KiB);
  EXPECT_EQ(parse_meminfo("").total, 0u);
  EXPECT_EQ(parse_meminfo("garbage\nMemTotal: lots kB\n").total, 0u);
}

TEST(SystemMemory, ParsesCgroupLimits) {
  EXPECT_EQ(parse_cgroup_limit("1073741824\n"), GiB);
  EXPECT_EQ(parse_cgroup_limit("max\n"), std::nullopt);                   // v2: no limit
  EXPECT_EQ(parse_cgroup_limit("9223372036854771712\n"), std::nullopt);   // v1: no limit
  EXPECT_EQ(parse_cgroup_limit(""), std::nullopt);                        // file absent
  EXPECT_EQ(parse_cgroup_limit("12abc"), std::nullopt);
}

TEST(SystemMemory, CgroupLimitCapsWhatIsUsable) {
  SystemMemory m{.total = 64 * GiB, .available = 40 * GiB, .cgroup_limit = 16 * GiB};
  EXPECT_EQ(m.usable_total(), 16 * GiB);
  EXPECT_EQ(m.usable_available(), 16 * GiB);
  m.cgroup_limit = 0;
  EXPECT_EQ(m.usable_total(), 64 * GiB);
  EXPECT_EQ(m.usable_available(), 40 * GiB);
}

TEST(SystemMemory, ReadsThisMachine) {
  const SystemMemory m = read_system_memory();
  EXPECT_GT(m.total, 0u);
  EXPECT_GT(m.available, 0u);
  EXPECT_LE(m.available, m.total);
  EXPECT_LE(m.usable_total(), m.total);
}

}  // namespace
}  // namespace moe

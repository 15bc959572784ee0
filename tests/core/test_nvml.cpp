// NVML, loaded at run time: without a driver (CI) everything says so and nothing runs; with one
// (the GPU machine's test_core run) the peak sampler follows the device's memory.
#include <gtest/gtest.h>

#include <thread>

#include "core/nvml.h"

namespace moe {
namespace {

TEST(Nvml, PeakSamplerFollowsTheDriver) {
  const NvmlPeakSampler sampler(std::chrono::milliseconds(1));
  if (Nvml::get() == nullptr) {
    EXPECT_FALSE(Nvml::unavailable_reason().empty());
    EXPECT_FALSE(sampler.baseline().has_value());
    EXPECT_FALSE(sampler.peak().has_value());
    return;
  }
  ASSERT_TRUE(sampler.baseline().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto devices = Nvml::get()->devices();
  ASSERT_FALSE(devices.empty());
  ASSERT_TRUE(sampler.peak().has_value());
  EXPECT_GE(*sampler.peak(), *sampler.baseline());
  EXPECT_LE(*sampler.peak(), devices.front().total_bytes);
}

}  // namespace
}  // namespace moe

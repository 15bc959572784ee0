// CUDA kernels against the CPU reference, on fresh random data and odd sizes.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/error.h"
#include "ops/cpu/quantize.h"
#include "ops/cuda/dequantize.h"
#include "ops/cuda/device.h"

namespace moe {
namespace {

TEST(CudaDevice, AtLeastOneGpu) {
  const auto list = cuda::list_gpus();
  ASSERT_FALSE(list.gpus.empty()) << list.reason;
  EXPECT_GT(list.gpus[0].total_bytes, 0u);
}

// The link's read bandwidth that bench's hybrid ceiling takes: a real figure on a real device
// (between a PCIe 1 x1 link and anything a host link can carry). (Its 0 for a device that is not
// there is left untested: the failing call would count as an error under compute-sanitizer.)
TEST(CudaDevice, HostReadBandwidthIsMeasured) {
  const double gb_s = cuda::measure_host_read_gb_s(0, size_t(16) << 20, 3);
  EXPECT_GT(gb_s, 0.25);
  EXPECT_LT(gb_s, 1000.0);
}

TEST(CudaDequantize, Q8_0MatchesTheCpuReferenceExactly) {
  std::random_device rd;
  const unsigned seed = rd();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int64_t n : {32, 96, 4096, 32 * 1001, 1 << 20}) {
    std::vector<float> x(n);
    for (auto& v : x) v = normal(rng);
    std::vector<std::byte> blocks(row_bytes(GgmlType::Q8_0, n));
    quantize_row(GgmlType::Q8_0, x, blocks);
    std::vector<float> cpu(n), gpu(n);
    dequantize_row(GgmlType::Q8_0, blocks, cpu);
    cuda::dequantize_on_gpu(GgmlType::Q8_0, blocks, gpu);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(cpu[i], gpu[i]) << "n=" << n << " i=" << i << " seed=" << seed;
  }
}

TEST(CudaDequantize, RejectsBadSizes) {
  std::vector<std::byte> blocks(34);
  std::vector<float> out(33);
  EXPECT_THROW(cuda::dequantize_on_gpu(GgmlType::Q8_0, blocks, out), Error);
  std::vector<float> out4k(256);
  EXPECT_THROW(cuda::dequantize_on_gpu(GgmlType::Q4_K, std::vector<std::byte>(144), out4k), Error);
}

}  // namespace
}  // namespace moe

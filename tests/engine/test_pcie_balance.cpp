// The PCIe share's balance (engine/pcie_balance.h) against a model of a hybrid decode step: the
// CPU's time falls and the GPU's grows with each expert the GPU takes; the GPU waits in a layer
// when the CPU's part is the longer one (give or take the layer's noise).
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "engine/pcie_balance.h"

namespace moe {
namespace {

// The limit reached after `steps` decode steps of `layers` layers, where a layer's CPU part
// takes cpu_per_expert * (ram_experts - limit) and its GPU part gpu_fixed + pcie_per_expert *
// limit, each times a random factor of up to +-noise.
struct Machine {
  int ram_experts = 9;
  double cpu_per_expert = 60, gpu_fixed = 40, pcie_per_expert = 90, noise = 0.1;
};

std::vector<int> limits(const Machine& m, PcieBalance& balance, int steps, int layers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> jitter(1 - m.noise, 1 + m.noise);
  std::vector<int> seen;
  for (int s = 0; s < steps; ++s) {
    const int limit = balance.limit();
    int waited = 0;
    for (int l = 0; l < layers; ++l) {
      const double cpu = m.cpu_per_expert * (m.ram_experts - limit) * jitter(rng);
      const double gpu = (m.gpu_fixed + m.pcie_per_expert * limit) * jitter(rng);
      waited += gpu < cpu;
    }
    balance.update(waited, layers);
    seen.push_back(balance.limit());
  }
  return seen;
}

// The limit whose slower side is fastest: what a search over fixed values would pick.
int best_fixed(const Machine& m) {
  int best = 0;
  double best_time = 1e300;
  for (int limit = 0; limit <= m.ram_experts; ++limit) {
    const double t = std::max(m.cpu_per_expert * (m.ram_experts - limit), m.gpu_fixed + m.pcie_per_expert * limit);
    if (t < best_time) best_time = t, best = limit;
  }
  return best;
}

TEST(PcieBalance, SettlesNextToTheBestFixedLimit) {
  for (const Machine m : {Machine{}, Machine{.cpu_per_expert = 30}, Machine{.cpu_per_expert = 200},
                          Machine{.pcie_per_expert = 20}, Machine{.ram_experts = 4, .noise = 0.3}}) {
    PcieBalance balance(m.ram_experts, 0);
    const auto seen = limits(m, balance, 60, 48, 7);
    const int best = best_fixed(m);
    // After the walk there (one a step), it stays within one of the best limit.
    for (size_t s = size_t(m.ram_experts) + 1; s < seen.size(); ++s) {
      EXPECT_LE(std::abs(seen[s] - best), 1) << "step " << s << ", best " << best << ", cpu " << m.cpu_per_expert;
    }
  }
}

TEST(PcieBalance, StaysWithinItsRange) {
  PcieBalance slow_gpu(5, 3);  // the GPU never waits: everything back to the CPU
  for (int s = 0; s < 10; ++s) slow_gpu.update(0, 48);
  EXPECT_EQ(slow_gpu.limit(), 0);
  EXPECT_FALSE(slow_gpu.update(0, 48));
  PcieBalance slow_cpu(5, 3);  // the GPU always waits: every expert over PCIe
  for (int s = 0; s < 10; ++s) slow_cpu.update(48, 48);
  EXPECT_EQ(slow_cpu.limit(), 5);
  EXPECT_FALSE(slow_cpu.update(48, 48));
  PcieBalance even(5, 2);  // half the layers each way: close to even, no move
  EXPECT_FALSE(even.update(24, 48));
  EXPECT_EQ(even.limit(), 2);
  EXPECT_FALSE(even.update(0, 0));  // a step without hybrid layers says nothing
  EXPECT_EQ(PcieBalance(4, 9).limit(), 4);
  EXPECT_THROW(PcieBalance(-1, 0), Error);
}

}  // namespace
}  // namespace moe

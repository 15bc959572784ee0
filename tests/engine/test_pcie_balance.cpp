// The PCIe share's balance (engine/pcie_balance.h) against a model of a hybrid decode step: a
// token's misses in a layer vary (binomial over its k picks); the GPU reads limit(misses) of them
// over PCIe and the CPU computes the rest; the CPU's time falls and the GPU's grows with each
// expert the GPU takes, and the GPU waits in a layer when the CPU's part is the longer one (give
// or take the layer's noise).
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "core/error.h"
#include "engine/pcie_balance.h"

namespace moe {
namespace {

struct Machine {
  int k = 10;
  double miss = 0.75;  // a pick's chance to be in RAM
  double cpu_per_expert = 45, gpu_fixed = 20, pcie_per_expert = 70, noise = 0.1;
};

// The mean time of a layer (the slower side's) over many layers, the GPU taking limit(m) of m
// misses; and how many layers the GPU waited in.
struct Layers {
  double mean_time = 0;
  int waited = 0;
};
Layers run_layers(const Machine& m, const std::function<int(int)>& limit, int layers, std::mt19937_64& rng) {
  std::binomial_distribution<int> misses(m.k, m.miss);
  std::uniform_real_distribution<double> jitter(1 - m.noise, 1 + m.noise);
  Layers out;
  for (int l = 0; l < layers; ++l) {
    const int in_ram = misses(rng), pcie = limit(in_ram);
    const double cpu = m.cpu_per_expert * (in_ram - pcie) * jitter(rng);
    const double gpu = (m.gpu_fixed + m.pcie_per_expert * pcie) * jitter(rng);
    out.waited += gpu < cpu;
    out.mean_time += std::max(cpu, gpu) / layers;
  }
  return out;
}

// The shares after each of `steps` decode steps of `layers` layers.
std::vector<int> shares(const Machine& m, PcieBalance& balance, int steps, int layers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> seen;
  for (int s = 0; s < steps; ++s) {
    balance.update(run_layers(m, [&](int misses) { return balance.limit(misses); }, layers, rng).waited, layers);
    seen.push_back(balance.share());
  }
  return seen;
}

// The mean layer time at a share (or a fixed count), over the same layers.
double time_at(const Machine& m, const std::function<int(int)>& limit) {
  std::mt19937_64 rng(3);
  return run_layers(m, limit, 20000, rng).mean_time;
}

// The mean layer time over the steps after the first kSteps, at the shares the balance held.
double settled_time(const Machine& m, const std::vector<int>& seen) {
  double mean = 0;
  for (size_t s = PcieBalance::kSteps; s < seen.size(); ++s) {
    const PcieBalance at(m.k, seen[s]);
    mean += time_at(m, [&](int misses) { return at.limit(misses); }) / double(seen.size() - PcieBalance::kSteps);
  }
  return mean;
}

TEST(PcieBalance, SettlesWhereTheLayersAreFastest) {
  for (const Machine m : {Machine{}, Machine{.cpu_per_expert = 25}, Machine{.cpu_per_expert = 150},
                          Machine{.pcie_per_expert = 20}, Machine{.miss = 0.45, .noise = 0.3}}) {
    PcieBalance balance(m.k, 6);
    const auto seen = shares(m, balance, 80, 48, 7);
    double best = 1e300;
    for (int s = 0; s <= PcieBalance::kSteps; ++s) {
      const PcieBalance at(m.k, s);
      best = std::min(best, time_at(m, [&](int misses) { return at.limit(misses); }));
    }
    // After the walk there (a step a decode step) it alternates between the shares around the
    // balance: on average within 5% of the best share's time, each step within 15%.
    for (size_t s = PcieBalance::kSteps; s < seen.size(); ++s) {
      const PcieBalance at(m.k, seen[s]);
      EXPECT_LT(time_at(m, [&](int misses) { return at.limit(misses); }), 1.15 * best)
          << "step " << s << ", share " << seen[s] << ", cpu " << m.cpu_per_expert;
    }
    EXPECT_LT(settled_time(m, seen), 1.05 * best) << "cpu " << m.cpu_per_expert;
  }
}

// The point of a share over a count: with the misses varying from layer to layer, the shares the
// balance settles at beat every fixed count.
TEST(PcieBalance, AShareOfTheMissesBeatsEveryFixedCount) {
  for (const Machine m : {Machine{}, Machine{.miss = 0.45}, Machine{.miss = 0.6, .cpu_per_expert = 60}}) {
    PcieBalance balance(m.k, 6);
    const double share_time = settled_time(m, shares(m, balance, 80, 48, 11));
    for (int n = 0; n <= m.k; ++n) {
      EXPECT_LT(share_time, time_at(m, [&](int misses) { return std::min(misses, n); }))
          << "count " << n << ", miss " << m.miss;
    }
  }
}

TEST(PcieBalance, RoundsTheShareOfEachTokensMissesAndStaysWithinItsRange) {
  const PcieBalance third(4, 7);  // 7 / 20 of the misses, at most 4
  EXPECT_EQ(third.table(10), (std::vector<int32_t>{0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4}));
  EXPECT_EQ(PcieBalance(10, 10).limit(3), 2);  // a half rounds up
  EXPECT_EQ(PcieBalance(10, 20).limit(7), 7);
  EXPECT_EQ(fixed_pcie_table(2, 4), (std::vector<int32_t>{0, 1, 2, 2, 2}));

  PcieBalance slow_gpu(5, 3);  // the GPU never waits: everything back to the CPU
  for (int s = 0; s < 10; ++s) slow_gpu.update(0, 48);
  EXPECT_EQ(slow_gpu.share(), 0);
  EXPECT_FALSE(slow_gpu.update(0, 48));
  PcieBalance slow_cpu(5, 17);  // the GPU always waits: every miss over PCIe, up to 5
  for (int s = 0; s < 10; ++s) slow_cpu.update(48, 48);
  EXPECT_EQ(slow_cpu.share(), PcieBalance::kSteps);
  EXPECT_FALSE(slow_cpu.update(48, 48));
  EXPECT_EQ(slow_cpu.limit(9), 5);
  PcieBalance even(5, 8);  // half the layers each way: close to even, no move
  EXPECT_FALSE(even.update(24, 48));
  EXPECT_EQ(even.share(), 8);
  EXPECT_FALSE(even.update(0, 0));  // a step without hybrid layers says nothing
  EXPECT_EQ(PcieBalance(4, 99).share(), PcieBalance::kSteps);
  EXPECT_THROW(PcieBalance(-1, 0), Error);
}

}  // namespace
}  // namespace moe

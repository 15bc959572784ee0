#pragma once
// Random routings for the benchmarks of expert products: `draws` sets of k distinct experts of
// n_expert, one after the other ([draws][k]), so successive launches read other experts' bytes.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace moe::bench {

inline std::vector<int32_t> expert_draws(int draws, int n_expert, int k, std::mt19937& rng) {
  std::vector<int32_t> ids, all(static_cast<size_t>(n_expert));
  for (int d = 0; d < draws; ++d) {
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    ids.insert(ids.end(), all.begin(), all.begin() + k);
  }
  return ids;
}

}  // namespace moe::bench

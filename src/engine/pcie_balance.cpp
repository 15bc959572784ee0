#include "engine/pcie_balance.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

PcieBalance::PcieBalance(int most, int start) : most_(most), share_(std::clamp(start, 0, kSteps)) {
  if (most < 0) fail("pcie balance: at most {} experts a token", most);
}

int PcieBalance::limit(int misses) const {
  MOE_ASSERT(misses >= 0);
  return std::min(most_, (2 * share_ * misses + kSteps) / (2 * kSteps));
}

std::vector<int32_t> PcieBalance::table(int k) const {
  std::vector<int32_t> t(size_t(k) + 1);
  for (int m = 0; m <= k; ++m) t[size_t(m)] = limit(m);
  return t;
}

bool PcieBalance::update(int waited, int layers) {
  MOE_ASSERT(waited >= 0 && waited <= layers);
  if (layers == 0) return false;
  // Most layers waited for the CPU: a step more for the GPU. Few did: a step back. In between
  // the two sides are close to even; stay. At the balance the share alternates between the two
  // values around it, which costs nothing (the table is device memory the captured graph reads).
  const int before = share_;
  if (2 * waited > layers) {
    share_ = std::min(share_ + 1, kSteps);
  } else if (2 * waited < layers) {
    share_ = std::max(share_ - 1, 0);
  }
  return share_ != before;
}

std::vector<int32_t> fixed_pcie_table(int n, int k) {
  std::vector<int32_t> t(size_t(k) + 1);
  for (int m = 0; m <= k; ++m) t[size_t(m)] = std::min(m, n);
  return t;
}

}  // namespace moe

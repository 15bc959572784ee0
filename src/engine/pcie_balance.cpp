#include "engine/pcie_balance.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

PcieBalance::PcieBalance(int most, int start) : most_(most), limit_(std::clamp(start, 0, std::max(most, 0))) {
  if (most < 0) fail("pcie balance: at most {} experts a token", most);
}

bool PcieBalance::update(int waited, int layers) {
  MOE_ASSERT(waited >= 0 && waited <= layers);
  if (layers == 0) return false;
  // Most layers waited for the CPU: one more for the GPU. Few did: one back. In between the
  // two sides are close to even; stay. At the balance the limit alternates between the two
  // values around it, each step, which costs nothing (the limit is a device int the captured
  // graph reads).
  const int before = limit_;
  if (4 * waited >= 3 * layers) {
    limit_ = std::min(limit_ + 1, most_);
  } else if (4 * waited <= layers) {
    limit_ = std::max(limit_ - 1, 0);
  }
  return limit_ != before;
}

}  // namespace moe

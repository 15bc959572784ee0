#pragma once
// How many of a token's RAM experts a layer the GPU reads over PCIe (--pcie-experts auto): the
// share that balances the two sides of a hybrid decode step, found while decoding. The CPU and
// the GPU each compute their part of the experts left in RAM at the same time, and the layer
// ends when the slower side does: the GPU, once through its VRAM and PCIe experts, waits for
// the CPU's sum (the CPU is the slower side: give the GPU more) or finds it there (the GPU is:
// give the CPU some back). The GPU records per layer whether it waited (ops/cuda/handoff.h);
// after each decode step update() moves the share one step toward balance.
//
// The share is a fraction of each token's misses, not a count: a layer's misses vary from token
// to token (plain routing: 7.6 of 10 on average, spread ~1.4), and with a fixed count every
// miss more or less lands on the CPU's side alone, so that in each layer one side waits for the
// other (measured on the GPU's clock: ~40 us a layer each way, ~2 ms a token of the 80B in
// 16 GiB; docs/performance.md 2026-11-28 (c)). A fraction splits each layer's misses in the
// same proportion, and the two sides end together however many there are. The best share
// depends on the machine (cores, RAM and PCIe bandwidth, the GPU) and the placement, which is
// why it is measured, not planned. No CUDA in here.
#include <cstdint>
#include <vector>

namespace moe {

class PcieBalance {
 public:
  static constexpr int kSteps = 20;  // the share moves in twentieths of a token's misses

  // At most `most` of a token's misses over PCIe; the share starts at start / kSteps.
  PcieBalance(int most, int start);

  int share() const { return share_; }  // in twentieths
  // Of a token's `misses` experts not in VRAM, how many the GPU reads over PCIe: the share of
  // them rounded to the nearest (halves up), at most `most`.
  int limit(int misses) const;
  // limit(m) for m = 0 .. k: the table the publish kernel reads (ops/cuda/handoff.h).
  std::vector<int32_t> table(int k) const;
  // One decode step: in `waited` of `layers` layers the GPU waited for the CPU's sum. Returns
  // true when the share changed.
  bool update(int waited, int layers);

 private:
  int most_, share_;
};

// The table of a fixed count (--pcie-experts N): min(m, n) of m misses.
std::vector<int32_t> fixed_pcie_table(int n, int k);

}  // namespace moe

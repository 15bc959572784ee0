#pragma once
// How many of a token's RAM experts a layer the GPU reads over PCIe (--pcie-experts auto): the
// limit that balances the two sides of a hybrid decode step, found while decoding. The CPU and
// the GPU each compute their share of the experts left in RAM at the same time, and the layer
// ends when the slower side does: the GPU, once through its VRAM and PCIe experts, waits for
// the CPU's sum (the CPU is the slower side: give the GPU one more) or finds it there (the GPU
// is: give the CPU one back). The GPU records per layer whether it waited (ops/cuda/handoff.h);
// after each decode step update() moves the limit by one toward balance. The best limit
// depends on the machine (cores, RAM and PCIe bandwidth, the GPU) and the placement, which is
// why it is measured, not planned: on the H200 machine the 80B's best fixed value was 4 of 10.
// No CUDA in here.
namespace moe {

class PcieBalance {
 public:
  // The limit moves within [0, most], starting at `start`.
  PcieBalance(int most, int start);

  int limit() const { return limit_; }
  // One decode step: in `waited` of `layers` layers the GPU waited for the CPU's sum. Returns
  // true when the limit changed.
  bool update(int waited, int layers);

 private:
  int most_, limit_;
};

}  // namespace moe

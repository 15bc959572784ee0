#include "models/cuda/cpu_experts.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <immintrin.h>

#include "core/error.h"
#include "ops/cuda/cuda_check.h"

namespace moe::cuda {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The flags live in host memory the GPU writes over PCIe: read and written as atomics so that
// neither the compiler nor the CPU reorders the data accesses around them.
unsigned load_flag(unsigned* flag) { return std::atomic_ref<unsigned>(*flag).load(std::memory_order_acquire); }
void store_flag(unsigned* flag, unsigned v) { std::atomic_ref<unsigned>(*flag).store(v, std::memory_order_release); }

}  // namespace

int CpuExperts::add_layer(const ExpertWeights& gate, const ExpertWeights& up, const ExpertWeights& down) {
  MOE_ASSERT(flags_.bytes() == 0);  // the flags are sized for the layers on first use
  MoeLayer layer;
  layer.gate = gate;
  layer.up = up;
  layer.down = down;
  layers_.push_back(std::move(layer));
  return int(layers_.size()) - 1;
}

bool CpuExperts::reserve(int n) {
  if (flags_.bytes() == 0) {
    flags_ = PinnedBuffer(3 * layers_.size() * sizeof(unsigned));
    handoff_.ready = flags_.as<unsigned>();
    handoff_.done = handoff_.ready + layers_.size();
    handoff_.waited = handoff_.done + layers_.size();
    for (size_t l = 0; l < layers_.size(); ++l) store_flag(handoff_.waited + l, 0);
    times_ = PinnedBuffer(layers_.size() * kHandoffTimes * sizeof(uint64_t));
    handoff_.times = times_.as<uint64_t>();
    release();
  }
  if (n <= capacity_) return false;
  const size_t floats = 2 * size_t(n) * size_t(n_embd_), slots = size_t(n) * size_t(k_);
  // Pinned memory is mapped into the GPU's address space at the same address (unified
  // addressing, every 64-bit CUDA platform): the kernels use these pointers as they are.
  rows_ = PinnedBuffer(floats * sizeof(float) + slots * (sizeof(int32_t) + sizeof(float)));
  handoff_.u = rows_.as<float>();
  handoff_.sum = handoff_.u + size_t(n) * size_t(n_embd_);
  handoff_.experts = reinterpret_cast<int32_t*>(handoff_.sum + size_t(n) * size_t(n_embd_));
  handoff_.weights = reinterpret_cast<float*>(handoff_.experts + slots);
  capacity_ = n;
  return true;
}

void CpuExperts::arm() {
  for (size_t l = 0; l < layers_.size(); ++l) {
    store_flag(handoff_.ready + l, 0);
    store_flag(handoff_.done + l, 0);
    store_flag(handoff_.waited + l, 0);
  }
  if (handoff_.times) std::fill_n(handoff_.times, layers_.size() * kHandoffTimes, uint64_t{0});
}

void CpuExperts::add_gpu_timeline() {
  const uint64_t* t = handoff_.times;
  const size_t n = layers_.size();
  if (t == nullptr || n == 0) return;
  for (size_t l = 0; l < n; ++l) {  // a step that did not stamp every layer (streamed) adds nothing
    if (t[l * kHandoffTimes] == 0 || t[l * kHandoffTimes + 2] == 0) return;
  }
  auto seconds = [](uint64_t from, uint64_t to) { return to > from ? double(to - from) * 1e-9 : 0.0; };
  for (size_t l = 0; l < n; ++l) {
    const uint64_t ready = t[l * kHandoffTimes], began = t[l * kHandoffTimes + 1], seen = t[l * kHandoffTimes + 2];
    stats_.gpu_experts_s += seconds(ready, began);
    stats_.gpu_wait_s += seconds(began, seen);
    if (l + 1 < n) stats_.gpu_serial_s += seconds(seen, t[(l + 1) * kHandoffTimes]);
  }
}

int CpuExperts::waited_layers() const {
  if (flags_.bytes() == 0) return 0;
  int waited = 0;
  for (size_t l = 0; l < layers_.size(); ++l) waited += load_flag(handoff_.waited + l) != 0;
  return waited;
}

void CpuExperts::release() {
  for (size_t l = 0; l < layers_.size(); ++l) store_flag(handoff_.done + l, 1);
}

void CpuExperts::serve(int n, ThreadPool& pool, cudaStream_t stream, const std::atomic<bool>& enqueued) {
  MOE_ASSERT(n <= capacity_);
  // Between two layers the GPU runs for up to a millisecond (attention, its own experts, those
  // it reads over PCIe): longer than the pool's idle spin, so its workers fell asleep and each
  // layer began by waking them, which slowed the CPU's share; the slower CPU made the PCIe
  // balance hand the GPU more experts, the GPU's layers grew longer still (Qwen3-Next-80B in
  // 16 GiB on the H200 machine: 76% of the RAM experts over PCIe, 31.5 t/s against 41.4 with
  // none). The workers spin through the whole step instead and sleep again after it.
  struct RestoreSpin {
    ThreadPool& pool;
    uint32_t us;
    ~RestoreSpin() { pool.set_spin_us(us); }
  } restore{pool, pool.spin_us()};
  pool.set_spin_us(kStepSpinUs);
  const size_t slots = size_t(n) * size_t(k_), floats = size_t(n) * size_t(n_embd_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto t0 = Clock::now();
    // The GPU reaches this layer within a step's time; now and then make sure it still runs.
    for (uint32_t spins = 0; load_flag(handoff_.ready + l) == 0; ++spins) {
      _mm_pause();
      if (spins % 4096 == 4095) {
        const bool all_enqueued = enqueued.load(std::memory_order_acquire);
        const cudaError_t e = cudaStreamQuery(stream);
        if (e == cudaSuccess && all_enqueued && load_flag(handoff_.ready + l) == 0) {
          fail("hybrid step: the GPU finished without publishing MoE layer {}", l);
        }
        if (e != cudaSuccess && e != cudaErrorNotReady) MOE_CUDA_CHECK(e);
      }
    }
    const auto t1 = Clock::now();
    stats_.cpu_wait_s += std::chrono::duration<double>(t1 - t0).count();
    const std::span<const int32_t> experts(handoff_.experts, slots);
    for (int32_t e : experts) stats_.cpu_slots += e >= 0, stats_.pcie_slots += e == -2;
    expert_sum(layers_[l], {handoff_.u, floats}, n, experts, {handoff_.weights, slots},
               {handoff_.sum, floats}, pool, scratch_);
    store_flag(handoff_.done + l, 1);
    stats_.cpu_compute_s += since(t1);
    stats_.routed_slots += uint64_t(n) * uint64_t(k_routed_);
  }
}

}  // namespace moe::cuda

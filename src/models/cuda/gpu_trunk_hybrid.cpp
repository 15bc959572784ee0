// The parts of GpuTrunk that only the hybrid placement uses (gpu_model.h, HybridPlacement):
// the GPU's PCIe experts, the expert cache's swaps between steps, and a step served with the
// CPU's experts beside it (cpu_experts.h). The rest of the class is in gpu_trunk.cpp.
#include "models/cuda/gpu_trunk.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <span>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"

namespace moe::cuda {

void GpuTrunk::ram_experts(const StreamedLayer& ram, const DeviceActivations& uq, const float* u, int n, int k,
                           const int32_t* ids, float* expert_out) {
  const int64_t ff = config_.n_ff_expert, rows = int64_t(n) * k;
  // The file's matrices where the GPU reads them over PCIe (the Q8_0 split layout is VRAM's only).
  auto mapped = [&](const ExpertWeights& w) {
    return GpuMatrix{.type = w.first.type, .layout = GpuLayout::Gguf, .rows = w.first.rows, .cols = w.first.cols,
                     .row_stride = w.first.row_stride, .expert_stride = w.expert_stride, .data = nullptr,
                     .base = registered_->device(w.first.data)};
  };
  const GpuMatrix gate = mapped(ram.gate), up = mapped(ram.up), down = mapped(ram.down);
  // [gate | up] rows as the VRAM experts' paired product leaves them, then the fused down.
  float* gu = up_.get(size_t(rows) * 2 * ff);
  const DeviceActivations& x = reuse_or_quantize(gate, uq, u, n);
  matvec_experts(gate.type, gate.get(), gate.expert_stride, gate.row_stride, ff, x, ids, gu, stream_, k, gate.layout,
                 2 * ff);
  matvec_experts(up.type, up.get(), up.expert_stride, up.row_stride, ff, x, ids, gu + ff, stream_, k, up.layout,
                 2 * ff);
  matvec_experts_swiglu(down.type, down.get(), down.expert_stride, down.row_stride, down.rows, gu, int(rows), ff, ids,
                        expert_out, stream_, down.layout);
}

// ---- the expert cache ----

void GpuTrunk::start_cache(int max_copies) {
  if (int(cache_layers_.size()) != cpu_experts_->n_layers() || !registered_) {
    spdlog::warn("gpu: the expert cache needs every hybrid layer's experts in Q8_0 with paired gate and up rows, and "
                 "the model registered with the driver: the VRAM experts stay fixed");
    cache_layers_.clear();
    return;
  }
  const ModelConfig& c = config_;
  std::vector<int> slots;
  size_t temp = 0;
  for (const CacheLayer& L : cache_layers_) {
    slots.push_back(0);
    temp = std::max({temp, L.ram.gate.first.bytes(), L.ram.down.first.bytes()});
  }
  // The slots a layer has: its VRAM experts (the table's entries >= 0 below the shared one's).
  cache_tables_ = PinnedBuffer(cache_layers_.size() * size_t(c.n_expert + 1) * sizeof(int32_t));
  for (size_t l = 0; l < cache_layers_.size(); ++l) {
    int32_t* table = cache_tables_.as<int32_t>() + l * size_t(c.n_expert + 1);
    MOE_CUDA_CHECK(cudaMemcpy(table, cache_layers_[l].slot_of, size_t(c.n_expert + 1) * sizeof(int32_t),
                              cudaMemcpyDeviceToHost));
    slots[l] = int(std::count_if(table, table + c.n_expert, [](int32_t s) { return s >= 0; }));
  }
  cache_.emplace(c.n_expert, slots, max_copies);
  cache_dirty_.assign(cache_layers_.size(), false);
  cache_temp_ = DeviceBuffer(temp);
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&cache_stream_, cudaStreamNonBlocking));
  cpu_experts_->set_observer([this, n_expert = c.n_expert, ids = std::vector<int32_t>()](
                                  int layer, std::span<const int32_t> routed) mutable {
    ids.assign(routed.begin(), routed.end());  // the routed experts (not a shared expert run as one more)
    for (int32_t& e : ids) e = e < n_expert ? e : -1;
    for (const auto& swap : cache_->observe(layer, ids)) started_.push_back(swap);
  });
  spdlog::info("gpu: the VRAM experts follow the routing, up to {} copies a layer a step", max_copies);
}

void GpuTrunk::apply_cache_swaps() {
  const int n_expert = config_.n_expert;
  auto table = [&](int layer) { return cache_tables_.as<int32_t>() + size_t(layer) * size_t(n_expert + 1); };
  // Copies that have landed: their experts are resident from the next step on.
  for (size_t i = 0; i < in_flight_.size();) {
    if (cudaEventQuery(in_flight_events_[i]) != cudaSuccess) {
      ++i;
      continue;
    }
    const ExpertCache::Swap& s = in_flight_[i];
    cache_->complete(s);
    table(s.layer)[s.expert_in] = s.slot;
    cache_dirty_[size_t(s.layer)] = true;
    cudaEventDestroy(in_flight_events_[i]);
    in_flight_.erase(in_flight_.begin() + ptrdiff_t(i));
    in_flight_events_.erase(in_flight_events_.begin() + ptrdiff_t(i));
  }
  // Swaps the last step started: the evicted expert leaves the table now (the next step never
  // reads its slot), the new one's rows are copied in while the next steps run.
  for (const ExpertCache::Swap& s : started_) {
    const CacheLayer& L = cache_layers_[size_t(s.layer)];
    if (s.expert_out >= 0) table(s.layer)[s.expert_out] = -1;
    cache_dirty_[size_t(s.layer)] = true;
    const int64_t ff = L.ram.gate.first.rows;
    auto copy_in = [&](const ExpertWeights& from, std::byte* to, size_t to_stride) {
      const WeightView& f = from.first;
      MOE_CUDA_CHECK(cudaMemcpyAsync(cache_temp_.get(), f.data + size_t(s.expert_in) * from.expert_stride, f.bytes(),
                                     cudaMemcpyHostToDevice, cache_stream_));
      MOE_CUDA_CHECK(relayout_q8_0_split(cache_temp_.get(), f.row_stride, f.rows, f.cols, to, to_stride, cache_stream_));
    };
    std::byte* gu = const_cast<std::byte*>(L.gate_up.base) + size_t(s.slot) * L.gate_up.expert_stride;
    copy_in(L.ram.gate, gu, L.gate_up.row_stride);
    copy_in(L.ram.up, gu + size_t(ff) * L.gate_up.row_stride, L.gate_up.row_stride);
    copy_in(L.ram.down, const_cast<std::byte*>(L.down.base) + size_t(s.slot) * L.down.expert_stride,
            L.down.row_stride);
    cudaEvent_t done = nullptr;
    MOE_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    MOE_CUDA_CHECK(cudaEventRecord(done, cache_stream_));
    in_flight_.push_back(s);
    in_flight_events_.push_back(done);
  }
  started_.clear();
  // The tables the next step reads, in stream order before it.
  for (size_t l = 0; l < cache_layers_.size(); ++l) {
    if (!cache_dirty_[l]) continue;
    MOE_CUDA_CHECK(cudaMemcpyAsync(cache_layers_[l].slot_of, table(int(l)), size_t(n_expert + 1) * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, stream_));
    cache_dirty_[l] = false;
  }
}

// ---- hybrid steps ----

void GpuTrunk::balance_pcie(int n) {
  if (!pcie_balance_) return;
  // The step before has finished (forward() synchronizes): its waits are all written.
  if (last_step_pcie_ && pcie_balance_->update(cpu_experts_->waited_layers(), cpu_experts_->n_layers())) {
    pcie_limit_value_ = pcie_balance_->limit();
    MOE_CUDA_CHECK(cudaMemcpyAsync(pcie_limit_.get(), &pcie_limit_value_, sizeof(int32_t), cudaMemcpyHostToDevice,
                                   stream_));
    spdlog::debug("gpu: the GPU reads up to {} of a token's RAM experts a layer over PCIe", pcie_limit_value_);
  }
  last_step_pcie_ = n <= kMaxMatvecTokens;  // the steps whose layers may read experts over PCIe
}

void GpuTrunk::run_hybrid_step(int n, int first_logit, ThreadPool& pool) {
  CpuExperts& cpu = *cpu_experts_;
  if (cpu.reserve(n)) decode_graph_valid_ = false;  // the hand-off buffers moved
  cpu.arm();
  // A warm decode step is one graph launch (recorded first where needed: recording launches
  // nothing) and returns at once; any other step enqueues some thirty launches a layer, and a
  // launch may block while the queue is full, so it enqueues from a second thread while this
  // one serves the CPU's experts.
  const bool one_launch = n == 1 && !tracing() && decode_sized_;
  std::exception_ptr enqueue_error;
  std::atomic<bool> enqueued{false};
  std::thread enqueuer;
  try {
    if (one_launch) {
      run_step(n, first_logit);
      enqueued = true;
    } else {
      enqueuer = std::thread([&] {
        try {
          MOE_CUDA_CHECK(cudaSetDevice(device_));
          run_step(n, first_logit);
        } catch (...) {
          enqueue_error = std::current_exception();
        }
        enqueued = true;
      });
    }
    cpu.serve(n, pool, stream_, enqueued);
  } catch (...) {
    cpu.release();  // a stream still waiting for the CPU finishes
    if (enqueuer.joinable()) enqueuer.join();
    cudaStreamSynchronize(stream_);
    if (enqueue_error) std::rethrow_exception(enqueue_error);
    throw;
  }
  if (enqueuer.joinable()) enqueuer.join();
  if (enqueue_error) std::rethrow_exception(enqueue_error);
}

}  // namespace moe::cuda

// The parts of GpuTrunk that only the hybrid placement uses (gpu_model.h, HybridPlacement):
// the GPU's PCIe experts, the expert cache's copies into VRAM slots, and a step served with the
// CPU's experts beside it (cpu_experts.h). The rest of the class is in gpu_trunk.cpp and
// gpu_trunk_moe.cpp.
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

void GpuTrunk::cache_rows(const GpuMoe& w, ExpertRows (&out)[kMaxExpertMatrices]) const {
  const StreamedLayer& ram = *w.ram;
  const GpuMatrix& gu = *w.gate_up;  // [gate | up] rows of each slot
  // Before the mapping is registered (a load's check): the host's addresses, aligned as the
  // GPU's view of them (the same offsets in pages).
  auto src = [&](const std::byte* p) -> const void* { return registered_ ? registered_->device(p) : p; };
  auto matrix = [&](const ExpertWeights& from, const GpuMatrix& to, int64_t row0) {
    return ExpertRows{.src = src(from.first.data), .src_expert_stride = from.expert_stride,
                      .src_row_stride = from.first.row_stride,
                      .dst = const_cast<std::byte*>(to.base) + size_t(row0) * to.row_stride,
                      .dst_expert_stride = to.expert_stride, .dst_row_stride = to.row_stride,
                      .rows = from.first.rows, .cols = from.first.cols, .dst_layout = to.layout};
  };
  out[0] = matrix(ram.gate, gu, 0);
  out[1] = matrix(ram.up, gu, ram.gate.first.rows);
  out[2] = matrix(ram.down, w.down, 0);
}

void GpuTrunk::fill_slots(const GpuMoe& w, const int32_t* ram_ids, const int32_t* slots, int rows) {
  ExpertRows matrices[kMaxExpertMatrices];
  cache_rows(w, matrices);
  MOE_CUDA_CHECK(fill_expert_slots(matrices, kMaxExpertMatrices, ram_ids, slots, rows, stream_));
}

// ---- hybrid steps ----

void GpuTrunk::balance_pcie(int n) {
  if (!pcie_balance_) return;
  // The step before has finished (forward() synchronizes): its waits are all written.
  if (last_step_pcie_ && pcie_balance_->update(cpu_experts_->waited_layers(), cpu_experts_->n_layers())) {
    pcie_table_value_ = pcie_balance_->table(kPcieTableSlots);
    MOE_CUDA_CHECK(cudaMemcpyAsync(pcie_table_.get(), pcie_table_value_.data(), pcie_table_.bytes(),
                                   cudaMemcpyHostToDevice, stream_));
    spdlog::debug("gpu: the GPU reads {}/{} of a token's RAM experts a layer over PCIe", pcie_balance_->share(),
                  PcieBalance::kSteps);
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

#pragma once
// The routed experts a hybrid model leaves in RAM, computed by the CPU while the GPU computes
// the ones in VRAM (issue 6's concurrent experts). The GPU stream publishes each hybrid MoE
// layer's routing and normed rows into host-mapped memory and raises a flag; serve(), on a CPU
// thread, waits for that flag, runs the CPU engine's expert kernels (expert_sum, blocks.h) over
// the experts the GPU does not hold, writes their weighted sum and raises the answer flag that
// the stream waits for (ops/cuda/handoff.h). Layers are served in order, one step at a time.
#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include <cuda_runtime.h>

#include "core/thread_pool.h"
#include "models/blocks.h"
#include "models/model.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/handoff.h"

namespace moe::cuda {

class CpuExperts {
 public:
  // How long the thread pool's idle workers spin during a step (microseconds): longer than
  // any step, so that they never sleep between two layers.
  static constexpr uint32_t kStepSpinUs = 100'000;

  // n_embd: a row's width; k: slots a token, of which k_routed are routed experts (the rest: a
  // shared expert run as one more, always on the GPU).
  CpuExperts(int64_t n_embd, int k, int k_routed) : n_embd_(n_embd), k_(k), k_routed_(k_routed) {}

  // A hybrid layer's experts as the CPU reads them (every expert, in the mapped file): the
  // index its hand-off uses.
  int add_layer(const ExpertWeights& gate, const ExpertWeights& up, const ExpertWeights& down);
  int n_layers() const { return int(layers_.size()); }
  bool empty() const { return layers_.empty(); }

  // Host-mapped buffers for steps of up to n tokens; true when they moved (a captured graph
  // that uses them is stale). Allocates the flags on first use.
  bool reserve(int n);
  const ExpertHandoff& handoff() const { return handoff_; }

  // Before a step is launched: every flag down.
  void arm();
  // Of the step served last (its stream finished), the layers whose GPU add waited for the
  // CPU's sum.
  int waited_layers() const;
  // Serves a step of n tokens enqueued on `stream` (enqueued: set once all of it is; it may
  // still be under way on another thread): every hybrid layer in order. Throws when the stream
  // fails, or runs dry with all of the step enqueued and a layer not published.
  void serve(int n, ThreadPool& pool, cudaStream_t stream, const std::atomic<bool>& enqueued);
  // After a failure: every answer flag up, so that a stream still waiting can finish.
  void release();
  // After a served step's stream has finished: the GPU's side of its layers (ExpertSplit's gpu_*
  // times), from the clock stamps its hand-off kernels left.
  void add_gpu_timeline();

  // What the CPU did in the steps served so far (bench's report).
  const Model::ExpertSplit& stats() const { return stats_; }

 private:
  int64_t n_embd_;
  int k_, k_routed_;
  std::vector<MoeLayer> layers_;  // gate, up and down only
  PinnedBuffer rows_, flags_;  // u, sum [n][n_embd]; experts, weights [n][k]; ready, done, waited [layers]
  PinnedBuffer times_;         // [layers][kHandoffTimes], the GPU's clock
  int capacity_ = 0;
  ExpertHandoff handoff_;
  moe::Scratch scratch_;
  Model::ExpertSplit stats_;
};

}  // namespace moe::cuda

#pragma once
// Prefill of a hybrid model with every expert on the GPU: a batch of hundreds of tokens sends
// nearly every expert of a layer some rows, and the CPU computing its share of them is the
// slow side (about 4 ms a token for Qwen3-Next-80B in 16 GiB, docs/performance.md). Copying a
// layer's experts over PCIe (about 1.7 GB for that model, some 30 ms at 55 GB/s) costs the same
// whatever the batch, so past a few hundred tokens it is cheaper: each hybrid layer's expert
// tensors are copied from RAM into one VRAM staging buffer on a copy stream, and the layer runs
// as the all-GPU engine runs it, from there.
//
// The copies read the model file where it is mapped, registered with the driver (pinned,
// read-only: no second copy in RAM), so they run at the link's speed. The staging buffer is
// counted in the VRAM budget (engine/placement.h). Layers take turns in the buffer: a layer's
// copy waits until the previous layer's experts have run, and the layer's experts wait for
// its copy.
#include <memory>
#include <optional>
#include <array>

#include <cuda_runtime.h>

#include "gguf/reader.h"
#include "models/cuda/gpu_weights.h"
#include "models/cuda/registered_model.h"
#include "models/weights.h"

namespace moe::cuda {

// One hybrid layer's experts in RAM: all n_expert of gate, up and down, and Qwen3-Next's shared
// expert where it runs as expert n_expert (its three matrices, the experts' shape).
struct StreamedLayer {
  ExpertWeights gate, up, down;
  std::optional<std::array<WeightView, 3>> shared;
};

// The layer's experts in the staging buffer, in the file's layout: expert e at e * stride.
struct StagedExperts {
  GpuMatrix gate, up, down;
};

class ExpertStream {
 public:
  // Copies from `model`'s registered mapping (unregistered, they would crawl through a bounce
  // buffer) into `staging_bytes` of VRAM.
  ExpertStream(const RegisteredModel& model, size_t staging_bytes);
  ~ExpertStream();
  ExpertStream(const ExpertStream&) = delete;
  ExpertStream& operator=(const ExpertStream&) = delete;

  // Bytes a layer needs in the staging buffer.
  static size_t bytes(const StreamedLayer& layer);
  size_t capacity() const { return staging_->bytes(); }

  // Enqueues the copy of `layer` into the staging buffer (after the previous layer's experts
  // have run on `compute`) and makes `compute` wait for it.
  StagedExperts stage(const StreamedLayer& layer, cudaStream_t compute);
  // `compute` has enqueued everything that reads the staged experts.
  void done(cudaStream_t compute);

 private:
  std::shared_ptr<DeviceBuffer> staging_;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t copied_ = nullptr, consumed_ = nullptr;
};

}  // namespace moe::cuda

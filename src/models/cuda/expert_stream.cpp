#include "models/cuda/expert_stream.h"

#include "core/error.h"
#include "ops/cuda/cuda_check.h"

namespace moe::cuda {
namespace {

size_t experts_bytes(const ExpertWeights& w) { return w.expert_stride * size_t(w.n_expert); }

// Each staged matrix starts 256-byte aligned, as a device allocation would.
constexpr size_t kAlign = 256;
size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// w's experts (with `extra` appended as one more) copied to `at` on `stream`; the matrix there.
GpuMatrix stage_one(const ExpertWeights& w, const WeightView* extra, const std::shared_ptr<DeviceBuffer>& staging,
                    size_t& at, cudaStream_t stream) {
  std::byte* dst = staging->as<std::byte>() + at;
  const size_t bytes = experts_bytes(w);
  MOE_CUDA_CHECK(cudaMemcpyAsync(dst, w.first.data, bytes, cudaMemcpyHostToDevice, stream));
  if (extra) MOE_CUDA_CHECK(cudaMemcpyAsync(dst + bytes, extra->data, extra->bytes(), cudaMemcpyHostToDevice, stream));
  at = aligned(at + bytes + (extra ? w.expert_stride : 0));
  const WeightView& f = w.first;
  return GpuMatrix{.type = f.type, .layout = GpuLayout::Gguf, .rows = f.rows, .cols = f.cols,
                   .row_stride = f.row_stride, .expert_stride = w.expert_stride, .data = staging, .base = dst};
}

}  // namespace

ExpertStream::ExpertStream(const RegisteredModel&, size_t staging_bytes)
    : staging_(std::make_shared<DeviceBuffer>(staging_bytes)) {
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
  MOE_CUDA_CHECK(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming));
  MOE_CUDA_CHECK(cudaEventCreateWithFlags(&consumed_, cudaEventDisableTiming));
  MOE_CUDA_CHECK(cudaEventRecord(consumed_, copy_));  // the buffer starts free
}

ExpertStream::~ExpertStream() {
  if (copy_) cudaStreamSynchronize(copy_);
  if (copied_) cudaEventDestroy(copied_);
  if (consumed_) cudaEventDestroy(consumed_);
  if (copy_) cudaStreamDestroy(copy_);
}

size_t ExpertStream::bytes(const StreamedLayer& layer) {
  const size_t extra = layer.shared ? 1 : 0;
  return aligned((size_t(layer.gate.n_expert) + extra) * layer.gate.expert_stride) +
         aligned((size_t(layer.up.n_expert) + extra) * layer.up.expert_stride) +
         aligned((size_t(layer.down.n_expert) + extra) * layer.down.expert_stride);
}

StagedExperts ExpertStream::stage(const StreamedLayer& layer, cudaStream_t compute) {
  MOE_ASSERT(bytes(layer) <= capacity());
  MOE_CUDA_CHECK(cudaStreamWaitEvent(copy_, consumed_, 0));
  size_t at = 0;
  const WeightView* shared = layer.shared ? layer.shared->data() : nullptr;
  StagedExperts s;
  s.gate = stage_one(layer.gate, shared ? &shared[0] : nullptr, staging_, at, copy_);
  s.up = stage_one(layer.up, shared ? &shared[1] : nullptr, staging_, at, copy_);
  s.down = stage_one(layer.down, shared ? &shared[2] : nullptr, staging_, at, copy_);
  MOE_CUDA_CHECK(cudaEventRecord(copied_, copy_));
  MOE_CUDA_CHECK(cudaStreamWaitEvent(compute, copied_, 0));
  return s;
}

void ExpertStream::done(cudaStream_t compute) { MOE_CUDA_CHECK(cudaEventRecord(consumed_, compute)); }

}  // namespace moe::cuda

#include "models/cuda/gpu_model.h"

#include "core/error.h"
#include "core/units.h"
#include "models/cuda/gpu_models.h"
#include "ops/cuda/cuda_check.h"

namespace moe::cuda {

bool gpu_supports(const gguf::Reader& reader, std::string* why) {
  const std::string_view arch = reader.architecture();
  if (arch == "qwen3" || arch == "qwen3moe") return true;
  if (arch == "qwen3next") {
    if (reader.find_tensor("blk.0.ssm_in.weight") == nullptr) return true;
    if (why) *why = "the GPU backend runs qwen3next files with split projections (attn_qkv, attn_gate), not the legacy ssm_in";
    return false;
  }
  if (why) *why = fmt::format("the GPU backend does not run '{}' (qwen3, qwen3moe, qwen3next)", arch);
  return false;
}

std::unique_ptr<Model> load_gpu_model(const gguf::Reader& reader, int device) {
  std::string why;
  if (!gpu_supports(reader, &why)) fail("{}: {}", reader.path(), why);
  size_t free_bytes = 0, total_bytes = 0;
  MOE_CUDA_CHECK(cudaSetDevice(device));
  MOE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const uint64_t need = reader.tensor_bytes();
  if (need > free_bytes) {
    fail("{}: the weights need {} of VRAM, device {} has {} free; run on the CPU (--device cpu) or, once the hybrid "
         "placement lands, give a --vram-budget",
         reader.path(), format_bytes(need), device, format_bytes(free_bytes));
  }
  return load_hybrid_model(reader, device, {});
}

std::unique_ptr<Model> load_hybrid_model(const gguf::Reader& reader, int device, HybridPlacement placement) {
  std::string why;
  if (!gpu_supports(reader, &why)) fail("{}: {}", reader.path(), why);
  if (reader.architecture() == "qwen3next") return make_qwen3next_gpu(reader, device, std::move(placement));
  return make_qwen3_gpu(reader, device, std::move(placement));
}

}  // namespace moe::cuda

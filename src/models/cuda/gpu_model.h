#pragma once
// Models whose weights all live in VRAM and whose forward pass runs on one GPU.
#include <memory>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "models/model.h"

namespace moe::cuda {

// Whether the GPU backend runs this file (qwen3, qwen3moe, qwen3next with split delta-net
// projections), and if not, why.
bool gpu_supports(const gguf::Reader& reader, std::string* why = nullptr);

// Loads the model onto `device`, all weights uploaded. Throws moe::Error when the
// architecture is not supported or the weights do not fit the free VRAM (the message says how
// much is needed and points to the CPU / partial placement options).
std::unique_ptr<Model> load_gpu_model(const gguf::Reader& reader, int device);

// The hybrid placement: per layer, the first vram_experts[layer] routed experts in VRAM with
// everything else the model reads; the CPU computes the other experts from the mapped file,
// concurrently (cpu_experts.h). With stream_prefill, a prefill of at least kStreamMinTokens
// tokens copies each such layer's experts to a VRAM staging buffer and runs them all on the GPU
// instead (expert_stream.h); the staging buffer takes the largest layer's experts.
struct HybridPlacement {
  std::vector<int> vram_experts;  // empty: every expert in VRAM
  bool stream_prefill = false;
  // Decode: up to this many of a token's experts left in RAM (a layer) are computed by the GPU,
  // reading them over PCIe from the registered mapping, while the CPU computes the others.
  int pcie_experts = 0;
  // pcie_experts is the most; the number taken follows the balance of the two sides, step by
  // step (engine/pcie_balance.h).
  bool pcie_auto = false;
  // The VRAM experts follow the routing (engine/expert_cache.h): the PCIe experts of a decode
  // step land in the least recently used slots instead of going straight into their products.
  // Off: each layer keeps its first experts.
  bool expert_cache = false;
  // The KV positions the plan kept room for: the cache grows to no more than this while a
  // sequence fits in it (else by doubling, as without a plan). 0: no plan.
  int64_t kv_positions = 0;
};
constexpr int kStreamMinTokens = 256;

// The caller has checked the plan (with its staging buffer) against the budget.
std::unique_ptr<Model> load_hybrid_model(const gguf::Reader& reader, int device, HybridPlacement placement);

}  // namespace moe::cuda

#pragma once
// The GPU model files' constructors (gpu_model.cpp picks one by architecture).
#include <memory>
#include <vector>

#include "gguf/reader.h"
#include "models/model.h"

namespace moe::cuda {

// vram_experts: per layer, how many routed experts go to VRAM (GpuTrunk); empty: all.
std::unique_ptr<Model> make_qwen3_gpu(const gguf::Reader& reader, int device, std::vector<int> vram_experts);
std::unique_ptr<Model> make_qwen3next_gpu(const gguf::Reader& reader, int device, std::vector<int> vram_experts);

}  // namespace moe::cuda

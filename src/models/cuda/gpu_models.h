#pragma once
// The GPU model files' constructors (gpu_model.cpp picks one by architecture).
#include <memory>
#include <vector>

#include "gguf/reader.h"
#include "models/cuda/gpu_model.h"
#include "models/model.h"

namespace moe::cuda {

std::unique_ptr<Model> make_qwen3_gpu(const gguf::Reader& reader, int device, HybridPlacement placement);
std::unique_ptr<Model> make_qwen3next_gpu(const gguf::Reader& reader, int device, HybridPlacement placement);

}  // namespace moe::cuda

#pragma once
// The GPU model files' constructors (gpu_model.cpp picks one by architecture).
#include <memory>

#include "gguf/reader.h"
#include "models/model.h"

namespace moe::cuda {

std::unique_ptr<Model> make_qwen3_gpu(const gguf::Reader& reader, int device);      // qwen3, qwen3moe
std::unique_ptr<Model> make_qwen3next_gpu(const gguf::Reader& reader, int device);  // qwen3next

}  // namespace moe::cuda

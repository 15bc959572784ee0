#pragma once
// The constructor of each supported architecture, one file each; model.cpp lists them.
#include <memory>

#include "gguf/reader.h"
#include "models/model.h"

namespace moe {

std::unique_ptr<Model> make_qwen3(const gguf::Reader& reader, const ModelOptions& options);      // qwen3.cpp
std::unique_ptr<Model> make_qwen3moe(const gguf::Reader& reader, const ModelOptions& options);   // qwen3moe.cpp
std::unique_ptr<Model> make_qwen3next(const gguf::Reader& reader, const ModelOptions& options);  // qwen3next.cpp

}  // namespace moe

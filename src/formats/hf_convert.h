#pragma once
// Hugging Face Qwen3 / Qwen3-MoE safetensors checkpoint -> GGUF, with llama.cpp's architecture
// names, metadata keys, tensor names and layouts (see docs/convert.md). Tensors are streamed:
// each is produced row by row from the mapped checkpoint while the GGUF is written, so memory
// stays at about one output tensor whatever the model size.
#include <cstdint>
#include <string>
#include <vector>

#include "core/ggml_type.h"

namespace moe::formats {

struct ConvertOptions {
  std::string hf_dir;
  std::string out_path;
  // The type of the 2-D/3-D weight matrices: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K.
  // Norms and the MoE router stay F32; a matrix whose rows do not divide into the type's
  // blocks falls back to F16 (listed in ConvertSummary::fallbacks).
  GgmlType type = GgmlType::F16;
};

struct ConvertSummary {
  std::string gguf_arch;
  size_t n_tensors = 0;
  uint64_t tensor_bytes = 0;
  std::vector<std::string> fallbacks;  // tensors written as F16 instead of the requested type
};

// The --type values convert accepts.
bool is_convert_type(GgmlType type);
std::string convert_type_names();  // "f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k"
// llama.cpp's general.file_type (LLAMA_FTYPE_*) for an all-`type` conversion.
uint32_t file_type_for(GgmlType type);

ConvertSummary convert_hf_to_gguf(const ConvertOptions& options);

}  // namespace moe::formats

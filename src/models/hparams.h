#pragma once
// Reading the `<arch>.*` hyperparameter keys shared by the Qwen3 family.
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "models/model.h"

namespace moe {

// Fills the fields every transformer of the family has; throws moe::Error naming a missing or
// inconsistent key.
ModelConfig read_transformer_config(const gguf::Reader& reader);

// Qwen3-MoE's expert keys (qwen3moe.expert_count, expert_used_count,
// expert_feed_forward_length) into c; throws moe::Error when the counts are inconsistent.
void read_qwen3moe_experts(const gguf::Reader& reader, ModelConfig& c);

// The keys only qwen3next files have (llama.cpp's names), written alike by synth and convert.
struct Qwen3NextKeys {
  uint32_t n_ff_shexp = 0, rope_dims = 0, full_attention_interval = 0;
  uint32_t conv_kernel = 0, k_heads = 0, v_heads = 0, k_dim = 0, v_dim = 0;  // the delta-nets
};
void write_qwen3next_keys(gguf::Writer& writer, const Qwen3NextKeys& keys);

}  // namespace moe

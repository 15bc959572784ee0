#pragma once
// Reading the `<arch>.*` hyperparameter keys shared by the Qwen3 family.
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "models/blocks.h"
#include "models/delta_net.h"
#include "models/model.h"

namespace moe {

// Fills the fields every transformer of the family has; throws moe::Error naming a missing or
// inconsistent key.
ModelConfig read_transformer_config(const gguf::Reader& reader);

// Qwen3-MoE's expert keys (qwen3moe.expert_count, expert_used_count,
// expert_feed_forward_length) into c; throws moe::Error when the counts are inconsistent.
void read_qwen3moe_experts(const gguf::Reader& reader, ModelConfig& c);

// Qwen3-Next's shapes beyond the transformer keys: its experts (into c; c.n_layer loses the
// MTP block, which is for speculative decoding only), the delta-nets' and the gated attention's
// shapes, how often a layer is full attention, the shared expert's width. Throws moe::Error
// for inconsistent keys. Shared by the CPU and GPU models.
struct Qwen3NextShape {
  DeltaNetShape delta;
  AttentionShape attention;
  int full_attention_interval = 4;  // layer il is full attention when (il + 1) % interval == 0
  int n_ff_shared = 0;
  bool recurrent(int il) const { return (il + 1) % full_attention_interval != 0; }
};
Qwen3NextShape read_qwen3next_config(const gguf::Reader& reader, ModelConfig& c);

// The keys only qwen3next files have (llama.cpp's names), written alike by synth and convert.
struct Qwen3NextKeys {
  uint32_t n_ff_shexp = 0, rope_dims = 0, full_attention_interval = 0;
  uint32_t conv_kernel = 0, k_heads = 0, v_heads = 0, k_dim = 0, v_dim = 0;  // the delta-nets
};
void write_qwen3next_keys(gguf::Writer& writer, const Qwen3NextKeys& keys);

}  // namespace moe

#pragma once
// config.json of a Hugging Face Qwen3 / Qwen3-MoE / Qwen3-Next checkpoint, validated, and the
// GGUF hyperparameter keys llama.cpp's converter writes for it (convert_hf_to_gguf.py:
// TextModel, Qwen2MoeModel, Qwen3Model, Qwen3MoeModel, Qwen3NextModel).
#include <cstdint>
#include <optional>
#include <string>

#include "gguf/writer.h"

namespace moe::formats {

enum class HfArch { Qwen3, Qwen3Moe, Qwen3Next };

struct RopeScaling {
  std::string type;  // "linear" or "yarn"; empty: none
  float factor = 1.0f;
  uint32_t original_context_length = 0;  // yarn only
};

struct HfModelConfig {
  std::string path;               // of config.json, for messages
  std::string hf_architecture;    // "Qwen3MoeForCausalLM"
  HfArch arch = HfArch::Qwen3;
  std::string gguf_arch;          // "qwen3moe" / "qwen3": the GGUF key prefix

  uint32_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ctx = 0, vocab_size = 0;
  std::optional<uint32_t> n_ff;   // intermediate_size: required for qwen3, optional for qwen3moe
  float rms_eps = 0, rope_theta = 0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;

  // Qwen3-MoE and Qwen3-Next.
  uint32_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;

  // Qwen3-Next only: the shared expert, partial RoPE, the layer schedule and the delta-nets.
  uint32_t n_ff_shexp = 0, rope_dims = 0, full_attention_interval = 0;
  uint32_t linear_k_heads = 0, linear_v_heads = 0, linear_k_dim = 0, linear_v_dim = 0, conv_kernel = 0;
  bool is_linear_layer(uint32_t l) const { return full_attention_interval && (l + 1) % full_attention_interval != 0; }

  // Special token ids config.json may carry (the lowest-priority source, as in llama.cpp).
  std::optional<uint32_t> bos_token_id, eos_token_id, pad_token_id;
};

// The architectures `convert` supports, for messages: "Qwen3ForCausalLM, Qwen3MoeForCausalLM".
std::string supported_hf_architectures();

// Reads DIR/config.json. Missing or inconsistent fields, and features llama.cpp's qwen3/qwen3moe
// graphs do not implement (attention biases, dense layers inside an MoE stack, norm_topk_prob
// false, sliding windows, unknown RoPE scaling), are errors naming the key.
HfModelConfig load_hf_config(const std::string& dir);

// general.architecture and the "<arch>.*" hyperparameters, with llama.cpp's key names and types
// (integers u32, floats f32).
void write_hparams(const HfModelConfig& config, gguf::Writer& writer);

}  // namespace moe::formats

#pragma once
// Shapes and hyperparameters of the models `moeserve synth` can imitate. The real presets copy
// the Hugging Face config.json of the released checkpoints (and so the GGUF keys that
// llama.cpp's converter writes from them); the `tiny` presets keep every structural feature
// (GQA, q/k norms, experts, top-k routing) at a size a unit test writes in milliseconds.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moe::synth {

enum class Arch { Qwen3Moe, Qwen3, Qwen3Next };

std::string_view arch_name(Arch arch);  // "qwen3moe", "qwen3", "qwen3next": general.architecture and key prefix
std::optional<Arch> parse_arch(std::string_view name);

struct ModelShape {
  Arch arch = Arch::Qwen3Moe;
  std::string preset;  // "30b-a3b"
  std::string name;    // general.name, "Qwen3-30B-A3B (synthetic)"
  uint32_t n_embd = 0;
  uint32_t n_layer = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t head_dim = 0;  // key_length = value_length
  uint32_t n_ff = 0;      // dense FFN width (qwen3); for qwen3moe the unused HF intermediate_size
  uint32_t n_ff_exp = 0;  // per-expert FFN width (qwen3moe only)
  uint32_t n_expert = 0;
  uint32_t n_expert_used = 0;
  // 0 = the built-in small vocabulary (tiny presets), else the model's real vocabulary size.
  uint32_t n_vocab = 0;
  uint32_t context_length = 0;
  float rope_freq_base = 0;
  float rms_norm_eps = 0;
  bool tied_embeddings = false;  // no output.weight; the LM head reuses token_embd
  // Qwen3-Next only: shared expert, partial RoPE, gated delta-net layers.
  uint32_t n_ff_shexp = 0;
  uint32_t rope_dims = 0;               // rope.dimension_count (0: head_dim)
  uint32_t full_attention_interval = 0;  // layer i is full attention iff (i + 1) % interval == 0
  uint32_t ssm_conv_kernel = 0, ssm_k_heads = 0, ssm_v_heads = 0, ssm_head_dim = 0;  // d_k = d_v

  bool is_moe() const { return arch == Arch::Qwen3Moe || arch == Arch::Qwen3Next; }
  bool is_recurrent(uint32_t layer) const {
    return full_attention_interval > 0 && (layer + 1) % full_attention_interval != 0;
  }
};

// The preset, or std::nullopt if `arch` has none by that name.
std::optional<ModelShape> find_preset(Arch arch, std::string_view preset);
// Preset names of `arch`, for help texts and error messages.
std::vector<std::string> preset_names(Arch arch);

}  // namespace moe::synth

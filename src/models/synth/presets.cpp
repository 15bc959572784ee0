#include "models/synth/presets.h"

namespace moe::synth {
namespace {

// Values from the released config.json files (hidden_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, intermediate_size,
// moe_intermediate_size, num_experts, num_experts_per_tok, vocab_size,
// max_position_embeddings, rope_theta, rms_norm_eps, tie_word_embeddings).
std::vector<ModelShape> all_presets() {
  std::vector<ModelShape> p;
  // qwen3moe ---------------------------------------------------------------------------------
  ModelShape tiny_moe{.arch = Arch::Qwen3Moe, .preset = "tiny", .name = "Qwen3-MoE tiny (synthetic)",
                      .n_embd = 256, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .head_dim = 64,
                      .n_ff = 768, .n_ff_exp = 256, .n_expert = 8, .n_expert_used = 2, .n_vocab = 0,
                      .context_length = 40960, .rope_freq_base = 1e6f, .rms_norm_eps = 1e-6f,
                      .tied_embeddings = false};
  p.push_back(tiny_moe);
  // Qwen/Qwen3-30B-A3B (original April 2025 release).
  ModelShape a3b{.arch = Arch::Qwen3Moe, .preset = "30b-a3b", .name = "Qwen3-30B-A3B (synthetic)",
                 .n_embd = 2048, .n_layer = 48, .n_head = 32, .n_head_kv = 4, .head_dim = 128,
                 .n_ff = 6144, .n_ff_exp = 768, .n_expert = 128, .n_expert_used = 8, .n_vocab = 151936,
                 .context_length = 40960, .rope_freq_base = 1e6f, .rms_norm_eps = 1e-6f,
                 .tied_embeddings = false};
  p.push_back(a3b);
  // Qwen/Qwen3-235B-A22B (original release; the 2507 update raised rope_theta to 5e6 and the
  // context to 262144, same tensors).
  ModelShape a22b{.arch = Arch::Qwen3Moe, .preset = "235b-a22b", .name = "Qwen3-235B-A22B (synthetic)",
                  .n_embd = 4096, .n_layer = 94, .n_head = 64, .n_head_kv = 4, .head_dim = 128,
                  .n_ff = 12288, .n_ff_exp = 1536, .n_expert = 128, .n_expert_used = 8, .n_vocab = 151936,
                  .context_length = 40960, .rope_freq_base = 1e6f, .rms_norm_eps = 1e-6f,
                  .tied_embeddings = false};
  p.push_back(a22b);
  // Qwen/Qwen3-Coder-30B-A3B-Instruct: the 30B-A3B tensors, but a 256K native context with
  // rope_theta 1e7, and a different (unused by the MoE layers) intermediate_size of 5472.
  ModelShape coder = a3b;
  coder.preset = "coder-30b-a3b";
  coder.name = "Qwen3-Coder-30B-A3B-Instruct (synthetic)";
  coder.n_ff = 5472;
  coder.context_length = 262144;
  coder.rope_freq_base = 1e7f;
  p.push_back(coder);
  // qwen3 (dense) ----------------------------------------------------------------------------
  ModelShape tiny_dense{.arch = Arch::Qwen3, .preset = "tiny", .name = "Qwen3 tiny (synthetic)",
                        .n_embd = 256, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .head_dim = 64,
                        .n_ff = 768, .n_ff_exp = 0, .n_expert = 0, .n_expert_used = 0, .n_vocab = 0,
                        .context_length = 40960, .rope_freq_base = 1e6f, .rms_norm_eps = 1e-6f,
                        .tied_embeddings = true};
  p.push_back(tiny_dense);
  // Qwen/Qwen3-0.6B: tied embeddings, q_proj wider (16 x 128) than hidden_size (1024).
  ModelShape q06{.arch = Arch::Qwen3, .preset = "0.6b", .name = "Qwen3-0.6B (synthetic)",
                 .n_embd = 1024, .n_layer = 28, .n_head = 16, .n_head_kv = 8, .head_dim = 128,
                 .n_ff = 3072, .n_ff_exp = 0, .n_expert = 0, .n_expert_used = 0, .n_vocab = 151936,
                 .context_length = 40960, .rope_freq_base = 1e6f, .rms_norm_eps = 1e-6f,
                 .tied_embeddings = true};
  p.push_back(q06);
  // Qwen3-Next: the tiny one keeps every ratio of the real one (3 delta-nets : 1 attention,
  // 2 value heads per key head, GQA, a quarter of each head rotated, 1 shared expert).
  ModelShape tiny_next{.arch = Arch::Qwen3Next, .preset = "tiny", .name = "Qwen3-Next tiny (synthetic)",
                       .n_embd = 256, .n_layer = 4, .n_head = 4, .n_head_kv = 2, .head_dim = 64,
                       .n_ff = 512, .n_ff_exp = 256, .n_expert = 8, .n_expert_used = 2, .n_vocab = 0,
                       .context_length = 262144, .rope_freq_base = 1e7f, .rms_norm_eps = 1e-6f,
                       .tied_embeddings = false, .n_ff_shexp = 256, .rope_dims = 16, .full_attention_interval = 4,
                       .ssm_conv_kernel = 4, .ssm_k_heads = 2, .ssm_v_heads = 4, .ssm_head_dim = 64};
  p.push_back(tiny_next);
  // Qwen/Qwen3-Next-80B-A3B-Instruct (reference section 1).
  ModelShape next80{.arch = Arch::Qwen3Next, .preset = "80b-a3b", .name = "Qwen3-Next-80B-A3B (synthetic)",
                    .n_embd = 2048, .n_layer = 48, .n_head = 16, .n_head_kv = 2, .head_dim = 256,
                    .n_ff = 5120, .n_ff_exp = 512, .n_expert = 512, .n_expert_used = 10, .n_vocab = 151936,
                    .context_length = 262144, .rope_freq_base = 1e7f, .rms_norm_eps = 1e-6f,
                    .tied_embeddings = false, .n_ff_shexp = 512, .rope_dims = 64, .full_attention_interval = 4,
                    .ssm_conv_kernel = 4, .ssm_k_heads = 16, .ssm_v_heads = 32, .ssm_head_dim = 128};
  p.push_back(next80);
  return p;
}

}  // namespace

std::string_view arch_name(Arch arch) {
  switch (arch) {
    case Arch::Qwen3Moe: return "qwen3moe";
    case Arch::Qwen3: return "qwen3";
    case Arch::Qwen3Next: return "qwen3next";
  }
  return "?";
}

std::optional<Arch> parse_arch(std::string_view name) {
  if (name == "qwen3moe") return Arch::Qwen3Moe;
  if (name == "qwen3") return Arch::Qwen3;
  if (name == "qwen3next") return Arch::Qwen3Next;
  return std::nullopt;
}

std::optional<ModelShape> find_preset(Arch arch, std::string_view preset) {
  for (auto& shape : all_presets()) {
    if (shape.arch == arch && shape.preset == preset) return shape;
  }
  return std::nullopt;
}

std::vector<std::string> preset_names(Arch arch) {
  std::vector<std::string> names;
  for (const auto& shape : all_presets()) {
    if (shape.arch == arch) names.push_back(shape.preset);
  }
  return names;
}

}  // namespace moe::synth

#include "formats/hf_config.h"

#include <limits>

#include "core/error.h"
#include "models/hparams.h"
#include "formats/json_util.h"

namespace moe::formats {
namespace {

using json_util::Json;

uint32_t get_u32(const Json& j, std::string_view key, const std::string& what) {
  const uint64_t v = json_util::get_uint(j, key, what);
  if (v == 0 || v > std::numeric_limits<uint32_t>::max()) fail("{}: key '{}' = {} is out of range", what, key, v);
  return uint32_t(v);
}

std::optional<uint32_t> get_u32_opt(const Json& j, std::string_view key, const std::string& what) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return get_u32(j, key, what);
}

// A token id in config.json may be an integer or a list (generation defaults); the first counts.
std::optional<uint32_t> get_token_id(const Json& j, std::string_view key, const std::string& what) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  const Json& v = it->is_array() && !it->empty() ? it->front() : *it;
  if (!v.is_number_unsigned() || v.get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
    fail("{}: key '{}' must be a token id, found {}", what, key, it->dump());
  }
  return uint32_t(v.get<uint64_t>());
}

// Refuses a key whose value would change the math in a way the llama.cpp graph does not follow.
void require_value(const Json& j, std::string_view key, const Json& allowed, const std::string& what,
                   std::string_view why) {
  const auto it = j.find(key);
  if (it != j.end() && !it->is_null() && *it != allowed) {
    fail("{}: key '{}' = {} is not supported ({})", what, key, it->dump(), why);
  }
}

// transformers 5 moved rope_theta and rope_scaling into "rope_parameters"; older configs have them
// at the top level. Both are read, the new place first.
void read_rope(const Json& j, HfModelConfig& c) {
  const Json* params = nullptr;
  std::string where = c.path;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const auto it = j.find(key);
    if (it != j.end() && !it->is_null()) {
      if (!it->is_object()) fail("{}: key '{}' must be an object", c.path, key);
      params = &*it;
      where = c.path + ": " + key;
      break;
    }
  }
  std::optional<double> theta;
  if (params) theta = json_util::get_number_opt(*params, "rope_theta", where);
  if (!theta) theta = json_util::get_number_opt(j, "rope_theta", c.path);
  if (!theta) fail("{}: missing key 'rope_theta' (neither top level nor in rope_parameters)", c.path);
  if (!(*theta > 0)) fail("{}: rope_theta = {} must be positive", c.path, *theta);
  c.rope_theta = float(*theta);
  if (!params) return;

  auto type = json_util::get_string_opt(*params, "rope_type", where);
  if (!type) type = json_util::get_string_opt(*params, "type", where);
  if (!type || *type == "default") return;
  if (*type != "linear" && *type != "yarn") {
    fail("{}: rope_type '{}' is not supported (default, linear, yarn)", where, *type);
  }
  c.rope_scaling.type = *type;
  c.rope_scaling.factor = float(json_util::get_number(*params, "factor", where));
  if (*type == "yarn") {
    c.rope_scaling.original_context_length =
        uint32_t(json_util::get_uint(*params, "original_max_position_embeddings", where));
  }
}

}  // namespace

std::string supported_hf_architectures() { return "Qwen3ForCausalLM, Qwen3MoeForCausalLM, Qwen3NextForCausalLM"; }

// The delta-net shape, the shared expert, partial RoPE and which layers are full attention.
void read_qwen3next(const Json& j, HfModelConfig& c) {
  const std::string& w = c.path;
  c.n_ff_shexp = get_u32(j, "shared_expert_intermediate_size", w);
  c.linear_k_heads = get_u32(j, "linear_num_key_heads", w);
  c.linear_v_heads = get_u32(j, "linear_num_value_heads", w);
  c.linear_k_dim = get_u32(j, "linear_key_head_dim", w);
  c.linear_v_dim = get_u32(j, "linear_value_head_dim", w);
  c.conv_kernel = get_u32(j, "linear_conv_kernel_dim", w);
  if (c.linear_v_heads % c.linear_k_heads != 0) {
    fail("{}: linear_num_value_heads {} is not a multiple of linear_num_key_heads {}", w, c.linear_v_heads,
         c.linear_k_heads);
  }
  // partial_rotary_factor: top level (older configs) or inside rope_parameters (transformers 5).
  std::optional<double> factor = json_util::get_number_opt(j, "partial_rotary_factor", w);
  if (const auto it = j.find("rope_parameters"); !factor && it != j.end() && it->is_object()) {
    factor = json_util::get_number_opt(*it, "partial_rotary_factor", w);
  }
  c.rope_dims = uint32_t(double(c.head_dim) * factor.value_or(1.0) + 0.5);
  if (c.rope_dims == 0 || c.rope_dims > c.head_dim || c.rope_dims % 2 != 0) {
    fail("{}: partial_rotary_factor gives {} rotated dims of head_dim {}", w, c.rope_dims, c.head_dim);
  }
  c.full_attention_interval = get_u32_opt(j, "full_attention_interval", w).value_or(4);
  if (const auto it = j.find("layer_types"); it != j.end() && it->is_array()) {
    // The GGUF can only say "every interval-th layer": check the list says exactly that.
    if (it->size() != c.n_layer) fail("{}: layer_types has {} entries for {} layers", w, it->size(), c.n_layer);
    for (uint32_t l = 0; l < c.n_layer; ++l) {
      const std::string want = c.is_linear_layer(l) ? "linear_attention" : "full_attention";
      if ((*it)[l] != want) {
        fail("{}: layer_types[{}] is {} but full_attention_interval {} implies \"{}\"", w, l, (*it)[l].dump(),
             c.full_attention_interval, want);
      }
    }
  }
}

HfModelConfig load_hf_config(const std::string& dir) {
  HfModelConfig c;
  c.path = dir + "/config.json";
  const Json j = json_util::read_file(c.path);
  const std::string& w = c.path;

  const Json& archs = json_util::require(j, "architectures", w);
  if (!archs.is_array() || archs.empty() || !archs.front().is_string()) {
    fail("{}: key 'architectures' must be a non-empty list of class names", w);
  }
  c.hf_architecture = archs.front().get<std::string>();
  if (c.hf_architecture == "Qwen3MoeForCausalLM") {
    c.arch = HfArch::Qwen3Moe;
    c.gguf_arch = "qwen3moe";
  } else if (c.hf_architecture == "Qwen3ForCausalLM") {
    c.arch = HfArch::Qwen3;
    c.gguf_arch = "qwen3";
  } else if (c.hf_architecture == "Qwen3NextForCausalLM") {
    c.arch = HfArch::Qwen3Next;
    c.gguf_arch = "qwen3next";
  } else {
    fail("{}: architecture '{}' is not supported (supported: {})", w, c.hf_architecture, supported_hf_architectures());
  }

  c.n_layer = get_u32(j, "num_hidden_layers", w);
  c.n_embd = get_u32(j, "hidden_size", w);
  c.n_head = get_u32(j, "num_attention_heads", w);
  c.n_head_kv = get_u32(j, "num_key_value_heads", w);
  c.n_ctx = get_u32(j, "max_position_embeddings", w);
  c.vocab_size = get_u32(j, "vocab_size", w);
  c.n_ff = get_u32_opt(j, "intermediate_size", w);
  // HF defaults head_dim to hidden_size / heads when absent; Qwen3 configs always give it.
  c.head_dim = get_u32_opt(j, "head_dim", w).value_or(c.n_embd / c.n_head);
  if (c.head_dim == 0) fail("{}: head_dim is 0 (hidden_size {} < num_attention_heads {})", w, c.n_embd, c.n_head);
  if (c.n_head % c.n_head_kv != 0) {
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", w, c.n_head, c.n_head_kv);
  }
  const double eps = json_util::get_number(j, "rms_norm_eps", w);
  if (!(eps > 0 && eps < 1)) fail("{}: rms_norm_eps = {} must be in (0, 1)", w, eps);
  c.rms_eps = float(eps);
  read_rope(j, c);
  c.tie_word_embeddings = json_util::get_bool_opt(j, "tie_word_embeddings", w).value_or(false);

  require_value(j, "hidden_act", "silu", w, "the qwen3 graphs use SiLU");
  require_value(j, "attention_bias", false, w, "the qwen3 graphs have no attention biases");
  require_value(j, "use_sliding_window", false, w, "the qwen3 graphs use full attention");

  if (c.arch == HfArch::Qwen3) {
    if (!c.n_ff) fail("{}: missing key 'intermediate_size'", w);
  } else {
    // transformers 5 writes "num_local_experts"; the released Qwen3-MoE configs say "num_experts".
    if (!j.contains("num_experts") && !j.contains("num_local_experts")) {
      fail("{}: missing key 'num_experts' (or 'num_local_experts')", w);
    }
    c.n_expert = get_u32(j, j.contains("num_experts") ? "num_experts" : "num_local_experts", w);
    c.n_expert_used = get_u32(j, "num_experts_per_tok", w);
    c.n_ff_exp = get_u32(j, "moe_intermediate_size", w);
    if (c.n_expert_used > c.n_expert) {
      fail("{}: num_experts_per_tok {} exceeds num_experts {}", w, c.n_expert_used, c.n_expert);
    }
    require_value(j, "norm_topk_prob", true, w, "llama.cpp's qwen3moe graph always renormalises the top-k weights");
    require_value(j, "decoder_sparse_step", 1, w, "every layer must be an MoE layer");
    require_value(j, "mlp_only_layers", Json::array(), w, "dense layers inside qwen3moe are not supported");
  }
  if (c.arch == HfArch::Qwen3Next) read_qwen3next(j, c);
  c.bos_token_id = get_token_id(j, "bos_token_id", w);
  c.eos_token_id = get_token_id(j, "eos_token_id", w);
  c.pad_token_id = get_token_id(j, "pad_token_id", w);
  return c;
}

void write_hparams(const HfModelConfig& c, gguf::Writer& w) {
  const std::string& a = c.gguf_arch;
  w.set_string("general.architecture", a);
  w.set_u32(a + ".block_count", c.n_layer);
  w.set_u32(a + ".context_length", c.n_ctx);
  w.set_u32(a + ".embedding_length", c.n_embd);
  if (c.n_ff) w.set_u32(a + ".feed_forward_length", *c.n_ff);
  w.set_u32(a + ".attention.head_count", c.n_head);
  w.set_u32(a + ".attention.head_count_kv", c.n_head_kv);
  if (!c.rope_scaling.type.empty()) {
    w.set_string(a + ".rope.scaling.type", c.rope_scaling.type);
    w.set_f32(a + ".rope.scaling.factor", c.rope_scaling.factor);
    if (c.rope_scaling.type == "yarn") {
      w.set_u32(a + ".rope.scaling.original_context_length", c.rope_scaling.original_context_length);
    }
  }
  w.set_f32(a + ".rope.freq_base", c.rope_theta);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  const bool moe = c.arch != HfArch::Qwen3;
  if (moe) {
    w.set_u32(a + ".expert_count", c.n_expert);
    w.set_u32(a + ".expert_used_count", c.n_expert_used);
  }
  w.set_u32(a + ".attention.key_length", c.head_dim);
  w.set_u32(a + ".attention.value_length", c.head_dim);
  if (moe) w.set_u32(a + ".expert_feed_forward_length", c.n_ff_exp);
  if (c.arch == HfArch::Qwen3Next) {
    write_qwen3next_keys(w, {.n_ff_shexp = c.n_ff_shexp, .rope_dims = c.rope_dims,
                             .full_attention_interval = c.full_attention_interval, .conv_kernel = c.conv_kernel,
                             .k_heads = c.linear_k_heads, .v_heads = c.linear_v_heads, .k_dim = c.linear_k_dim,
                             .v_dim = c.linear_v_dim});
  }
}

}  // namespace moe::formats

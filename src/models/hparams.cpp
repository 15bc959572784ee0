#include "models/hparams.h"

#include "core/error.h"

namespace moe {

ModelConfig read_transformer_config(const gguf::Reader& reader) {
  const gguf::Metadata& m = reader.metadata();
  ModelConfig c;
  c.arch = std::string(reader.architecture());
  const std::string p = c.arch + ".";
  auto positive = [&](const std::string& key, uint64_t fallback = 0) {
    const uint64_t v = fallback ? m.get_uint(key, fallback) : m.get_uint(key);
    if (v == 0 || v > (1u << 30)) fail("{}: metadata key '{}' = {} is out of range", reader.path(), key, v);
    return int(v);
  };
  c.n_layer = positive(p + "block_count");
  c.n_cache_layers = c.n_layer;
  c.n_embd = positive(p + "embedding_length");
  c.n_head = positive(p + "attention.head_count");
  c.n_head_kv = positive(p + "attention.head_count_kv", uint64_t(c.n_head));
  c.head_dim = positive(p + "attention.key_length", uint64_t(c.n_embd / c.n_head));
  if (positive(p + "attention.value_length", uint64_t(c.head_dim)) != c.head_dim) {
    fail("{}: '{}attention.value_length' differs from key_length; not supported", reader.path(), p);
  }
  if (c.n_head % c.n_head_kv != 0) {
    fail("{}: {} query heads cannot be grouped over {} key/value heads", reader.path(), c.n_head, c.n_head_kv);
  }
  c.n_ctx_train = positive(p + "context_length");
  c.rope_base = float(m.get_double(p + "rope.freq_base", 10000.0));
  c.rms_eps = float(m.get_double(p + "attention.layer_norm_rms_epsilon"));
  if (!(c.rms_eps > 0)) fail("{}: '{}attention.layer_norm_rms_epsilon' must be positive", reader.path(), p);
  const gguf::TensorInfo& embd = reader.tensor("token_embd.weight");
  if (embd.n_dims != 2 || embd.ne[0] != c.n_embd) {
    fail("{}: token_embd.weight has shape {}, expected [{}, n_vocab]", reader.path(), embd.shape_string(), c.n_embd);
  }
  c.n_vocab = embd.ne[1];
  c.tied_output = reader.find_tensor("output.weight") == nullptr;
  return c;
}

void write_qwen3next_keys(gguf::Writer& w, const Qwen3NextKeys& k) {
  const std::string a = "qwen3next.";
  w.set_u32(a + "expert_shared_feed_forward_length", k.n_ff_shexp);
  w.set_u32(a + "ssm.conv_kernel", k.conv_kernel);
  w.set_u32(a + "ssm.state_size", k.k_dim);
  w.set_u32(a + "ssm.group_count", k.k_heads);
  w.set_u32(a + "ssm.time_step_rank", k.v_heads);
  w.set_u32(a + "ssm.inner_size", k.v_heads * k.v_dim);
  w.set_u32(a + "full_attention_interval", k.full_attention_interval);
  w.set_u32(a + "rope.dimension_count", k.rope_dims);
}

void read_qwen3moe_experts(const gguf::Reader& reader, ModelConfig& c) {
  const gguf::Metadata& m = reader.metadata();
  c.n_expert = int(m.get_uint("qwen3moe.expert_count"));
  c.n_expert_used = int(m.get_uint("qwen3moe.expert_used_count"));
  c.n_ff_expert = int(m.get_uint("qwen3moe.expert_feed_forward_length"));
  if (c.n_expert_used <= 0 || c.n_expert_used > c.n_expert) {
    fail("{}: {} experts used per token out of {}", reader.path(), c.n_expert_used, c.n_expert);
  }
}

Qwen3NextShape read_qwen3next_config(const gguf::Reader& reader, ModelConfig& c) {
  const gguf::Metadata& m = reader.metadata();
  const std::string p = c.arch + ".";
  auto key = [&](const std::string& name) { return int(m.get_uint(p + name)); };
  const int n_mtp = int(m.get_uint(p + "nextn_predict_layers", 0));
  if (n_mtp >= c.n_layer) fail("{}: {}nextn_predict_layers = {} leaves no layers", reader.path(), p, n_mtp);
  c.n_layer -= n_mtp;
  c.n_expert = key("expert_count");
  c.n_expert_used = key("expert_used_count");
  c.n_ff_expert = key("expert_feed_forward_length");
  if (c.n_expert_used <= 0 || c.n_expert_used > c.n_expert) {
    fail("{}: {} experts used per token out of {}", reader.path(), c.n_expert_used, c.n_expert);
  }
  Qwen3NextShape s;
  s.n_ff_shared = int(m.get_uint(p + "expert_shared_feed_forward_length", uint64_t(c.n_ff_expert)));
  s.full_attention_interval = int(m.get_uint(p + "full_attention_interval", 4));
  if (s.full_attention_interval <= 0) fail("{}: {}full_attention_interval must be positive", reader.path(), p);

  DeltaNetShape& d = s.delta;
  d.n_k_heads = key("ssm.group_count");
  d.n_v_heads = key("ssm.time_step_rank");
  d.d_k = key("ssm.state_size");
  d.conv_kernel = key("ssm.conv_kernel");
  d.rms_eps = c.rms_eps;
  const int inner = key("ssm.inner_size");
  if (d.n_k_heads <= 0 || d.n_v_heads % d.n_k_heads != 0 || inner % d.n_v_heads != 0) {
    fail("{}: {} value heads cannot be grouped over {} key heads with ssm.inner_size {}", reader.path(), d.n_v_heads,
         d.n_k_heads, inner);
  }
  if (d.conv_kernel < 2 || d.conv_kernel > 8) {
    fail("{}: {}ssm.conv_kernel = {} is not supported (2..8)", reader.path(), p, d.conv_kernel);
  }
  d.d_v = inner / d.n_v_heads;
  s.attention = {.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = c.head_dim,
                 .n_rot = int(m.get_uint(p + "rope.dimension_count", uint64_t(c.head_dim))),
                 .rope_base = c.rope_base, .rms_eps = c.rms_eps, .gated = true};
  if (s.attention.n_rot <= 0 || s.attention.n_rot > c.head_dim || s.attention.n_rot % 2 != 0) {
    fail("{}: {}rope.dimension_count = {} does not fit head_dim {}", reader.path(), p, s.attention.n_rot, c.head_dim);
  }
  return s;
}

}  // namespace moe

#include "models/qwen3_family.h"

#include "models/trunk.h"

namespace moe {

Qwen3Family::Qwen3Family(const gguf::Reader& reader, const ModelOptions& options) : Model(options) {
  config_ = read_transformer_config(reader);
  const WeightLoader load(reader, repack_target());
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd, q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  token_embd_ = &reader.tensor("token_embd.weight");
  head_ = {load.matrix(c.tied_output ? "token_embd.weight" : "output.weight", c.n_vocab, d),
           load.vector("output_norm.weight", d), c.rms_eps};
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    attn_norm_.push_back(load.vector(b + "attn_norm.weight", d));
    ffn_norm_.push_back(load.vector(b + "ffn_norm.weight", d));
    attn_.push_back({load.matrix(b + "attn_q.weight", q_dim, d), load.matrix(b + "attn_k.weight", kv_dim, d),
                     load.matrix(b + "attn_v.weight", kv_dim, d), load.matrix(b + "attn_output.weight", d, q_dim),
                     load.vector(b + "attn_q_norm.weight", c.head_dim), load.vector(b + "attn_k_norm.weight", c.head_dim)});
  }
  shape_ = {.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = c.head_dim, .n_rot = c.head_dim,
            .rope_base = c.rope_base, .rms_eps = c.rms_eps};
}

void Qwen3Family::forward(std::span<const BatchEntry> batch, ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int n = check_batch(batch, c.n_vocab);
  const size_t d = size_t(c.n_embd);
  Scratch& s = scratch_;
  const auto x = sized(s.x, n * d), u = sized(s.u, n * d), delta = sized(s.delta, n * d);
  embed_tokens(*token_embd_, batch, x);
  trace(-1, "embd", x);
  const std::vector<SeqTokens> seqs = grow_sequences(batch);

  for (int il = 0; il < c.n_layer; ++il) {
    rms_norm(x, attn_norm_[il], c.rms_eps, u);
    trace(il, "attn_in", u);
    attention(attn_[il], shape_, il, u, seqs, delta, pool, s);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    trace(il, "attn_out", x);
    rms_norm(x, ffn_norm_[il], c.rms_eps, u);
    trace(il, "ffn_in", u);
    ffn(il, u, n, delta, pool);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    trace(il, "ffn_out", x);
  }
  write_logits(head_, x, batch, seqs, pool, s);
}

}  // namespace moe

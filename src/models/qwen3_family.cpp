#include "models/qwen3_family.h"

#include "ops/cpu/quantize.h"

namespace moe {

Qwen3Family::Qwen3Family(const gguf::Reader& reader) {
  config_ = read_transformer_config(reader);
  const WeightLoader load(reader);
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd, q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  token_embd_ = &reader.tensor("token_embd.weight");
  output_ = load.matrix(c.tied_output ? "token_embd.weight" : "output.weight", c.n_vocab, d);
  output_norm_ = load.vector("output_norm.weight", d);
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    attn_norm_.push_back(load.vector(b + "attn_norm.weight", d));
    ffn_norm_.push_back(load.vector(b + "ffn_norm.weight", d));
    attn_.push_back({load.matrix(b + "attn_q.weight", q_dim, d), load.matrix(b + "attn_k.weight", kv_dim, d),
                     load.matrix(b + "attn_v.weight", kv_dim, d), load.matrix(b + "attn_output.weight", d, q_dim),
                     load.vector(b + "attn_q_norm.weight", c.head_dim), load.vector(b + "attn_k_norm.weight", c.head_dim)});
  }
  shape_ = {c.n_head, c.n_head_kv, c.head_dim, c.rope_base, c.rms_eps};
}

void Qwen3Family::forward(std::span<const TokenId> tokens, KvSequence& seq, Logits which, std::span<float> logits,
                          ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int n = int(tokens.size());
  const size_t d = size_t(c.n_embd);
  const int n_out = which == Logits::All ? n : 1;
  if (n == 0) fail("forward: no tokens");
  if (logits.size() != size_t(n_out) * size_t(c.n_vocab)) fail("forward: logits buffer has the wrong size");

  std::vector<float> x(n * d), u(n * d), delta(n * d);  // residual stream, normed input, block output
  const size_t embd_row = token_embd_->row_bytes();
  for (int t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab) fail("token id {} is outside the vocabulary (0..{})", tokens[t], c.n_vocab - 1);
    dequantize_row(token_embd_->type, token_embd_->data.subspan(size_t(tokens[t]) * embd_row, embd_row),
                   std::span(x).subspan(t * d, d));
  }
  seq.grow(seq.length() + n);

  for (int il = 0; il < c.n_layer; ++il) {
    rms_norm(x, attn_norm_[il], c.rms_eps, u);
    attention(attn_[il], shape_, il, u, n, seq, delta, pool);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    rms_norm(x, ffn_norm_[il], c.rms_eps, u);
    ffn(il, u, n, delta, pool);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
  }

  const std::span<const float> rows = std::span(x).subspan(size_t(n - n_out) * d);
  std::vector<float> normed(rows.size());
  rms_norm(rows, output_norm_, c.rms_eps, normed);
  matmul(output_, normed, n_out, logits, pool);
}

}  // namespace moe

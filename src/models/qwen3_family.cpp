#include "models/qwen3_family.h"

#include <algorithm>

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

namespace {

// Checks a batch before anything changes; returns its token count.
int check_batch(std::span<const BatchEntry> batch, int64_t n_vocab) {
  if (batch.empty()) fail("forward: empty batch");
  int n = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchEntry& e = batch[i];
    if (e.tokens.empty()) fail("forward: batch entry {} has no tokens", i);
    if (!e.seq) fail("forward: batch entry {} has no sequence", i);
    for (size_t j = 0; j < i; ++j) {
      if (batch[j].seq == e.seq) fail("forward: batch entries {} and {} are the same sequence", j, i);
    }
    const size_t rows = e.which == Logits::All ? e.tokens.size() : 1;
    if (e.logits.size() != rows * size_t(n_vocab)) {
      fail("forward: batch entry {}: logits buffer holds {} floats, {} needed", i, e.logits.size(), rows * n_vocab);
    }
    for (TokenId id : e.tokens) {
      if (id < 0 || id >= n_vocab) fail("token id {} is outside the vocabulary (0..{})", id, n_vocab - 1);
    }
    n += int(e.tokens.size());
  }
  return n;
}

// Makes room for every entry's tokens, or for none of them.
std::vector<SeqTokens> grow_sequences(std::span<const BatchEntry> batch) {
  std::vector<SeqTokens> seqs;
  int first = 0;
  try {
    for (const BatchEntry& e : batch) {
      const int count = int(e.tokens.size());
      e.seq->grow(e.seq->length() + count);
      seqs.push_back({e.seq, first, count});
      first += count;
    }
  } catch (...) {
    for (const SeqTokens& st : seqs) st.seq->truncate(st.seq->length() - st.count);
    throw;
  }
  return seqs;
}

}  // namespace

void Qwen3Family::forward(std::span<const BatchEntry> batch, ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int n = check_batch(batch, c.n_vocab);
  const size_t d = size_t(c.n_embd);
  Scratch& s = scratch_;
  const auto x = sized(s.x, n * d), u = sized(s.u, n * d), delta = sized(s.delta, n * d);

  const size_t embd_row = token_embd_->row_bytes();
  size_t t = 0;
  for (const BatchEntry& e : batch) {
    for (TokenId id : e.tokens) {
      dequantize_row(token_embd_->type, token_embd_->data.subspan(size_t(id) * embd_row, embd_row),
                     x.subspan(t++ * d, d));
    }
  }
  const std::vector<SeqTokens> seqs = grow_sequences(batch);

  for (int il = 0; il < c.n_layer; ++il) {
    rms_norm(x, attn_norm_[il], c.rms_eps, u);
    attention(attn_[il], shape_, il, u, seqs, delta, pool, s);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    rms_norm(x, ffn_norm_[il], c.rms_eps, u);
    ffn(il, u, n, delta, pool);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
  }

  // The rows that want logits: each entry's last token, or all of its tokens.
  size_t n_out = 0;
  for (const BatchEntry& e : batch) n_out += e.which == Logits::All ? e.tokens.size() : 1;
  const auto rows = sized(out_rows_, n_out * d);
  size_t r = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const int last = seqs[i].first + seqs[i].count;
    for (int row = batch[i].which == Logits::All ? seqs[i].first : last - 1; row < last; ++row) {
      rms_norm(x.subspan(size_t(row) * d, d), output_norm_, c.rms_eps, rows.subspan(r++ * d, d));
    }
  }
  if (batch.size() == 1) {  // straight into the caller's buffer
    matmul(output_, rows, int64_t(n_out), batch[0].logits, pool);
    return;
  }
  const auto logits = sized(out_logits_, n_out * size_t(c.n_vocab));
  matmul(output_, rows, int64_t(n_out), logits, pool);
  size_t at = 0;
  for (const BatchEntry& e : batch) {
    std::copy_n(logits.begin() + ptrdiff_t(at), e.logits.size(), e.logits.begin());
    at += e.logits.size();
  }
}

}  // namespace moe

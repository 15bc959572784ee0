#include "models/trunk.h"

#include <algorithm>

#include "core/error.h"
#include "ops/cpu/quantize.h"

namespace moe {

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

void embed_tokens(const gguf::TensorInfo& token_embd, std::span<const BatchEntry> batch, std::span<float> x) {
  const size_t d = size_t(token_embd.ne[0]), row = token_embd.row_bytes();
  size_t t = 0;
  for (const BatchEntry& e : batch) {
    for (TokenId id : e.tokens) {
      dequantize_row(token_embd.type, token_embd.data.subspan(size_t(id) * row, row), x.subspan(t++ * d, d));
    }
  }
}

void write_logits(const OutputHead& head, std::span<const float> x, std::span<const BatchEntry> batch,
                  std::span<const SeqTokens> seqs, ThreadPool& pool, Scratch& scratch) {
  const size_t d = head.norm.size(), n_vocab = size_t(head.output.rows);
  size_t n_out = 0;
  for (const BatchEntry& e : batch) n_out += e.which == Logits::All ? e.tokens.size() : 1;
  const auto rows = sized(scratch.out_rows, n_out * d);
  size_t r = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const int last = seqs[i].first + seqs[i].count;
    for (int row = batch[i].which == Logits::All ? seqs[i].first : last - 1; row < last; ++row) {
      rms_norm(x.subspan(size_t(row) * d, d), head.norm, head.rms_eps, rows.subspan(r++ * d, d));
    }
  }
  if (batch.size() == 1) {  // straight into the caller's buffer
    matmul(head.output, rows, int64_t(n_out), batch[0].logits, pool);
    return;
  }
  const auto logits = sized(scratch.out_logits, n_out * n_vocab);
  matmul(head.output, rows, int64_t(n_out), logits, pool);
  size_t at = 0;
  for (const BatchEntry& e : batch) {
    std::copy_n(logits.begin() + ptrdiff_t(at), e.logits.size(), e.logits.begin());
    at += e.logits.size();
  }
}

}  // namespace moe

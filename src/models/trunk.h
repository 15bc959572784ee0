#pragma once
// The parts of a forward pass that every model shares: checking a batch and making room for
// it, the token embedding, and the final norm and LM head for the rows that want logits.
#include <span>
#include <vector>

#include "gguf/reader.h"
#include "models/blocks.h"
#include "models/model.h"

namespace moe {

// Checks a batch before anything changes (empty entries, a sequence twice, wrong logits
// buffers, token ids outside the vocabulary); returns its token count.
int check_batch(std::span<const BatchEntry> batch, int64_t n_vocab);

// Grows every entry's sequence by its tokens, or none of them if the cache cannot hold all;
// returns where each entry's tokens sit in the batch's activation rows.
std::vector<SeqTokens> grow_sequences(std::span<const BatchEntry> batch);

// x[t] = the embedding row of the batch's t-th token, as f32.
void embed_tokens(const gguf::TensorInfo& token_embd, std::span<const BatchEntry> batch, std::span<float> x);

struct OutputHead {
  WeightView output;         // [n_vocab][n_embd]: output.weight, or token_embd when tied
  std::vector<float> norm;   // output_norm
  float rms_eps = 1e-6f;
};

// Normalises the rows that want logits (each entry's last token, or all of its tokens) and
// writes their logits into each entry's buffer.
void write_logits(const OutputHead& head, std::span<const float> x, std::span<const BatchEntry> batch,
                  std::span<const SeqTokens> seqs, ThreadPool& pool, Scratch& scratch);

}  // namespace moe

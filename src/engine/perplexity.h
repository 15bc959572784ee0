#pragma once
// Perplexity as llama-perplexity computes it (tools/perplexity, the default non-strided mode):
// the token stream is cut into non-overlapping chunks of n_ctx tokens, each chunk is run in a
// fresh sequence (with BOS replacing its first token when the vocabulary adds BOS), and only
// the second half is scored, so every scored token has at least n_ctx/2 tokens of context:
// the logits at positions n_ctx/2 .. n_ctx-2 predict tokens n_ctx/2+1 .. n_ctx-1.
#include <cstdint>
#include <span>
#include <vector>

#include "core/function_ref.h"
#include "core/ggml_type.h"
#include "core/thread_pool.h"
#include "models/model.h"

namespace moe {

// Negative log-likelihood of `target` under softmax(logits), in double with the maximum
// subtracted first so large logits neither overflow nor lose the small terms.
double token_nll(std::span<const float> logits, TokenId target);

// Running sums of per-token NLL, and llama.cpp's final estimate from them.
class NllAccumulator {
 public:
  void add(double nll) {
    sum_ += nll;
    sum_sq_ += nll * nll;
    ++count_;
  }
  int64_t count() const { return count_; }
  double mean_nll() const { return count_ > 0 ? sum_ / double(count_) : 0; }
  double perplexity() const;  // exp(mean NLL)
  // The standard error of the mean NLL, sqrt((E[x²] - E[x]²) / (count - 1)), carried to PPL
  // to first order (d exp(m) = exp(m) dm). 0 when there is no spread (or fewer than 2 tokens).
  double perplexity_uncertainty() const;

 private:
  double sum_ = 0, sum_sq_ = 0;
  int64_t count_ = 0;
};

struct PerplexityOptions {
  int n_ctx = 512;  // tokens per chunk
  int batch = 512;  // tokens per forward call
  GgmlType kv_type = GgmlType::F16;
  TokenId bos = -1;  // >= 0: first token of every chunk (the vocabulary adds BOS)
};

struct PerplexityResult {
  int n_chunks = 0;
  int64_t n_scored = 0;                   // tokens whose NLL was counted
  std::vector<double> ppl_after_chunk;    // running estimate, as llama-perplexity prints it
  double perplexity = 0;
  double uncertainty = 0;
  double seconds = 0;
};

// The first scored position of a chunk and how many tokens each chunk scores.
constexpr int first_scored_position(int n_ctx) { return n_ctx / 2; }
constexpr int scored_tokens_per_chunk(int n_ctx) { return n_ctx - first_scored_position(n_ctx) - 1; }
// Number of whole chunks; throws moe::Error when there are fewer than 2 * n_ctx tokens.
int perplexity_chunk_count(size_t n_tokens, int n_ctx);

// `tokens` is the tokenized text (with BOS at the front if the vocabulary adds one).
// on_chunk(i, ppl_so_far) is called after chunk i (0-based).
PerplexityResult compute_perplexity(Model& model, std::span<const TokenId> tokens, const PerplexityOptions& options,
                                    ThreadPool& pool, FunctionRef<void(int, double)> on_chunk);

}  // namespace moe

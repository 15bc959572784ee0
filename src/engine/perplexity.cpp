#include "engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "engine/kv_cache.h"

namespace moe {

double token_nll(std::span<const float> logits, TokenId target) {
  if (target < 0 || size_t(target) >= logits.size()) {
    fail("perplexity: token {} is outside the vocabulary of {}", target, logits.size());
  }
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  double sum_exp = 0;
  for (float v : logits) sum_exp += std::exp(double(v) - max_logit);
  return -(double(logits[size_t(target)]) - max_logit - std::log(sum_exp));
}

double NllAccumulator::perplexity() const { return std::exp(mean_nll()); }

double NllAccumulator::perplexity_uncertainty() const {
  if (count_ < 2) return 0;
  const double mean = mean_nll();
  const double variance = sum_sq_ / double(count_) - mean * mean;
  // Identical NLLs can leave a rounding residue just below zero; llama.cpp reports no estimate then.
  if (variance <= 0) return 0;
  return std::sqrt(variance / double(count_ - 1)) * perplexity();
}

int perplexity_chunk_count(size_t n_tokens, int n_ctx) {
  if (n_ctx < 4) fail("perplexity: the context (-c) must be at least 4 tokens, got {}", n_ctx);
  if (n_tokens < 2 * size_t(n_ctx)) {
    fail("perplexity: the text has {} tokens; a context of {} needs at least {} (2 * -c)", n_tokens, n_ctx,
         2 * n_ctx);
  }
  return int(n_tokens / size_t(n_ctx));
}

PerplexityResult compute_perplexity(Model& model, std::span<const TokenId> tokens, const PerplexityOptions& options,
                                    ThreadPool& pool, FunctionRef<void(int, double)> on_chunk) {
  if (options.batch < 1) fail("perplexity: the batch size (-b) must be positive, got {}", options.batch);
  const int n_ctx = options.n_ctx;
  const int n_chunks = perplexity_chunk_count(tokens.size(), n_ctx);
  const ModelConfig& c = model.config();
  if (n_ctx > c.n_ctx_train) fail("perplexity: -c {} exceeds the model's training context {}", n_ctx, c.n_ctx_train);
  const size_t n_vocab = size_t(c.n_vocab);
  const int first = first_scored_position(n_ctx);
  const int batch = std::min(options.batch, n_ctx);

  const auto start = std::chrono::steady_clock::now();
  KvCache cache = make_kv_cache(c, options.kv_type, n_ctx);
  std::vector<TokenId> chunk(static_cast<size_t>(n_ctx));
  // Logits only for the scored half: the unscored prefix runs with Logits::Last (the model
  // promises a token's logits do not depend on how the tokens are split into calls).
  std::vector<float> logits(size_t(std::min(batch, n_ctx - first)) * n_vocab);
  NllAccumulator acc;
  PerplexityResult result;
  result.n_chunks = n_chunks;

  for (int i = 0; i < n_chunks; ++i) {
    std::copy_n(tokens.begin() + ptrdiff_t(i) * n_ctx, n_ctx, chunk.begin());
    if (options.bos >= 0) chunk[0] = options.bos;
    SequenceState seq(cache);  // fresh per chunk: no context leaks between chunks
    for (int begin = 0; begin < first; begin += batch) {
      const int n = std::min(batch, first - begin);
      model.forward(std::span(chunk).subspan(size_t(begin), size_t(n)), seq, Logits::Last,
                    std::span(logits).first(n_vocab), pool);
    }
    for (int begin = first; begin < n_ctx; begin += batch) {
      const int n = std::min(batch, n_ctx - begin);
      model.forward(std::span(chunk).subspan(size_t(begin), size_t(n)), seq, Logits::All,
                    std::span(logits).first(size_t(n) * n_vocab), pool);
      // Position p predicts token p + 1; the chunk's last position has nothing to predict.
      for (int k = 0; k < n && begin + k + 1 < n_ctx; ++k) {
        acc.add(token_nll(std::span(logits).subspan(size_t(k) * n_vocab, n_vocab), chunk[size_t(begin + k + 1)]));
      }
    }
    result.ppl_after_chunk.push_back(acc.perplexity());
    on_chunk(i, acc.perplexity());
  }
  result.n_scored = acc.count();
  result.perplexity = acc.perplexity();
  result.uncertainty = acc.perplexity_uncertainty();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace moe

#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace moe {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::vector<float> prefill(Model& model, SequenceState& seq, std::span<const TokenId> tokens, int batch, ThreadPool& pool) {
  if (tokens.empty()) fail("prefill: empty prompt");
  if (batch <= 0) fail("batch size must be positive, got {}", batch);
  std::vector<float> logits(size_t(model.config().n_vocab));
  for (size_t begin = 0; begin < tokens.size(); begin += size_t(batch)) {
    const size_t n = std::min(tokens.size() - begin, size_t(batch));
    model.forward(tokens.subspan(begin, n), seq, Logits::Last, logits, pool);
  }
  return logits;
}

GenerateStats generate(Model& model, SequenceState& seq, std::span<const TokenId> prompt, const GenerateOptions& options,
                       ThreadPool& pool, FunctionRef<bool(TokenId)> on_token) {
  GenerateStats stats;
  stats.n_prompt = int(prompt.size());
  std::vector<TokenId> history(prompt.begin(), prompt.end());
  Sampler sampler(options.sampling);

  auto start = std::chrono::steady_clock::now();
  std::vector<float> logits = prefill(model, seq, prompt, options.batch, pool);
  stats.prompt_seconds = seconds_since(start);

  start = std::chrono::steady_clock::now();
  for (int i = 0; i < options.n_predict; ++i) {
    const TokenId next = sampler.sample(logits, history);
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end()) break;
    ++stats.n_generated;
    history.push_back(next);
    if (!on_token(next)) break;
    if (i + 1 == options.n_predict) break;  // no forward pass for a token nobody will sample after
    model.forward(std::span(&next, 1), seq, Logits::Last, logits, pool);
  }
  stats.generate_seconds = seconds_since(start);
  return stats;
}

}  // namespace moe

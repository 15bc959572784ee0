#pragma once
// The generation loop: prefill the prompt in chunks, then sample one token at a time until
// n_predict tokens, a stop token, or the callback says stop.
#include <span>
#include <vector>

#include "core/function_ref.h"
#include "core/thread_pool.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "models/model.h"

namespace moe {

struct GenerateOptions {
  int n_predict = 128;
  int batch = 512;  // prompt tokens per forward call
  SamplingParams sampling;
  std::vector<TokenId> stop_tokens;  // end-of-generation tokens (not emitted)
};

struct GenerateStats {
  int n_prompt = 0;
  int n_generated = 0;
  double prompt_seconds = 0;
  double generate_seconds = 0;
};

// Runs `prompt` after whatever `seq` already holds. on_token is called for every generated
// token; returning false stops generation.
GenerateStats generate(Model& model, SequenceState& seq, std::span<const TokenId> prompt, const GenerateOptions& options,
                       ThreadPool& pool, FunctionRef<bool(TokenId)> on_token);

// Prefills `tokens` in chunks of `batch`; returns the logits of the last token.
std::vector<float> prefill(Model& model, SequenceState& seq, std::span<const TokenId> tokens, int batch, ThreadPool& pool);

}  // namespace moe

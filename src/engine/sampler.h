#pragma once
// Picks the next token from logits: repetition and presence penalties, then top-k, top-p,
// min-p and temperature (llama.cpp's default order), then a draw from a seeded generator.
// Temperature <= 0 is greedy. The same seed and inputs give the same tokens.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "gguf/file.h"
#include "models/model.h"

namespace moe {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;             // <= 0: off
  float top_p = 0.95f;        // >= 1: off
  float min_p = 0.05f;        // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;
  float presence_penalty = 0.0f;
  uint64_t seed = 0;

  // Overrides the defaults with the model's `general.sampling.*` keys, where present.
  void apply_model_defaults(const gguf::Metadata& metadata);
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  // `history` holds the tokens so far (prompt and output) for the penalties.
  TokenId sample(std::span<const float> logits, std::span<const TokenId> history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, TokenId>> candidates_;
};

}  // namespace moe

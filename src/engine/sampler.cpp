#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace moe {

void SamplingParams::apply_model_defaults(const gguf::Metadata& m) {
  temperature = float(m.get_double("general.sampling.temp", temperature));
  top_k = int(m.get_uint("general.sampling.top_k", uint64_t(std::max(top_k, 0))));
  top_p = float(m.get_double("general.sampling.top_p", top_p));
  min_p = float(m.get_double("general.sampling.min_p", min_p));
  repeat_penalty = float(m.get_double("general.sampling.penalty_repeat", repeat_penalty));
  repeat_last_n = int(m.get_uint("general.sampling.penalty_last_n", uint64_t(std::max(repeat_last_n, 0))));
}

TokenId Sampler::sample(std::span<const float> logits, std::span<const TokenId> history) {
  const SamplingParams& p = params_;
  candidates_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) candidates_[i] = {logits[i], TokenId(i)};

  // Penalties on tokens seen in the last repeat_last_n positions.
  if (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f) {
    const size_t window = std::min(history.size(), size_t(std::max(p.repeat_last_n, 0)));
    const std::unordered_set<TokenId> seen(history.end() - window, history.end());
    for (TokenId id : seen) {
      if (id < 0 || size_t(id) >= candidates_.size()) continue;
      float& l = candidates_[size_t(id)].first;
      l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
      l -= p.presence_penalty;
    }
  }
  // Highest logit first; ties to the lower id, so greedy is deterministic.
  auto better = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (p.temperature <= 0) return std::min_element(candidates_.begin(), candidates_.end(), better)->second;

  size_t n = candidates_.size();
  if (p.top_k > 0 && size_t(p.top_k) < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + p.top_k, candidates_.end(), better);
    n = size_t(p.top_k);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), better);
  }
  // Probabilities at temperature 1 for top-p and min-p (as llama.cpp's chain computes them).
  std::vector<double> probs(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += probs[i] = std::exp(double(candidates_[i].first - candidates_[0].first));
  for (auto& q : probs) q /= sum;
  if (p.top_p < 1.0f) {
    double cumulative = 0;
    for (size_t i = 0; i < n; ++i) {
      cumulative += probs[i];
      if (cumulative >= p.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0) {
    size_t keep = 1;
    while (keep < n && probs[keep] >= p.min_p * probs[0]) ++keep;
    n = keep;
  }
  std::vector<double> weights(n);
  for (size_t i = 0; i < n; ++i) {
    weights[i] = std::exp(double(candidates_[i].first - candidates_[0].first) / p.temperature);
  }
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  return candidates_[pick(rng_)].second;
}

}  // namespace moe

#include "engine/op_compare.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "core/error.h"

namespace moe {
namespace {

// The checkpoints of one forward call, in order.
struct Recording {
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
};

void record_into(Model& model, Recording& r) {
  model.set_tracer([&r](const std::string& name, std::span<const float> values) {
    r.tensors.emplace_back(name, std::vector<float>(values.begin(), values.end()));
  });
}

}  // namespace

TensorDiff diff_tensors(const std::string& name, int step, std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) fail("compare: {} at step {}: {} values against {}", name, step, a.size(), b.size());
  double diff2 = 0, norm2 = 0, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    diff2 += d * d;
    norm2 += double(a[i]) * double(a[i]);
    max_abs = std::max(max_abs, std::fabs(d));
  }
  // NaNs propagate into rel_rms (and compare above any threshold as "not below" it).
  const double rel = norm2 > 0 ? std::sqrt(diff2 / norm2) : (diff2 > 0 || std::isnan(diff2) ? INFINITY : 0.0);
  return {.name = name, .step = step, .count = a.size(), .rel_rms = rel, .max_abs = max_abs};
}

OpCompareResult compare_ops(Model& a, Model& b, const OpCompareOptions& options, ThreadPool& pool) {
  const ModelConfig& ca = a.config();
  const ModelConfig& cb = b.config();
  if (ca.n_vocab != cb.n_vocab || ca.n_embd != cb.n_embd || ca.n_layer != cb.n_layer) {
    fail("compare: the models differ in shape ({} / {} vocab, {} / {} wide, {} / {} layers)", ca.n_vocab, cb.n_vocab,
         ca.n_embd, cb.n_embd, ca.n_layer, cb.n_layer);
  }
  if (options.prompt_tokens < 1 || options.decode_steps < 0) {
    fail("compare: {} prompt tokens and {} decode steps (at least one prompt token)", options.prompt_tokens,
         options.decode_steps);
  }
  const int64_t total = options.prompt_tokens + options.decode_steps;
  KvCache cache_a = make_kv_cache(ca, options.kv_type, total), cache_b = make_kv_cache(cb, options.kv_type, total);
  SequenceState seq_a(cache_a), seq_b(cache_b);
  std::mt19937 rng(options.seed);
  std::uniform_int_distribution<int32_t> pick(0, int32_t(ca.n_vocab - 1));
  std::vector<TokenId> tokens(size_t(options.prompt_tokens));
  for (auto& t : tokens) t = pick(rng);

  OpCompareResult result;
  std::vector<float> logits_a(size_t(ca.n_vocab)), logits_b(logits_a.size());
  auto add = [&](TensorDiff d) {
    if (result.first_divergent < 0 && !(d.rel_rms <= options.threshold)) result.first_divergent = int(result.diffs.size());
    result.diffs.push_back(std::move(d));
  };
  for (int step = 0; step <= options.decode_steps; ++step) {
    Recording ra, rb;
    record_into(a, ra);
    record_into(b, rb);
    try {
      a.forward(tokens, seq_a, Logits::Last, logits_a, pool);
      b.forward(tokens, seq_b, Logits::Last, logits_b, pool);
    } catch (...) {
      a.set_tracer(nullptr), b.set_tracer(nullptr);
      throw;
    }
    a.set_tracer(nullptr), b.set_tracer(nullptr);
    if (ra.tensors.size() != rb.tensors.size()) {
      fail("compare: step {}: {} checkpoints against {}", step, ra.tensors.size(), rb.tensors.size());
    }
    for (size_t i = 0; i < ra.tensors.size(); ++i) {
      if (ra.tensors[i].first != rb.tensors[i].first) {
        fail("compare: step {}: checkpoint {} is {} in one model and {} in the other", step, i, ra.tensors[i].first,
             rb.tensors[i].first);
      }
      add(diff_tensors(ra.tensors[i].first, step, ra.tensors[i].second, rb.tensors[i].second));
    }
    add(diff_tensors("logits", step, logits_a, logits_b));
    tokens = {TokenId(std::max_element(logits_a.begin(), logits_a.end()) - logits_a.begin())};
  }
  return result;
}

}  // namespace moe

#include "engine/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <random>
#include <string_view>

#include "core/error.h"
#include "engine/kv_cache.h"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;

std::string utc_now_rfc3339() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%FT%TZ", &utc);
  return buf;
}

// Random token ids like llama-bench's, but from a seeded generator so every run (and every
// engine given the same seed) measures the same inputs.
class TokenSource {
 public:
  TokenSource(uint32_t seed, int64_t n_vocab) : rng_(seed), pick_(0, int32_t(n_vocab - 1)) {}
  TokenId next() { return pick_(rng_); }

 private:
  std::mt19937 rng_;
  std::uniform_int_distribution<int32_t> pick_;
};

// `n` random token ids, the first BOS (when the vocabulary adds one) if they start a sequence.
std::vector<TokenId> random_tokens(int n, bool first, TokenId bos, TokenSource& source) {
  std::vector<TokenId> tokens(static_cast<size_t>(n));
  for (auto& t : tokens) t = source.next();  // drawn before timing: sampling is not measured
  if (first && bos >= 0 && n > 0) tokens[0] = bos;
  return tokens;
}

// Prefills `tokens` into seq in forward passes of up to `batch`.
void prefill(Model& model, std::span<const TokenId> tokens, int batch, SequenceState& seq, std::span<float> logits,
             ThreadPool& pool) {
  for (size_t begin = 0; begin < tokens.size(); begin += size_t(batch)) {
    const size_t n = std::min(size_t(batch), tokens.size() - begin);
    model.forward(tokens.subspan(begin, n), seq, Logits::Last, logits, pool);
  }
}

// A fresh sequence holding `depth` random tokens (not timed), BOS first. The last one goes in
// alone: a backend that records its decode step (the GPU's graph) does so here, not in the
// first timed token.
void fill_context(Model& model, SequenceState& seq, int depth, int batch, TokenId bos, TokenSource& source,
                  std::span<float> logits, ThreadPool& pool) {
  const std::vector<TokenId> tokens = random_tokens(depth, true, bos, source);
  if (tokens.empty()) return;
  prefill(model, std::span(tokens).first(tokens.size() - 1), batch, seq, logits, pool);
  prefill(model, std::span(tokens).last(1), 1, seq, logits, pool);
}

// One pp repetition: prefill n tokens in batches into a fresh sequence (after `depth` tokens).
// Returns nanoseconds.
uint64_t time_prompt(Model& model, KvCache& cache, int n_prompt, int depth, int batch, TokenId bos,
                     TokenSource& source, ThreadPool& pool) {
  std::vector<float> logits(size_t(model.config().n_vocab));
  SequenceState seq(cache);
  fill_context(model, seq, depth, batch, bos, source, logits, pool);
  const std::vector<TokenId> tokens = random_tokens(n_prompt, depth == 0, bos, source);
  const auto start = Clock::now();
  prefill(model, tokens, batch, seq, logits, pool);
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

// One tg repetition, as llama-bench's test_gen: n single-token forward passes into a fresh
// sequence (after `depth` tokens), the first token of the sequence BOS, the rest random.
uint64_t time_generation(Model& model, KvCache& cache, int n_gen, int depth, int batch, TokenId bos,
                         TokenSource& source, ThreadPool& pool) {
  std::vector<float> logits(size_t(model.config().n_vocab));
  SequenceState seq(cache);
  fill_context(model, seq, depth, batch, bos, source, logits, pool);
  const std::vector<TokenId> tokens = random_tokens(n_gen, depth == 0, bos, source);
  const auto start = Clock::now();
  for (int i = 0; i < n_gen; ++i) {
    model.forward(std::span(tokens).subspan(size_t(i), 1), seq, Logits::Last, logits, pool);
  }
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

// llama-bench's test names: "pp512", "tg128 @ d4096".
std::string test_name(const char* kind, int n, int depth) {
  return kind + std::to_string(n) + (depth > 0 ? " @ d" + std::to_string(depth) : "");
}

std::vector<double> as_doubles(const std::vector<uint64_t>& v) { return {v.begin(), v.end()}; }

}  // namespace

double mean(const std::vector<double>& values) {
  if (values.empty()) return 0;
  double sum = 0;
  for (double v : values) sum += v;
  return sum / double(values.size());
}

double sample_stddev(const std::vector<double>& values) {
  if (values.size() <= 1) return 0;
  const double m = mean(values);
  double sq = 0;
  for (double v : values) sq += (v - m) * (v - m);
  return std::sqrt(sq / double(values.size() - 1));
}

double BenchResult::avg_ns() const { return mean(as_doubles(samples_ns)); }
double BenchResult::stddev_ns() const { return sample_stddev(as_doubles(samples_ns)); }
double BenchResult::avg_ts() const { return mean(samples_ts); }
double BenchResult::stddev_ts() const { return sample_stddev(samples_ts); }

bool is_routed_expert(std::string_view tensor_name) { return tensor_name.find("_exps.") != std::string_view::npos; }

uint64_t bytes_read_per_token(const gguf::TensorInfo& t, bool own_output) {
  // The tied embedding is read whole: it is the output matrix then.
  return t.name == "token_embd.weight" && own_output ? t.row_bytes() : t.nbytes;
}

ModelFootprint model_footprint(const gguf::Reader& reader, const ModelConfig& config) {
  ModelFootprint f;
  const bool own_output = reader.find_tensor("output.weight") != nullptr;
  for (const auto& t : reader.tensors()) {
    f.bytes += t.nbytes;
    f.n_params += uint64_t(t.n_elements());
    if (is_routed_expert(t.name) && config.n_expert > 0) {
      // Each token routes to n_expert_used of n_expert experts; on average that share is read.
      f.weight_bytes_per_token += t.nbytes * uint64_t(config.n_expert_used) / uint64_t(config.n_expert);
    } else {
      f.weight_bytes_per_token += bytes_read_per_token(t, own_output);
    }
  }
  return f;
}

double roofline_tokens_per_second(uint64_t weight_bytes_per_token, double gb_per_s) {
  if (weight_bytes_per_token == 0 || gb_per_s <= 0) return 0;
  return gb_per_s * 1e9 / double(weight_bytes_per_token);
}

namespace {
Model::ExpertSplit split_since(const Model::ExpertSplit& a, const Model::ExpertSplit& b) {
  return {.routed_slots = b.routed_slots - a.routed_slots, .cpu_slots = b.cpu_slots - a.cpu_slots,
          .pcie_slots = b.pcie_slots - a.pcie_slots,
          .cpu_wait_s = b.cpu_wait_s - a.cpu_wait_s, .cpu_compute_s = b.cpu_compute_s - a.cpu_compute_s,
          .gpu_experts_s = b.gpu_experts_s - a.gpu_experts_s, .gpu_wait_s = b.gpu_wait_s - a.gpu_wait_s,
          .gpu_serial_s = b.gpu_serial_s - a.gpu_serial_s};
}
}  // namespace

std::vector<BenchResult> run_bench(Model& model, const BenchOptions& options, ThreadPool& pool,
                                   FunctionRef<void(const std::string&)> progress) {
  if (options.n_prompt < 0 || options.n_gen < 0 || options.depth < 0) fail("bench: -p, -n and -d must not be negative");
  if (options.reps < 1) fail("bench: -r must be at least 1, got {}", options.reps);
  if (options.batch < 1) fail("bench: -b must be positive, got {}", options.batch);
  if (options.n_prompt == 0 && options.n_gen == 0) fail("bench: nothing to run (-p 0 and -n 0)");
  const ModelConfig& c = model.config();
  const int64_t max_tokens = int64_t(options.depth) + std::max(options.n_prompt, options.n_gen);
  if (max_tokens > c.n_ctx_train) {
    fail("bench: {} tokens (depth {} + the longest test) exceed the model's training context of {}", max_tokens,
         options.depth, c.n_ctx_train);
  }
  const int d = options.depth;
  // One cache for both tests; each repetition's sequence returns its blocks when it ends.
  KvCache cache = make_kv_cache(c, options.kv_type, max_tokens);
  TokenSource source(options.seed, c.n_vocab);
  std::vector<BenchResult> results;

  // A test: a warm-up of warmup_tokens unless turned off, then options.reps timed repetitions
  // of r's n tokens (time(n) gives nanoseconds), with the hybrid's expert split over them.
  auto run_test = [&](BenchResult r, int n, int warmup_tokens, auto&& time) {
    if (options.warmup) {
      progress("warm-up: " + r.name);
      time(warmup_tokens);
    }
    r.test_time = utc_now_rfc3339();
    const Model::ExpertSplit before = model.expert_split();
    for (int rep = 0; rep < options.reps; ++rep) {
      progress(r.name + ": repetition " + std::to_string(rep + 1) + "/" + std::to_string(options.reps));
      const uint64_t ns = time(n);
      r.samples_ns.push_back(ns);
      r.samples_ts.push_back(1e9 * n / double(std::max<uint64_t>(ns, 1)));
    }
    r.split = split_since(before, model.expert_split());
    results.push_back(std::move(r));
  };
  if (options.n_prompt > 0) {
    BenchResult r;
    r.name = test_name("pp", options.n_prompt, d);
    r.n_prompt = options.n_prompt;
    r.n_depth = d;
    run_test(std::move(r), options.n_prompt, options.n_prompt, [&](int n) {
      return time_prompt(model, cache, n, d, options.batch, options.bos, source, pool);
    });
  }
  if (options.n_gen > 0) {
    BenchResult r;
    r.name = test_name("tg", options.n_gen, d);
    r.n_gen = options.n_gen;
    r.n_depth = d;
    // The warm-up generates one token, as llama-bench's generation warm-up.
    run_test(std::move(r), options.n_gen, 1, [&](int n) {
      return time_generation(model, cache, n, d, options.batch, options.bos, source, pool);
    });
  }
  return results;
}

}  // namespace moe

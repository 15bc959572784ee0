// Perplexity (against a direct computation with the Model API, the chunking rule, the final
// formula) and the bench measurements, on tiny synth models.
#include <gtest/gtest.h>

#include <cmath>

#include "../gguf/gguf_test_util.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/perplexity.h"
#include "models/model.h"
#include "models/synth/synth.h"
#include "tiny_model.h"

namespace moe {
namespace {

// Seed 11: the model these tests' expected values were first written against.
struct TinyModel : test::TinyModel {
  TinyModel(const std::string& arch, const std::string& type) : test::TinyModel(arch, type, 11) {}
};

std::vector<TokenId> pseudo_random_tokens(size_t n, int64_t n_vocab) {
  std::vector<TokenId> t(n);
  uint32_t s = 99;
  for (auto& id : t) id = TokenId((s = s * 1664525u + 1013904223u) % uint32_t(n_vocab));
  return t;
}

// The definition, written out independently: each chunk in one forward call with every
// logit, -log softmax in long double, second half scored.
double direct_perplexity(Model& model, const std::vector<TokenId>& tokens, int n_ctx, TokenId bos,
                         int64_t* n_scored) {
  const auto& c = model.config();
  ThreadPool pool(2);
  KvCache cache = make_kv_cache(c, GgmlType::F32, n_ctx);
  long double nll = 0;
  *n_scored = 0;
  for (size_t start = 0; start + size_t(n_ctx) <= tokens.size(); start += size_t(n_ctx)) {
    std::vector<TokenId> chunk(tokens.begin() + ptrdiff_t(start), tokens.begin() + ptrdiff_t(start) + n_ctx);
    if (bos >= 0) chunk[0] = bos;
    SequenceState seq(cache);
    std::vector<float> logits(size_t(n_ctx) * size_t(c.n_vocab));
    model.forward(chunk, seq, Logits::All, logits, pool);
    for (int pos = n_ctx / 2; pos <= n_ctx - 2; ++pos) {
      const float* row = logits.data() + size_t(pos) * size_t(c.n_vocab);
      long double sum = 0;
      for (int64_t v = 0; v < c.n_vocab; ++v) sum += std::exp((long double)row[v]);
      nll += std::log(sum) - row[chunk[size_t(pos + 1)]];
      ++*n_scored;
    }
  }
  return double(std::exp(nll / *n_scored));
}

TEST(Perplexity, MatchesADirectComputationWithTheModelApi) {
  TinyModel m("qwen3moe", "f32");
  const int n_ctx = 24;
  const auto tokens = pseudo_random_tokens(3 * n_ctx + 5, m.model->config().n_vocab);  // 3 chunks, 5 left over
  ThreadPool pool(2);
  for (TokenId bos : {TokenId(-1), TokenId(1)}) {
    PerplexityOptions o;
    o.n_ctx = n_ctx;
    o.batch = 5;
    o.kv_type = GgmlType::F32;
    o.bos = bos;
    std::vector<double> seen;
    const auto r = compute_perplexity(*m.model, tokens, o, pool, [&](int, double ppl) { seen.push_back(ppl); });
    int64_t expected_scored = 0;
    const double expected = direct_perplexity(*m.model, tokens, n_ctx, bos, &expected_scored);
    EXPECT_NEAR(r.perplexity, expected, 1e-9 * expected) << "bos " << bos;
    EXPECT_EQ(r.n_scored, expected_scored);
    EXPECT_EQ(r.n_chunks, 3);
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_DOUBLE_EQ(seen.back(), r.perplexity);
    EXPECT_GT(r.uncertainty, 0);
    // Random weights: far from certain, and not stuck at exactly uniform either.
    EXPECT_GT(r.perplexity, 1.5);
    EXPECT_NE(r.perplexity, double(m.model->config().n_vocab));
  }
}

TEST(Perplexity, ScoresTheSecondHalfOfEachWholeChunk) {
  // llama.cpp: first = n_ctx / 2, positions first .. n_ctx - 2 are scored.
  EXPECT_EQ(first_scored_position(512), 256);
  EXPECT_EQ(scored_tokens_per_chunk(512), 255);
  EXPECT_EQ(scored_tokens_per_chunk(33), 16);  // first = 16, positions 16..31
  EXPECT_EQ(perplexity_chunk_count(1024, 512), 2);
  EXPECT_EQ(perplexity_chunk_count(1535, 512), 2);  // the partial chunk is dropped
  EXPECT_EQ(perplexity_chunk_count(1536, 512), 3);

  TinyModel m("qwen3", "q8_0");
  ThreadPool pool(2);
  for (int n_ctx : {16, 33}) {
    const auto tokens = pseudo_random_tokens(size_t(4 * n_ctx - 1), m.model->config().n_vocab);
    PerplexityOptions o;
    o.n_ctx = n_ctx;
    o.kv_type = GgmlType::Q8_0;
    const auto r = compute_perplexity(*m.model, tokens, o, pool, [](int, double) {});
    EXPECT_EQ(r.n_chunks, 3) << n_ctx;
    EXPECT_EQ(r.n_scored, 3 * (n_ctx - n_ctx / 2 - 1)) << n_ctx;
  }
}

TEST(Perplexity, TooShortATextIsAnError) {
  TinyModel m("qwen3", "q8_0");
  ThreadPool pool(1);
  const auto tokens = pseudo_random_tokens(31, m.model->config().n_vocab);
  PerplexityOptions o;
  o.n_ctx = 16;
  try {
    compute_perplexity(*m.model, tokens, o, pool, [](int, double) {});
    FAIL() << "31 tokens with -c 16 must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("31 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("32"), std::string::npos) << e.what();
  }
  const auto enough = pseudo_random_tokens(32, m.model->config().n_vocab);
  EXPECT_EQ(compute_perplexity(*m.model, enough, o, pool, [](int, double) {}).n_chunks, 2);
}

TEST(Perplexity, UniformPredictionsGiveTheVocabularySize) {
  const int n_vocab = 1000;
  const std::vector<float> flat(n_vocab, 3.25f);
  EXPECT_NEAR(token_nll(flat, 17), std::log(double(n_vocab)), 1e-12);
  NllAccumulator acc;
  for (int i = 0; i < 300; ++i) acc.add(token_nll(flat, i));
  EXPECT_NEAR(acc.perplexity(), double(n_vocab), 1e-9 * n_vocab);
  EXPECT_NEAR(acc.perplexity_uncertainty(), 0, 1e-6);
}

TEST(Perplexity, FinalEstimateFollowsLlamaCppsFormula) {
  // NLLs 1, 2, 3: mean 2, E[x²] - E[x]² = 14/3 - 4 = 2/3, standard error sqrt((2/3) / 2).
  NllAccumulator acc;
  for (double v : {1.0, 2.0, 3.0}) acc.add(v);
  EXPECT_EQ(acc.count(), 3);
  EXPECT_NEAR(acc.perplexity(), std::exp(2.0), 1e-12);
  EXPECT_NEAR(acc.perplexity_uncertainty(), std::exp(2.0) * std::sqrt(1.0 / 3.0), 1e-12);
}

TEST(Perplexity, LogSoftmaxIsStableForLargeLogits) {
  const std::vector<float> logits{1000.0f, 0.0f, -1000.0f};
  EXPECT_NEAR(token_nll(logits, 0), std::log1p(std::exp(-1000.0)), 1e-12);
  EXPECT_NEAR(token_nll(logits, 1), 1000.0, 1e-9);
  EXPECT_TRUE(std::isfinite(token_nll(logits, 2)));
  EXPECT_THROW(token_nll(logits, 3), Error);
}

TEST(Bench, StatisticsAreTheSampleMeanAndStddev) {
  EXPECT_DOUBLE_EQ(mean({2, 4, 4, 4, 5, 5, 7, 9}), 5.0);
  EXPECT_NEAR(sample_stddev({2, 4, 4, 4, 5, 5, 7, 9}), std::sqrt(32.0 / 7.0), 1e-12);
  EXPECT_EQ(sample_stddev({3.0}), 0.0);
}

TEST(Bench, MeasuresEachTestRepsTimes) {
  TinyModel m("qwen3moe", "q8_0");
  ThreadPool pool(2);
  BenchOptions o;
  o.n_prompt = 24;
  o.n_gen = 6;
  o.reps = 3;
  o.batch = 8;
  std::vector<std::string> progress;
  const auto results = run_bench(*m.model, o, pool, [&](const std::string& line) { progress.push_back(line); });
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].name, "pp24");
  EXPECT_EQ(results[0].n_prompt, 24);
  EXPECT_EQ(results[0].n_gen, 0);
  EXPECT_EQ(results[1].name, "tg6");
  EXPECT_EQ(results[1].n_gen, 6);
  for (const auto& r : results) {
    ASSERT_EQ(r.samples_ns.size(), 3u);
    ASSERT_EQ(r.samples_ts.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(r.samples_ts[i], 1e9 * r.n_tokens() / double(r.samples_ns[i]), 1e-6);
    EXPECT_GT(r.avg_ts(), 0);
    EXPECT_GE(r.stddev_ts(), 0);
    EXPECT_GT(r.ms_per_token(), 0);
    EXPECT_FALSE(r.test_time.empty());
  }
  EXPECT_EQ(progress.size(), 2u + 6u);  // two warm-ups, three repetitions of each test

  o.n_prompt = 0;  // -p 0 skips the pp test
  const auto tg_only = run_bench(*m.model, o, pool, [](const std::string&) {});
  ASSERT_EQ(tg_only.size(), 1u);
  EXPECT_EQ(tg_only[0].name, "tg6");
  o.n_gen = 0;
  EXPECT_THROW(run_bench(*m.model, o, pool, [](const std::string&) {}), Error);
}

TEST(Bench, DepthFillsTheContextBeforeEachTest) {
  TinyModel m("qwen3moe", "q8_0");
  ThreadPool pool(2);
  const int64_t d_model = m.model->config().n_embd;
  int64_t embedded = 0;  // tokens through the model, counted at its embedding
  m.model->set_tracer([&](const std::string& name, std::span<const float> values) {
    if (name == "embd") embedded += int64_t(values.size()) / d_model;
  });
  BenchOptions o;
  o.n_prompt = 5;
  o.n_gen = 3;
  o.depth = 10;
  o.reps = 2;
  o.batch = 4;
  const auto results = run_bench(*m.model, o, pool, [](const std::string&) {});
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].name, "pp5 @ d10");
  EXPECT_EQ(results[1].name, "tg3 @ d10");
  for (const auto& r : results) {
    EXPECT_EQ(r.n_depth, 10);
    EXPECT_EQ(r.n_tokens(), r.name[0] == 'p' ? 5 : 3);  // the depth is not counted in the speed
  }
  // Warm-ups (pp: 10 + 5, tg: 10 + 1), then two repetitions of each, every one after 10 tokens.
  EXPECT_EQ(embedded, (10 + 5) + (10 + 1) + 2 * (10 + 5) + 2 * (10 + 3));

  o.depth = int(m.model->config().n_ctx_train);  // the depth counts against the context
  EXPECT_THROW(run_bench(*m.model, o, pool, [](const std::string&) {}), Error);
  o.depth = -1;
  EXPECT_THROW(run_bench(*m.model, o, pool, [](const std::string&) {}), Error);
}

TEST(Bench, DecodeReadsTheActiveExpertShareOfTheWeights) {
  TinyModel m("qwen3moe", "q8_0");
  const auto& c = m.model->config();
  uint64_t total = 0, params = 0, experts = 0;
  for (const auto& t : m.reader->tensors()) {
    total += t.nbytes;
    params += uint64_t(t.n_elements());
    if (std::string_view(t.name).ends_with("_exps.weight")) experts += t.nbytes;
  }
  ASSERT_GT(experts, 0u);
  ASSERT_FALSE(c.tied_output);
  const auto& embd = m.reader->tensor("token_embd.weight");
  const double expected = double(total - experts - embd.nbytes + embd.row_bytes()) +
                          double(experts) * c.n_expert_used / c.n_expert;
  const ModelFootprint fp = model_footprint(*m.reader, c);
  EXPECT_EQ(fp.bytes, total);
  EXPECT_EQ(fp.n_params, params);
  EXPECT_NEAR(double(fp.weight_bytes_per_token), expected, 3.0 * c.n_layer);  // integer division per tensor
  EXPECT_NEAR(roofline_tokens_per_second(fp.weight_bytes_per_token, 100.0), 100e9 / double(fp.weight_bytes_per_token),
              1e-6);
}

}  // namespace
}  // namespace moe

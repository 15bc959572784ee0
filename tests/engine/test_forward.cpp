// The CPU forward pass of qwen3moe and qwen3 on synth models: against an independent
// double-precision reference, and the invariances the engine promises (chunking, threads).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "../gguf/gguf_test_util.h"
#include "core/error.h"
#include "engine/generate.h"
#include "models/model.h"
#include "models/synth/synth.h"
#include "reference_qwen3next.h"
#include "tiny_model.h"

namespace moe {
namespace {

using test::TinyModel;

std::vector<TokenId> prompt_tokens(int n, int64_t n_vocab, uint32_t seed = 1) {
  std::vector<TokenId> t(static_cast<size_t>(n));
  uint32_t s = seed;
  for (auto& id : t) id = TokenId((s = s * 1664525u + 1013904223u) % uint32_t(n_vocab));
  return t;
}

// Logits of every position, computed with the given chunk size and thread count.
std::vector<float> all_logits(Model& model, std::span<const TokenId> tokens, int chunk, int threads,
                              GgmlType kv = GgmlType::F32) {
  const auto& c = model.config();
  KvCache cache = make_kv_cache(c, kv, 256);
  SequenceState seq(cache);
  ThreadPool pool(threads);
  std::vector<float> out;
  for (size_t begin = 0; begin < tokens.size(); begin += size_t(chunk)) {
    const size_t n = std::min(tokens.size() - begin, size_t(chunk));
    std::vector<float> logits(n * size_t(c.n_vocab));
    model.forward(tokens.subspan(begin, n), seq, Logits::All, logits, pool);
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

// max |a - b| over the standard deviation of b: the agreement measure of DESIGN.md.
double max_diff_over_std(std::span<const float> a, const std::vector<std::vector<double>>& b) {
  double mean = 0, n = 0, max_diff = 0;
  for (const auto& row : b) {
    for (double v : row) mean += v, ++n;
  }
  mean /= n;
  double var = 0;
  size_t i = 0;
  for (const auto& row : b) {
    for (double v : row) {
      var += (v - mean) * (v - mean);
      max_diff = std::max(max_diff, std::abs(double(a[i++]) - v));
    }
  }
  return max_diff / std::sqrt(var / n);
}

class ForwardTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardTest, MatchesTheDoublePrecisionReference) {
  TinyModel m(GetParam(), "f32");
  const auto tokens = prompt_tokens(37, m.model->config().n_vocab);
  const auto ours = all_logits(*m.model, tokens, 37, 2);
  const auto expected = test::reference_logits(*m.reader, std::vector<int>(tokens.begin(), tokens.end()));
  const double err = max_diff_over_std(ours, expected);
  std::printf("max |dlogit| / std against the f64 reference: %.2e\n", err);
  EXPECT_LT(err, 1e-4) << "max |dlogit| / std";
  // The logits must be informative (not flat), or this comparison proves little.
  double spread = 0;
  for (double v : expected.back()) spread = std::max(spread, std::abs(v - expected.back()[0]));
  EXPECT_GT(spread, 1.0);
}

TEST_P(ForwardTest, ChunkingDoesNotChangeAnyLogit) {
  for (const char* type : {"q8_0", "q4_k"}) {  // q4_k: repacked where the CPU has AVX-512 VNNI
    TinyModel m(GetParam(), type);
    const auto tokens = prompt_tokens(37, m.model->config().n_vocab);
    const auto whole = all_logits(*m.model, tokens, 37, 2);
    for (int chunk : {1, 5, 16}) {
      const auto chunked = all_logits(*m.model, tokens, chunk, 2);
      ASSERT_EQ(whole.size(), chunked.size());
      EXPECT_EQ(0, std::memcmp(whole.data(), chunked.data(), whole.size() * sizeof(float)))
          << type << " chunk " << chunk;
    }
  }
}

// Repacking changes only the order of float additions. Whole-model logits can still move
// where an activation sits at a rounding boundary of its 8-bit quantization (the next layer
// then sees one quantization step of difference, which this random model amplifies), so the
// model-level check is against the f64 reference: repacked weights are as close to it as the
// weights in place. The products themselves are compared below and in test_interleave.
TEST_P(ForwardTest, RepackedWeightsAreAsAccurateAsInPlace) {
  TinyModel m(GetParam(), "q4_k");
  const auto in_place = load_model(*m.reader, ModelOptions{.repack = false});
  EXPECT_EQ(in_place->repacked().n_tensors(), 0u);
  const bool has_layout = interleaved_layout(GgmlType::Q4_K) != WeightLayout::Rows;
  EXPECT_EQ(m.model->repacked().n_tensors() > 0, has_layout);
  const auto tokens = prompt_tokens(37, m.model->config().n_vocab);
  const auto expected = test::reference_logits(*m.reader, std::vector<int>(tokens.begin(), tokens.end()));
  const double repacked = max_diff_over_std(all_logits(*m.model, tokens, 37, 2), expected);
  const double plain = max_diff_over_std(all_logits(*in_place, tokens, 37, 2), expected);
  std::printf("max |dlogit| / std against the f64 reference: repacked %.4f, in place %.4f (%zu tensors repacked)\n",
              repacked, plain, m.model->repacked().n_tensors());
  EXPECT_LT(repacked, 1.5 * plain + 0.02);
}

INSTANTIATE_TEST_SUITE_P(Qwen3Family, ForwardTest, ::testing::Values("qwen3moe", "qwen3", "qwen3next"));

// Every expert of a repacked expert tensor is the same matrix as in the file (to rounding).
TEST(RepackedWeights, ExpertViewsHoldTheSameMatrices) {
  TinyModel m("qwen3moe", "q4_k");
  const auto& c = m.model->config();
  RepackedWeights store;
  const WeightLoader plain(*m.reader), repacking(*m.reader, &store);
  const ExpertWeights a = plain.experts("blk.1.ffn_gate_exps.weight", c.n_ff_expert, c.n_embd, c.n_expert);
  const ExpertWeights b = repacking.experts("blk.1.ffn_gate_exps.weight", c.n_ff_expert, c.n_embd, c.n_expert);
  if (interleaved_layout(GgmlType::Q4_K) == WeightLayout::Rows) GTEST_SKIP() << "no interleaved layout on this CPU";
  ASSERT_EQ(b.first.layout, WeightLayout::Q4_Kx16);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int n_tok = 5;
  std::vector<float> x(size_t(n_tok * c.n_embd));
  for (auto& v : x) v = dist(rng);
  ThreadPool pool(2);
  for (int e = 0; e < c.n_expert; ++e) {
    std::vector<float> ya(size_t(n_tok * c.n_ff_expert)), yb(ya.size());
    matmul(a.expert(e), x, n_tok, ya, pool);
    matmul(b.expert(e), x, n_tok, yb, pool);
    double scale = 0;
    for (float v : ya) scale = std::max(scale, double(std::abs(v)));
    for (size_t i = 0; i < ya.size(); ++i) ASSERT_NEAR(yb[i], ya[i], 1e-5 * scale) << "expert " << e << " value " << i;
  }
}

TEST(Generate, GreedyAndSeededSamplingRepeat) {
  TinyModel m("qwen3moe", "q8_0");
  const auto& c = m.model->config();
  const auto prompt = prompt_tokens(9, c.n_vocab);
  auto run = [&](float temp, uint64_t seed) {
    KvCache cache = make_kv_cache(c, GgmlType::F16, 64);
    SequenceState seq(cache);
    ThreadPool pool(2);
    GenerateOptions o;
    o.n_predict = 12;
    o.sampling.temperature = temp;
    o.sampling.seed = seed;
    std::vector<TokenId> out;
    generate(*m.model, seq, prompt, o, pool, [&](TokenId id) {
      out.push_back(id);
      return true;
    });
    EXPECT_EQ(seq.length(), int64_t(prompt.size() + out.size() - 1));
    return out;
  };
  const auto greedy = run(0, 1);
  EXPECT_EQ(greedy.size(), 12u);
  EXPECT_EQ(greedy, run(0, 2));
  EXPECT_EQ(run(1.0f, 42), run(1.0f, 42));
  EXPECT_NE(run(1.5f, 42), run(1.5f, 43));
}

TEST(Generate, ContextOverflowIsAnError) {
  TinyModel m("qwen3", "q8_0");
  const auto& c = m.model->config();
  KvCache cache = make_kv_cache(c, GgmlType::F16, 16);
  SequenceState seq(cache);
  ThreadPool pool(1);
  const auto prompt = prompt_tokens(20, c.n_vocab);
  std::vector<float> logits(size_t(c.n_vocab));
  EXPECT_THROW(m.model->forward(prompt, seq, Logits::Last, logits, pool), Error);
  const std::vector<TokenId> bad = {TokenId(c.n_vocab)};
  SequenceState seq2(cache);
  EXPECT_THROW(m.model->forward(bad, seq2, Logits::Last, logits, pool), Error);
}

// Three sequences run together, batched differently at every step and with two threads,
// give bit for bit the logits each gets alone with one thread.
class BatchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchTest, ASequenceDoesNotSeeTheRestOfTheBatch) {
  TinyModel m(GetParam(), "q8_0");
  Model& model = *m.model;
  const auto& c = model.config();
  const int64_t vocab = c.n_vocab;
  const std::vector<std::vector<TokenId>> prompts = {prompt_tokens(37, vocab, 1), prompt_tokens(9, vocab, 2),
                                                     prompt_tokens(21, vocab, 3)};
  std::vector<std::vector<float>> alone;
  for (const auto& p : prompts) alone.push_back(all_logits(model, p, int(p.size()), 1, GgmlType::Q8_0));

  // Steps of (sequence, token count) pairs; together they cover each prompt exactly once.
  const std::vector<std::vector<std::pair<int, int>>> steps = {
      {{0, 17}, {1, 9}, {2, 1}}, {{2, 12}}, {{0, 1}, {2, 1}}, {{2, 7}, {0, 19}}};
  KvCache cache = make_kv_cache(c, GgmlType::Q8_0, 256);
  std::vector<SequenceState> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.emplace_back(cache);
  std::vector<size_t> done(prompts.size(), 0);
  ThreadPool pool(2);
  for (const auto& step : steps) {
    std::vector<BatchEntry> batch;
    std::vector<std::vector<float>> logits(step.size());
    for (size_t j = 0; j < step.size(); ++j) {
      const auto [s, n] = step[j];
      logits[j].resize(size_t(n) * size_t(vocab));
      batch.push_back({std::span(prompts[size_t(s)]).subspan(done[size_t(s)], size_t(n)), &seqs[size_t(s)],
                       Logits::All, logits[j]});
    }
    model.forward(batch, pool);
    for (size_t j = 0; j < step.size(); ++j) {
      const auto [s, n] = step[j];
      const auto expected = std::span(alone[size_t(s)]).subspan(done[size_t(s)] * size_t(vocab), size_t(n) * vocab);
      ASSERT_TRUE(std::equal(expected.begin(), expected.end(), logits[j].begin())) << "sequence " << s;
      done[size_t(s)] += size_t(n);
    }
  }
  for (size_t s = 0; s < prompts.size(); ++s) EXPECT_EQ(done[s], prompts[s].size());
}

INSTANTIATE_TEST_SUITE_P(Qwen3Family, BatchTest, ::testing::Values("qwen3moe", "qwen3", "qwen3next"));

TEST(Batch, BadBatchesChangeNothing) {
  TinyModel m("qwen3moe", "q8_0");
  const auto& c = m.model->config();
  KvCache cache = make_kv_cache(c, GgmlType::F16, 32);
  SequenceState a(cache), b(cache);
  ThreadPool pool(1);
  const auto p = prompt_tokens(8, c.n_vocab);
  std::vector<float> la(size_t(c.n_vocab)), lb(size_t(c.n_vocab));
  const BatchEntry twice[] = {{p, &a, Logits::Last, la}, {p, &a, Logits::Last, lb}};
  EXPECT_THROW(m.model->forward(twice, pool), Error);
  EXPECT_EQ(a.length(), 0);
  // b does not fit the 32-position cache once a holds 24: neither sequence grows.
  const auto long_prompt = prompt_tokens(24, c.n_vocab);
  const BatchEntry too_big[] = {{p, &a, Logits::Last, la}, {long_prompt, &b, Logits::Last, lb}};
  EXPECT_THROW(m.model->forward(too_big, pool), Error);
  EXPECT_EQ(a.length(), 0);
  EXPECT_EQ(b.length(), 0);
  const BatchEntry wrong_logits[] = {{p, &a, Logits::All, la}};
  EXPECT_THROW(m.model->forward(wrong_logits, pool), Error);
  EXPECT_THROW(m.model->forward(std::span<const BatchEntry>(), pool), Error);
}

TEST(LoadModel, UnsupportedArchitecturesAreNamed) {
  test::TempDir dir;
  gguf::Writer w;
  w.set_string("general.architecture", "qwen35moe");
  w.write(dir.file("m.gguf"));
  gguf::Reader r(dir.file("m.gguf"));
  try {
    load_model(r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'qwen35moe' is not supported yet (supported: qwen3, qwen3moe, qwen3next)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace moe

// Qwen3-Next on synth models: the delta rule's chunked form against token-by-token, both GGUF
// layouts giving the same model, long prompts against the f64 reference, sequence forks, and
// the refusals (truncation below the recurrent state, Qwen3.5 files).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "../gguf/gguf_test_util.h"
#include "core/error.h"
#include "models/delta_net.h"
#include "models/model.h"
#include "models/synth/synth.h"
#include "reference_qwen3next.h"

namespace moe {
namespace {

struct NextModel {
  test::TempDir dir;
  std::unique_ptr<gguf::Reader> reader;
  std::unique_ptr<Model> model;

  explicit NextModel(const std::string& type, bool fused = false, int layers = 4) {
    synth::SynthOptions o;
    o.arch = "qwen3next";
    o.preset = "tiny";
    o.type = type;
    o.seed = 11;
    o.layers = layers;
    o.threads = 2;
    o.fused_ssm_in = fused;
    o.output = dir.file("next.gguf");
    synth::write_synth_model(o);
    reader = std::make_unique<gguf::Reader>(o.output);
    model = load_model(*reader);
  }
};

std::vector<TokenId> tokens_of(int n, int64_t vocab, uint32_t seed) {
  std::vector<TokenId> t(static_cast<size_t>(n));
  std::mt19937 rng(seed);
  for (auto& id : t) id = TokenId(rng() % uint32_t(vocab));
  return t;
}

// Logits of every position, the prompt fed in calls of `chunk` tokens.
std::vector<float> run(Model& model, std::span<const TokenId> tokens, int chunk, int threads = 2) {
  const auto& c = model.config();
  KvCache cache = make_kv_cache(c, GgmlType::F32, 512);
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

double max_diff_over_std(std::span<const float> a, std::span<const float> b) {
  double mean = 0, var = 0, diff = 0;
  for (float v : b) mean += v;
  mean /= double(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    var += (b[i] - mean) * (b[i] - mean);
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
  }
  return diff / std::sqrt(var / double(b.size()));
}

TEST(DeltaRule, ChunkedFormMatchesTokenByToken) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const int n = 150, dk = 32, dv = 48;  // two chunks of 64 and an odd remainder of 22
  std::vector<float> q(size_t(n) * dk), k(size_t(n) * dk), v(size_t(n) * dv), beta(n), g(n);
  for (auto& x : v) x = normal(rng);
  for (int t = 0; t < n; ++t) {
    double qs = 0, ks = 0;
    for (int i = 0; i < dk; ++i) {
      q[size_t(t) * dk + i] = normal(rng);
      k[size_t(t) * dk + i] = normal(rng);
      qs += q[size_t(t) * dk + i] * q[size_t(t) * dk + i];
      ks += k[size_t(t) * dk + i] * k[size_t(t) * dk + i];
    }
    for (int i = 0; i < dk; ++i) q[size_t(t) * dk + i] /= float(std::sqrt(qs) * std::sqrt(double(dk)));
    for (int i = 0; i < dk; ++i) k[size_t(t) * dk + i] /= float(std::sqrt(ks));
    beta[size_t(t)] = unit(rng);
    g[size_t(t)] = -2.0f * unit(rng);  // decay factors exp(g) from 0.14 to 1
  }
  std::vector<float> state0(size_t(dv) * dk);
  for (auto& x : state0) x = 0.1f * normal(rng);  // a sequence that already has history
  auto run_rule = [&](int chunk, std::vector<float>& state) {
    std::vector<float> o(size_t(n) * dv);
    const DeltaRuleArgs a{q.data(), k.data(), v.data(), size_t(dk), size_t(dk), size_t(dv), beta.data(), g.data(), 1,
                          n, dk, dv, state.data(), o.data(), size_t(dv)};
    chunk ? delta_rule_chunked(a, chunk) : delta_rule_recurrent(a);
    return o;
  };
  std::vector<float> s_ref = state0;
  const auto o_ref = run_rule(0, s_ref);
  for (int chunk : {64, 32, 16, 7}) {  // the engine uses 64 (as HF and llama.cpp)
    std::vector<float> s = state0;
    const auto o = run_rule(chunk, s);
    EXPECT_LT(max_diff_over_std(o, o_ref), 2e-5) << "chunk " << chunk;
    EXPECT_LT(max_diff_over_std(s, s_ref), 2e-5) << "chunk " << chunk;
  }
}

TEST(Qwen3Next, LongPromptsMatchTheReferenceInEveryCallSize) {
  NextModel m("f32");
  const auto tokens = tokens_of(150, m.model->config().n_vocab, 3);
  const auto expected = test::reference_logits(*m.reader, std::vector<int>(tokens.begin(), tokens.end()));
  std::vector<float> flat;
  for (const auto& row : expected) flat.insert(flat.end(), row.begin(), row.end());
  // 150 in one call and 100 + 50 run the chunked delta rule; 1 and 37 run token by token.
  for (int call : {150, 100, 37, 1}) {
    const auto ours = run(*m.model, tokens, call);
    const double err = max_diff_over_std(ours, flat);
    std::printf("calls of %d tokens: max |dlogit| / std against the f64 reference %.2e\n", call, err);
    EXPECT_LT(err, 1e-4) << "calls of " << call;
  }
}

TEST(Qwen3Next, LegacyFusedLayoutIsTheSameModel) {
  NextModel split("q8_0", false), fused("q8_0", true);
  EXPECT_NE(fused.reader->find_tensor("blk.0.ssm_in.weight"), nullptr);
  EXPECT_EQ(fused.reader->find_tensor("blk.0.attn_qkv.weight"), nullptr);
  const auto tokens = tokens_of(70, split.model->config().n_vocab, 4);
  const auto a = run(*split.model, tokens, 70), b = run(*fused.model, tokens, 70);
  EXPECT_EQ(a, b);
}

TEST(Qwen3Next, ForkedSequencesContinueIndependently) {
  NextModel m("q8_0");
  Model& model = *m.model;
  const auto& c = model.config();
  const auto prefix = tokens_of(20, c.n_vocab, 5), tail_a = tokens_of(6, c.n_vocab, 6), tail_b = tokens_of(9, c.n_vocab, 7);
  KvCache cache = make_kv_cache(c, GgmlType::F16, 256);
  ThreadPool pool(2);
  SequenceState base(cache);
  std::vector<float> last(size_t(c.n_vocab));
  model.forward(prefix, base, Logits::Last, last, pool);
  SequenceState branch = base.fork();
  std::vector<float> la(size_t(c.n_vocab)), lb(size_t(c.n_vocab));
  model.forward(tail_a, base, Logits::Last, la, pool);
  model.forward(tail_b, branch, Logits::Last, lb, pool);
  // Each equals a fresh run of its whole token list.
  for (const auto& [tail, got] : {std::pair{tail_a, la}, std::pair{tail_b, lb}}) {
    std::vector<TokenId> all = prefix;
    all.insert(all.end(), tail.begin(), tail.end());
    SequenceState fresh(cache);
    std::vector<float> expected(size_t(c.n_vocab));
    model.forward(std::span<const TokenId>(all).first(prefix.size()), fresh, Logits::Last, expected, pool);
    model.forward(tail, fresh, Logits::Last, expected, pool);
    EXPECT_EQ(got, expected);
  }
}

TEST(Qwen3Next, RecurrentStateCannotBeTruncated) {
  NextModel m("q8_0");
  const auto& c = m.model->config();
  KvCache cache = make_kv_cache(c, GgmlType::F16, 64);
  SequenceState seq(cache);
  ThreadPool pool(1);
  std::vector<float> logits(size_t(c.n_vocab));
  m.model->forward(tokens_of(10, c.n_vocab, 8), seq, Logits::Last, logits, pool);
  seq.truncate(5);
  const auto more = tokens_of(2, c.n_vocab, 9);
  EXPECT_THROW(m.model->forward(more, seq, Logits::Last, logits, pool), Error);
}

TEST(Qwen3Next, ConfigCountsOnlyAttentionLayersInTheCache) {
  NextModel m("q8_0", false, 8);
  const auto& c = m.model->config();
  EXPECT_EQ(c.n_layer, 8);
  EXPECT_EQ(c.n_cache_layers, 2);  // layers 3 and 7
  EXPECT_GT(c.recurrent_floats, 0u);
}

}  // namespace
}  // namespace moe

// The weights have the intended statistics: projection std ~ 1/sqrt(fan_in), varied norm
// weights with outlier channels, decisive routing, peaked next-token distributions, and a
// residual stream that neither vanishes nor explodes over many layers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "models/synth/random_weights.h"
#include "synth_test_util.h"

namespace moe::test {
namespace {

double stddev(std::span<const float> v) {
  double sum = 0, sq = 0;
  for (float x : v) sum += x, sq += double(x) * x;
  const double mean = sum / double(v.size());
  return std::sqrt(sq / double(v.size()) - mean * mean);
}

std::vector<float> rms_norm(std::span<const float> x, std::span<const float> g) {
  double sq = 0;
  for (float v : x) sq += double(v) * v;
  const float scale = float(1.0 / std::sqrt(sq / double(x.size()) + 1e-6));
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * g[i];
  return out;
}

// y = W x for W stored as rows of x.size() (ggml layout: ne[0] = input width).
std::vector<float> matvec(std::span<const float> w, std::span<const float> x, size_t rows, size_t row_offset = 0) {
  std::vector<float> y(rows);
  for (size_t r = 0; r < rows; ++r) {
    const float* row = w.data() + (row_offset + r) * x.size();
    y[r] = float(std::inner_product(x.begin(), x.end(), row, 0.0));
  }
  return y;
}

std::vector<float> softmax(std::span<const float> z) {
  const float m = *std::max_element(z.begin(), z.end());
  std::vector<float> p(z.size());
  double sum = 0;
  for (size_t i = 0; i < z.size(); ++i) sum += p[i] = std::exp(z[i] - m);
  for (float& v : p) v = float(v / sum);
  return p;
}

float top_k_mass(std::vector<float> p, size_t k) {
  std::partial_sort(p.begin(), p.begin() + std::ptrdiff_t(k), p.end(), std::greater<>());
  return std::accumulate(p.begin(), p.begin() + std::ptrdiff_t(k), 0.0f);
}

std::vector<float> random_vector(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(SynthWeights, GaussianRngHasUnitVarianceAndIsKeyed) {
  synth::RowRng a(1, 2, 3), b(1, 2, 3), c(1, 2, 4);
  double sum = 0, sq = 0;
  bool differs = false;
  constexpr int kN = 200000;
  for (int i = 0; i < kN; ++i) {
    const float x = a.normal();
    EXPECT_EQ(x, b.normal());
    differs |= x != c.normal();
    sum += x, sq += double(x) * x;
  }
  EXPECT_TRUE(differs);
  EXPECT_NEAR(sum / kN, 0.0, 0.01);
  EXPECT_NEAR(sq / kN, 1.0, 0.01);
}

class TinyModel : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModel, ProjectionStdMatchesFanIn) {
  ScratchDir dir("std_" + GetParam());
  write_model(dir.file("m.gguf"), "qwen3moe", "tiny", GetParam());
  const gguf::Reader r(dir.file("m.gguf"));
  const std::pair<const char*, double> cases[] = {
      {"blk.0.attn_q.weight", 1 / std::sqrt(256.0)},        {"blk.1.attn_k.weight", 1 / std::sqrt(256.0)},
      {"blk.0.attn_output.weight", 1 / std::sqrt(256.0)},   {"blk.1.ffn_gate_exps.weight", 1 / std::sqrt(256.0)},
      {"blk.0.ffn_down_exps.weight", 1 / std::sqrt(256.0)},
  };
  for (const auto& [name, want] : cases) {
    const auto w = read_f32(r.tensor(name));
    EXPECT_NEAR(stddev(w), want, 0.1 * want) << name << " (" << GetParam() << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Types, TinyModel, ::testing::Values("q8_0", "q4_k", "q4_0", "q5_k", "q6_k", "bf16"));

TEST(SynthWeights, NormsVaryAndHaveOutlierChannels) {
  ScratchDir dir("norms");
  write_model(dir.file("m.gguf"), "qwen3moe", "tiny");
  const gguf::Reader r(dir.file("m.gguf"));
  const auto attn = read_f32(r.tensor("blk.0.attn_norm.weight"));
  const auto ffn = read_f32(r.tensor("blk.0.ffn_norm.weight"));
  const auto [lo, hi] = std::minmax_element(attn.begin(), attn.end());
  EXPECT_GE(*lo, 0.5f);
  EXPECT_GE(*hi, 2.0f);  // outlier channels
  EXPECT_GT(stddev(attn), 0.2);
  EXPECT_NE(attn, ffn);
  const size_t n_big = size_t(std::count_if(attn.begin(), attn.end(), [](float g) { return g >= 2.0f; }));
  EXPECT_GE(n_big, 2u);
  EXPECT_LE(n_big, 8u);

  // The embedding's outlier channels carry large values of one sign for every token.
  const auto& te = r.tensor("token_embd.weight");
  const auto embd = read_f32(te);
  const size_t n_embd = size_t(te.ne[0]), n_vocab = size_t(te.ne[1]);
  size_t outlier_channels = 0;
  for (size_t c = 0; c < n_embd; ++c) {
    double mean = 0;
    for (size_t t = 0; t < n_vocab; ++t) mean += embd[t * n_embd + c];
    mean /= double(n_vocab);
    if (std::fabs(mean) > 3.0) ++outlier_channels;
  }
  EXPECT_EQ(outlier_channels, n_big);
}

TEST(SynthWeights, RoutingIsDecisiveAndOutputIsPeaked) {
  ScratchDir dir("routing");
  write_model(dir.file("m.gguf"), "qwen3moe", "tiny");
  const gguf::Reader r(dir.file("m.gguf"));
  const auto norm = read_f32(r.tensor("blk.1.ffn_norm.weight"));
  const auto router = read_f32(r.tensor("blk.1.ffn_gate_inp.weight"));
  const auto out_norm = read_f32(r.tensor("output_norm.weight"));
  const auto head = read_f32(r.tensor("output.weight"));
  std::mt19937 rng(42);
  double top2 = 0, top1 = 0;
  std::vector<int> chosen(8, 0);
  constexpr int kSamples = 200;
  for (int s = 0; s < kSamples; ++s) {
    const auto x = random_vector(rng, 256);
    const auto p = softmax(matvec(router, rms_norm(x, norm), 8));
    top2 += top_k_mass(p, 2);
    ++chosen[size_t(std::max_element(p.begin(), p.end()) - p.begin())];
    top1 += top_k_mass(softmax(matvec(head, rms_norm(x, out_norm), 512)), 1);
  }
  EXPECT_GT(top2 / kSamples, 0.75);  // 2 of 8 experts hold most of the probability
  for (int n : chosen) EXPECT_GT(n, 0) << "an expert is never the first choice: routing ignores the input";
  EXPECT_GT(top1 / kSamples, 0.25);  // peaked next-token distribution (flat would be 1/512)
  EXPECT_LT(top1 / kSamples, 0.95);  // but not one-hot
}

// One token (position 0: attention returns V, RoPE is the identity) through a 16-layer tiny
// MoE: the residual stream's RMS must stay within sane bounds and every layer must matter.
TEST(SynthWeights, ResidualStreamNeitherVanishesNorExplodes) {
  ScratchDir dir("forward");
  constexpr int kLayers = 16;
  write_model(dir.file("m.gguf"), "qwen3moe", "tiny", "q8_0", 5, 2, kLayers);
  const gguf::Reader r(dir.file("m.gguf"));
  const size_t n_embd = 256, n_head = 4, n_kv = 2, hd = 64, n_exp = 8, n_used = 2, n_ff = 256;
  auto t = [&](int il, const char* what) { return read_f32(r.tensor("blk." + std::to_string(il) + "." + what + ".weight")); };
  const auto embd = read_f32(r.tensor("token_embd.weight"));
  std::vector<float> x(embd.begin() + 100 * n_embd, embd.begin() + 101 * n_embd);
  std::vector<double> rms;
  for (int il = 0; il < kLayers; ++il) {
    const auto u = rms_norm(x, t(il, "attn_norm"));
    const auto v = matvec(t(il, "attn_v"), u, n_kv * hd);
    std::vector<float> a(n_head * hd);  // GQA: query head h reads kv head h / (n_head / n_kv)
    for (size_t h = 0; h < n_head; ++h) std::copy_n(v.begin() + std::ptrdiff_t(h / (n_head / n_kv) * hd), hd, a.begin() + std::ptrdiff_t(h * hd));
    const auto attn = matvec(t(il, "attn_output"), a, n_embd);
    for (size_t i = 0; i < n_embd; ++i) x[i] += attn[i];
    const auto u2 = rms_norm(x, t(il, "ffn_norm"));
    auto p = softmax(matvec(t(il, "ffn_gate_inp"), u2, n_exp));
    std::vector<size_t> order(n_exp);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + n_used, order.end(), [&](size_t i, size_t j) { return p[i] > p[j]; });
    const float norm = p[order[0]] + p[order[1]];
    const auto gate = t(il, "ffn_gate_exps"), up = t(il, "ffn_up_exps"), down = t(il, "ffn_down_exps");
    for (size_t k = 0; k < n_used; ++k) {
      const size_t e = order[k];
      const auto g = matvec(gate, u2, n_ff, e * n_ff), w = matvec(up, u2, n_ff, e * n_ff);
      std::vector<float> hmid(n_ff);
      for (size_t i = 0; i < n_ff; ++i) hmid[i] = g[i] / (1 + std::exp(-g[i])) * w[i];
      const auto y = matvec(down, hmid, n_embd, e * n_embd);
      for (size_t i = 0; i < n_embd; ++i) x[i] += p[e] / norm * y[i];
    }
    double sq = 0;
    for (float v2 : x) sq += double(v2) * v2;
    rms.push_back(std::sqrt(sq / n_embd));
  }
  for (size_t il = 1; il < rms.size(); ++il) {
    EXPECT_GT(rms[il], 0.5 * rms[il - 1]) << "layer " << il;  // no collapse
    EXPECT_LT(rms[il], 2.0 * rms[il - 1]) << "layer " << il;  // no blow-up
  }
  EXPECT_GT(rms.back(), 1.0);
  EXPECT_LT(rms.back(), 50.0);
  const auto logits = matvec(read_f32(r.tensor("output.weight")), rms_norm(x, read_f32(r.tensor("output_norm.weight"))), 512);
  const float top1 = top_k_mass(softmax(logits), 1);
  EXPECT_GT(top1, 0.05f);
}

}  // namespace
}  // namespace moe::test

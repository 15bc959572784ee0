// expert_sum (models/blocks.h): the routed experts' weighted SwiGLU sum for a given routing,
// what the hybrid engine's CPU computes for the experts the GPU does not hold. Checked against
// a plain double-precision loop, and split between two engines: the slots marked -1 on one
// side and computed on the other add up to the whole.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/thread_pool.h"
#include "models/blocks.h"
#include "ops/cpu/quantize.h"

namespace moe {
namespace {

struct RandomExperts {
  int n_expert = 6;
  int64_t d = 64, ff = 32;
  std::vector<float> gate, up, down;  // [expert][rows][cols]
  MoeLayer layer;

  explicit RandomExperts(uint32_t seed, int64_t d_ = 64, int64_t ff_ = 32) : d(d_), ff(ff_) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.2f);
    for (auto* m : {&gate, &up}) {
      m->resize(size_t(n_expert) * size_t(ff * d));
      for (float& v : *m) v = normal(rng);
    }
    down.resize(size_t(n_expert) * size_t(d * ff));
    for (float& v : down) v = normal(rng);
    auto stacked = [&](const std::vector<float>& m, int64_t rows, int64_t cols) {
      return ExpertWeights{WeightView::packed(GgmlType::F32, rows, cols, reinterpret_cast<const std::byte*>(m.data())),
                           size_t(rows * cols) * sizeof(float), n_expert};
    };
    layer.gate = stacked(gate, ff, d);
    layer.up = stacked(up, ff, d);
    layer.down = stacked(down, d, ff);
  }

  // The same experts in Q8_0 (the layer views `q8`, which must outlive it).
  MoeLayer quantized(std::vector<std::byte>& q8) const {
    const size_t rb_d = row_bytes(GgmlType::Q8_0, uint64_t(d)), rb_ff = row_bytes(GgmlType::Q8_0, uint64_t(ff));
    const size_t gate_bytes = size_t(n_expert) * size_t(ff) * rb_d, down_bytes = size_t(n_expert) * size_t(d) * rb_ff;
    q8.assign(2 * gate_bytes + down_bytes, std::byte{0});
    auto convert = [&](const std::vector<float>& m, int64_t rows, int64_t cols, size_t at) {
      const size_t rb = row_bytes(GgmlType::Q8_0, uint64_t(cols));
      for (size_t r = 0; r < size_t(n_expert) * size_t(rows); ++r) {
        quantize_row(GgmlType::Q8_0, std::span(m.data() + r * size_t(cols), size_t(cols)),
                     std::span(q8.data() + at + r * rb, rb));
      }
      return ExpertWeights{WeightView::packed(GgmlType::Q8_0, rows, cols, q8.data() + at), size_t(rows) * rb, n_expert};
    };
    MoeLayer q;
    q.gate = convert(gate, ff, d, 0);
    q.up = convert(up, ff, d, gate_bytes);
    q.down = convert(down, d, ff, 2 * gate_bytes);
    return q;
  }

  // out[t] = sum_r weight * down_e(silu(gate_e u) * up_e u), in double.
  std::vector<double> reference(const std::vector<float>& u, int n, const std::vector<int32_t>& ids,
                                const std::vector<float>& weights) const {
    const int k = int(ids.size()) / n;
    std::vector<double> out(size_t(n) * size_t(d), 0.0);
    for (int t = 0; t < n; ++t) {
      for (int r = 0; r < k; ++r) {
        const int e = ids[size_t(t * k + r)];
        if (e < 0) continue;
        std::vector<double> h(static_cast<size_t>(ff));
        for (int64_t i = 0; i < ff; ++i) {
          double g = 0, v = 0;
          for (int64_t j = 0; j < d; ++j) {
            g += double(gate[size_t((e * ff + i) * d + j)]) * u[size_t(t * d + j)];
            v += double(up[size_t((e * ff + i) * d + j)]) * u[size_t(t * d + j)];
          }
          h[size_t(i)] = g / (1.0 + std::exp(-g)) * v;
        }
        for (int64_t o = 0; o < d; ++o) {
          double s = 0;
          for (int64_t i = 0; i < ff; ++i) s += double(down[size_t((e * d + o) * ff + i)]) * h[size_t(i)];
          out[size_t(t * d + o)] += weights[size_t(t * k + r)] * s;
        }
      }
    }
    return out;
  }
};

TEST(ExpertSum, MatchesTheReferenceAndSplitsIntoParts) {
  const RandomExperts x(3);
  const int n = 5, k = 3;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> u(size_t(n) * size_t(x.d));
  for (float& v : u) v = normal(rng);
  std::vector<int32_t> ids(size_t(n * k));
  std::vector<float> weights(ids.size());
  for (int t = 0; t < n; ++t) {
    for (int r = 0; r < k; ++r) {
      ids[size_t(t * k + r)] = (t + 2 * r) % x.n_expert;  // distinct within a token, shared across tokens
      weights[size_t(t * k + r)] = 0.2f + 0.3f * float(r);
    }
  }
  ThreadPool pool(2);
  Scratch scratch;
  std::vector<float> whole(u.size()), part_a(u.size()), part_b(u.size());
  expert_sum(x.layer, u, n, ids, weights, whole, pool, scratch);
  const auto ref = x.reference(u, n, ids, weights);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(whole[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << i;

  // Experts 0-2 on one side, the rest on the other (-1: computed elsewhere).
  std::vector<int32_t> ids_a = ids, ids_b = ids;
  for (size_t i = 0; i < ids.size(); ++i) (ids[i] < 3 ? ids_b : ids_a)[i] = -1;
  expert_sum(x.layer, u, n, ids_a, weights, part_a, pool, scratch);
  expert_sum(x.layer, u, n, ids_b, weights, part_b, pool, scratch);
  const auto ref_a = x.reference(u, n, ids_a, weights);
  for (size_t i = 0; i < u.size(); ++i) {
    EXPECT_NEAR(part_a[i], ref_a[i], 1e-4 * (1 + std::fabs(ref_a[i]))) << i;
    EXPECT_NEAR(part_a[i] + part_b[i], whole[i], 1e-5 * (1 + std::fabs(whole[i]))) << i;
  }

  // Nothing to compute: zeros, not what the buffer held.
  std::vector<int32_t> none(ids.size(), -1);
  std::vector<float> empty(u.size(), 7.0f);
  expert_sum(x.layer, u, n, none, weights, empty, pool, scratch);
  for (float v : empty) EXPECT_EQ(v, 0.0f);
}

// A token's sum does not depend on the tokens that share the call (one token alone, as the
// hybrid engine's decode step, against the same token twice: other kernels, the same bits), for
// float and Q8_0 experts, any thread count and slots left to elsewhere. The second shape gives
// the one-token path several hidden blocks an expert and a last stretch of down rows cut short
// (160 = 64 + 64 + 32), so its tasks wait on each other in every order the threads make.
TEST(ExpertSum, OneTokenAloneGivesTheBitsOfASharedCall) {
  for (auto [d, ff] : {std::pair<int64_t, int64_t>{64, 32}, {160, 96}}) {
    const RandomExperts x(5, d, ff);
    std::vector<std::byte> q8;
    const MoeLayer q8_layer = x.quantized(q8);
    std::mt19937 rng(11);
    std::normal_distribution<float> normal;
    std::vector<float> u(size_t(x.d));
    for (float& v : u) v = normal(rng);
    const std::vector<int32_t> ids{4, -1, 1, -2, 5, 0};
    const std::vector<float> weights{0.31f, 0.2f, 0.17f, 0.1f, 0.13f, 0.09f};
    std::vector<float> u2 = u;
    u2.insert(u2.end(), u.begin(), u.end());
    std::vector<int32_t> ids2 = ids;
    ids2.insert(ids2.end(), ids.begin(), ids.end());
    std::vector<float> weights2 = weights;
    weights2.insert(weights2.end(), weights.begin(), weights.end());
    for (const MoeLayer* layer : {&x.layer, &q8_layer}) {
      for (int threads : {1, 2, 3, 5, 8}) {
        SCOPED_TRACE(std::string(layer == &x.layer ? "f32" : "q8_0") + ", d " + std::to_string(d) + ", " +
                     std::to_string(threads) + " threads");
        ThreadPool pool(threads);
        Scratch scratch;
        std::vector<float> one(u.size()), two(u2.size());
        for (int repeat = 0; repeat < 20; ++repeat) {  // the same bits however the tasks meet
          expert_sum(*layer, u, 1, ids, weights, one, pool, scratch);
          expert_sum(*layer, u2, 2, ids2, weights2, two, pool, scratch);
          ASSERT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float))) << "repeat " << repeat;
        }
        // And near the double loop: f32 1e-4; Q8_0's rounding of weights and activations grows
        // with the square root of the terms a value sums.
        const double q8_tolerance = 5e-2 * std::sqrt(double(d * ff) / (64 * 32));
        const auto ref = x.reference(u, 1, ids, weights);
        for (size_t i = 0; i < ref.size(); ++i) {
          EXPECT_NEAR(one[i], ref[i], (layer == &x.layer ? 1e-4 : q8_tolerance) * (1 + std::fabs(ref[i]))) << i;
        }
      }
    }
  }
}

// The routing against the softmax written out in double: the top k by logit (ties to the lower
// id), weights exp(l - max) / sum over the chosen (renormalized) or over all.
TEST(RouteToken, PicksTheTopLogitsAndWeighsThemByTheSoftmax) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (bool renormalize : {true, false}) {
    for (int n_expert : {8, 128, 512}) {
      const int k = n_expert == 8 ? 2 : 10;
      std::vector<float> logits(static_cast<size_t>(n_expert));
      for (float& l : logits) l = normal(rng);
      logits[3] = logits[5] = 9.0f;  // a tie at the top: expert 3 first
      const Route r = route_token(logits, k, renormalize);
      ASSERT_EQ(r.experts.size(), size_t(k));
      EXPECT_EQ(r.experts[0], 3);
      EXPECT_EQ(r.experts[1], 5);
      double all = 0, chosen = 0;
      for (float l : logits) all += std::exp(double(l) - 9.0);
      for (int e : r.experts) chosen += std::exp(double(logits[size_t(e)]) - 9.0);
      for (int i = 0; i < k; ++i) {
        const int e = r.experts[size_t(i)];
        if (i > 0) {
          EXPECT_GE(logits[size_t(r.experts[size_t(i - 1)])], logits[size_t(e)]);
        }
        for (int other = 0; other < n_expert; ++other) {  // nothing left out is higher
          if (std::find(r.experts.begin(), r.experts.end(), other) == r.experts.end()) {
            EXPECT_LE(logits[size_t(other)], logits[size_t(e)]);
          }
        }
        const double expected = std::exp(double(logits[size_t(e)]) - 9.0) / (renormalize ? chosen : all);
        EXPECT_NEAR(r.weights[size_t(i)], expected, 1e-6 * expected) << "rank " << i;
      }
    }
  }
}

// Logits an ulp apart whose exponentials round to the same float (exp(-2^-25) rounds to 1):
// the order is the logits', not the ids' (a pick on the rounded probabilities took id 10).
TEST(RouteToken, LogitsAnUlpApartKeepTheirOrder) {
  std::vector<float> logits(64, -4.0f);
  logits[10] = 0.4f;
  logits[20] = std::nextafter(0.4f, 1.0f);
  ASSERT_EQ(std::exp(logits[10] - logits[20]), 1.0f);
  const Route r = route_token(logits, 2, true);
  EXPECT_EQ(r.experts, (std::vector<int>{20, 10}));
  EXPECT_NEAR(r.weights[0] + r.weights[1], 1.0f, 1e-6f);
}

}  // namespace
}  // namespace moe

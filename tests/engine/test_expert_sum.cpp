// expert_sum (models/blocks.h): the routed experts' weighted SwiGLU sum for a given routing,
// what the hybrid engine's CPU computes for the experts the GPU does not hold. Checked against
// a plain double-precision loop, and split between two engines: the slots marked -1 on one
// side and computed on the other add up to the whole.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/thread_pool.h"
#include "models/blocks.h"

namespace moe {
namespace {

struct RandomExperts {
  int n_expert = 6;
  int64_t d = 64, ff = 32;
  std::vector<float> gate, up, down;  // [expert][rows][cols]
  MoeLayer layer;

  explicit RandomExperts(uint32_t seed) {
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

}  // namespace
}  // namespace moe

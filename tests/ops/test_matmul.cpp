// matmul: bit-identical output for any thread count and any grouping of tokens into calls,
// on every SIMD level; agreement with a double-precision reference; size checks.
#include <cmath>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/matmul.h"
#include "ops_test_util.h"

namespace moe {
namespace {

constexpr int64_t kRows = 2 * kMatmulRowsPerTask + 5;  // the last task is a partial one

struct Problem {
  GgmlType type;
  int64_t rows, cols, n_tokens;
  std::vector<std::byte> w;
  std::vector<float> x;
  WeightView view() const { return WeightView::packed(type, rows, cols, w.data()); }
};

Problem make_problem(std::mt19937& rng, GgmlType type, int64_t cols, int64_t n_tokens) {
  Problem p{type, kRows, cols, n_tokens, {}, test::random_floats(rng, n_tokens * cols)};
  p.w = test::quantize(type, test::random_floats(rng, kRows * cols, 0.05f), kRows, cols);
  return p;
}

std::vector<float> run(const Problem& p, ThreadPool& pool) {
  std::vector<float> y(p.n_tokens * p.rows);
  matmul(p.view(), p.x, p.n_tokens, y, pool);
  return y;
}

// Tokens [t0, t0 + count) of p alone.
std::vector<float> run_tokens(const Problem& p, int64_t t0, int64_t count, ThreadPool& pool) {
  std::vector<float> y(count * p.rows);
  matmul(p.view(), std::span(p.x).subspan(t0 * p.cols, count * p.cols), count, y, pool);
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Matmul, BitIdenticalForAnyThreadCount) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool p1(1), p2(2), p3(3), p4(4);
  for (SimdLevel level : test::runnable_levels()) {
    test::ScopedSimdLevel scoped(level);
    for (GgmlType type : test::weight_types()) {
      for (int64_t n_tokens : {1, 2, 3, 5, 17}) {
        SCOPED_TRACE(std::string(simd_level_name(level)) + " " + std::string(type_name(type)) +
                     " n_tokens=" + std::to_string(n_tokens));
        const Problem p = make_problem(rng, type, block_size(type) == 256 ? 512 : 288, n_tokens);
        const auto y1 = run(p, p1);
        EXPECT_TRUE(same_bits(y1, run(p, p2)));
        EXPECT_TRUE(same_bits(y1, run(p, p3)));
        EXPECT_TRUE(same_bits(y1, run(p, p4)));
      }
    }
  }
}

// Weight prefetch (decode-sized calls) changes what the caches hold, never the numbers: the
// same bits off, a little ahead, and far past the matrix's end (clipped to it).
TEST(Matmul, WeightPrefetchGivesTheSameBits) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  const size_t saved = weight_prefetch_bytes();
  for (GgmlType type : test::weight_types()) {
    for (int64_t n_tokens : {1, 4, 5}) {
      SCOPED_TRACE(std::string(type_name(type)) + " n_tokens=" + std::to_string(n_tokens));
      const Problem p = make_problem(rng, type, block_size(type) == 256 ? 512 : 288, n_tokens);
      set_weight_prefetch_bytes(0);
      const auto off = run(p, pool);
      for (size_t ahead : {size_t(64), size_t(4096), size_t(1) << 30}) {
        set_weight_prefetch_bytes(ahead);
        EXPECT_EQ(weight_prefetch_bytes(), ahead);
        EXPECT_TRUE(same_bits(off, run(p, pool))) << ahead << " bytes ahead";
      }
    }
  }
  set_weight_prefetch_bytes(saved);
}

// 17 tokens in one call, one at a time, and split 5 + 12: the same bits for every token
// (groups of 4 go through the prefill tiles where a format has them).
TEST(Matmul, BitIdenticalForAnyTokenGrouping) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  for (SimdLevel level : test::runnable_levels()) {
    test::ScopedSimdLevel scoped(level);
    for (GgmlType type : test::weight_types()) {
      SCOPED_TRACE(std::string(simd_level_name(level)) + " " + std::string(type_name(type)));
      const int64_t n = 17;
      for (const int64_t cols : {test::test_cols(type)[1], test::test_cols(type)[2]}) {  // even and odd block counts
        SCOPED_TRACE("cols " + std::to_string(cols));
        const Problem all = make_problem(rng, type, cols, n);
        const auto y_all = run(all, pool);
        std::vector<float> y_split;
        for (auto [t0, count] : {std::pair<int64_t, int64_t>{0, 5}, {5, 12}}) {
          const auto y = run_tokens(all, t0, count, pool);
          y_split.insert(y_split.end(), y.begin(), y.end());
        }
        EXPECT_TRUE(same_bits(y_all, y_split));
        for (int64_t t = 0; t < n; ++t) {
          const auto y = run_tokens(all, t, 1, pool);
          ASSERT_EQ(std::memcmp(y.data(), y_all.data() + t * all.rows, y.size() * sizeof(float)), 0) << "token " << t;
        }
      }
    }
  }
}

// Against double-precision dots of the decoded weights: tight with the activations as the
// kernel saw them (quantized), loose against the original f32 activations.
TEST(Matmul, MatchesDoubleReference) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  for (GgmlType type : test::weight_types()) {
    for (int64_t n_tokens : {1, 3, 5}) {
      const int64_t cols = test::test_cols(type).back();
      SCOPED_TRACE(std::string(type_name(type)) + " n_tokens=" + std::to_string(n_tokens));
      const Problem p = make_problem(rng, type, cols, n_tokens);
      const auto y = run(p, pool);
      const auto wf = test::dequantize(type, p.w, p.rows, cols);
      const GgmlType xt = vec_dot_type(type);
      const auto xf = test::dequantize(xt, test::quantize(xt, p.x, n_tokens, cols), n_tokens, cols);
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < p.rows; ++r) {
          double exact = 0, raw = 0, scale = 0;
          for (int64_t i = 0; i < cols; ++i) {
            exact += double(wf[r * cols + i]) * double(xf[t * cols + i]);
            raw += double(wf[r * cols + i]) * double(p.x[t * cols + i]);
            scale += std::fabs(double(wf[r * cols + i]) * double(p.x[t * cols + i]));
          }
          const float got = y[t * p.rows + r];
          ASSERT_NEAR(got, exact, 1e-5 * scale) << "token " << t << " row " << r;
          // 8-bit activations: per-value error <= 1/254 of the block maximum, mostly cancelling.
          ASSERT_NEAR(got, raw, 0.01 * scale) << "token " << t << " row " << r;
        }
      }
    }
  }
}

TEST(Matmul, PreQuantizedActivationsGiveTheSameBits) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  for (GgmlType type : test::weight_types()) {
    SCOPED_TRACE(std::string(type_name(type)));
    const Problem p = make_problem(rng, type, 512, 3);
    QuantizedActivations qa;
    qa.quantize(vec_dot_type(type), p.x, p.n_tokens, p.cols, &pool);
    std::vector<float> y(p.n_tokens * p.rows);
    matmul(p.view(), qa.view(), y, pool);
    EXPECT_TRUE(same_bits(y, run(p, pool)));
  }
}

TEST(Matmul, RowStrideAndSizeChecks) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  const Problem p = make_problem(rng, GgmlType::Q8_0, 64, 2);
  // Every other row of a matrix twice as wide... as a strided view over the same bytes.
  const size_t rb = row_bytes(GgmlType::Q8_0, 64);
  WeightView strided{GgmlType::Q8_0, p.rows / 2, 64, p.w.data(), 2 * rb};
  std::vector<float> ys(2 * strided.rows), y = run(p, pool);
  matmul(strided, p.x, 2, ys, pool);
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t r = 0; r < strided.rows; ++r) EXPECT_EQ(ys[t * strided.rows + r], y[t * p.rows + 2 * r]);
  }
  std::vector<float> out(2 * p.rows);
  EXPECT_THROW(matmul(p.view(), std::span(p.x).first(64), 2, out, pool), Error);  // x too short
  EXPECT_THROW(matmul(p.view(), p.x, 2, std::span(out).first(5), pool), Error);   // y wrong size
  WeightView bad = p.view();
  bad.cols = 48;  // not a multiple of 32
  EXPECT_THROW(matmul(bad, std::span(p.x).first(96), 2, out, pool), Error);
  QuantizedActivations qa;
  qa.quantize(GgmlType::Q8_K, test::random_floats(rng, 2 * 256), 2, 256);
  EXPECT_THROW(matmul(p.view(), qa.view(), out, pool), Error);  // Q8_K acts for Q8_0 weights
}

}  // namespace
}  // namespace moe

// Dot-product kernels: the scalar reference against a double-precision dot of the decoded
// rows, every SIMD kernel this CPU can run against the scalar reference, and bit-identical
// results for any number of tokens per call.
#include <cmath>

#include "core/error.h"
#include "ops_test_util.h"

namespace moe {
namespace {

constexpr int kRows = 3;
constexpr int kTokens = kMaxDotTokens;

struct Case {
  GgmlType type;
  int64_t k;
  std::vector<std::byte> w;   // kRows rows
  std::vector<std::byte> xq;  // kTokens rows in vec_dot_type(type)
  size_t w_stride, x_stride;
  std::vector<double> exact;  // [row][token]: double dot of the decoded rows
  std::vector<double> scale;  // [row][token]: sum |w_i x_i|, the size of rounding errors
};

Case make_case(std::mt19937& rng, GgmlType type, int64_t k) {
  Case c{type, k, test::random_blocks(rng, type, kRows, k), {}, row_bytes(type, k), 0, {}, {}};
  const GgmlType xt = vec_dot_type(type);
  c.xq = test::quantize(xt, test::random_floats(rng, kTokens * k), kTokens, k);
  c.x_stride = row_bytes(xt, k);
  const auto wf = test::dequantize(type, c.w, kRows, k);
  const auto xf = test::dequantize(xt, c.xq, kTokens, k);
  for (int r = 0; r < kRows; ++r) {
    for (int t = 0; t < kTokens; ++t) {
      double sum = 0, abs_sum = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = double(wf[r * k + i]) * double(xf[t * k + i]);
        sum += p;
        abs_sum += std::fabs(p);
      }
      c.exact.push_back(sum);
      c.scale.push_back(abs_sum);
    }
  }
  return c;
}

std::vector<float> run(const Case& c, VecDotFn fn, int n_tok) {
  std::vector<float> out(kRows * kTokens);
  for (int r = 0; r < kRows; ++r) {
    for (int t0 = 0; t0 < kTokens; t0 += n_tok) {
      const int n = std::min(n_tok, kTokens - t0);
      fn(c.k, c.w.data() + r * c.w_stride, c.xq.data() + t0 * c.x_stride, c.x_stride, n, &out[r * kTokens + t0]);
    }
  }
  return out;
}

// float accumulation over k values in another order: errors stay far below 1e-5 of the
// magnitude sum, while any decoding mistake is of the order of the result itself.
constexpr double kRelTol = 1e-5;

TEST(VecDot, ScalarReferenceMatchesDoubleDot) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (GgmlType type : test::weight_types()) {
    for (int64_t k : test::test_cols(type)) {
      SCOPED_TRACE(std::string(type_name(type)) + " k=" + std::to_string(k));
      const Case c = make_case(rng, type, k);
      const auto got = run(c, vec_dot_scalar(type), 1);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], c.exact[i], kRelTol * c.scale[i] + 1e-30) << "row/token " << i;
      }
    }
  }
}

TEST(VecDot, SimdKernelsMatchScalar) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const auto levels = test::runnable_levels();
  ASSERT_GE(levels.size(), 1u);
  for (SimdLevel level : levels) {
    if (level == SimdLevel::Scalar) continue;
    for (GgmlType type : test::weight_types()) {
      VecDotFn fast = vec_dot_kernel(type, level);
      ASSERT_NE(fast, vec_dot_scalar(type)) << "no " << simd_level_name(level) << " kernel for " << type_name(type);
      for (int64_t k : test::test_cols(type)) {
        SCOPED_TRACE(std::string(simd_level_name(level)) + " " + std::string(type_name(type)) +
                     " k=" + std::to_string(k));
        const Case c = make_case(rng, type, k);
        const auto ref = run(c, vec_dot_scalar(type), 1);
        for (int n_tok = 1; n_tok <= kMaxDotTokens; ++n_tok) {
          const auto got = run(c, fast, n_tok);
          for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_NEAR(got[i], ref[i], kRelTol * c.scale[i] + 1e-30) << "n_tok " << n_tok << " row/token " << i;
          }
        }
      }
    }
  }
}

// A token's result must not depend on how many tokens share the kernel call (that is what
// makes prefill and decode agree bit for bit).
TEST(VecDot, TokenGroupingIsBitExact) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (SimdLevel level : test::runnable_levels()) {
    for (GgmlType type : test::weight_types()) {
      const int64_t k = test::test_cols(type).back();
      SCOPED_TRACE(std::string(simd_level_name(level)) + " " + std::string(type_name(type)));
      const Case c = make_case(rng, type, k);
      VecDotFn fn = vec_dot_kernel(type, level);
      const auto one = run(c, fn, 1);
      for (int n_tok = 2; n_tok <= kMaxDotTokens; ++n_tok) {
        const auto grouped = run(c, fn, n_tok);
        ASSERT_EQ(std::memcmp(one.data(), grouped.data(), one.size() * sizeof(float)), 0) << "n_tok " << n_tok;
      }
    }
  }
}

// The tiles of rows (products in rows layout use them for every token count, decode's one
// included) give each (row, token) the bits of the row kernel of the same format and level:
// even and odd block counts, 1 to kGemmTileTokens tokens.
TEST(VecDot, GemmTilesGiveTheBitsOfTheRowKernel) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  int tiles_checked = 0;
  for (SimdLevel level : test::runnable_levels()) {
    for (GgmlType type : test::weight_types()) {
      const GemmTileFn tile = gemm_tile_kernel(type, level);
      if (!tile) continue;
      const VecDotFn dot = vec_dot_kernel(type, level);
      const GgmlType xt = vec_dot_type(type);
      for (const int64_t k : test::test_cols(type)) {
        SCOPED_TRACE(std::string(simd_level_name(level)) + " " + std::string(type_name(type)) + " k " + std::to_string(k));
        const auto w = test::random_blocks(rng, type, kGemmTileRows, k);
        const auto x = test::quantize(xt, test::random_floats(rng, kGemmTileTokens * k), kGemmTileTokens, k);
        const size_t ws = row_bytes(type, k), xs = row_bytes(xt, k);
        for (int n_tok = 1; n_tok <= kGemmTileTokens; ++n_tok) {
          float tiled[kGemmTileRows * kGemmTileTokens];
          tile(k, w.data(), ws, x.data(), xs, n_tok, tiled);
          for (int r = 0; r < kGemmTileRows; ++r) {
            float rowwise[kMaxDotTokens];
            dot(k, w.data() + r * ws, x.data(), xs, n_tok, rowwise);
            for (int t = 0; t < n_tok; ++t) {
              ASSERT_EQ(std::memcmp(&tiled[r * kGemmTileTokens + t], &rowwise[t], sizeof(float)), 0)
                  << "row " << r << " token " << t << " of " << n_tok;
            }
          }
        }
        ++tiles_checked;
      }
    }
  }
  if (tiles_checked == 0) GTEST_SKIP() << "no SIMD level with tiles on this CPU";
}

TEST(VecDot, TypePairs) {
  EXPECT_EQ(vec_dot_type(GgmlType::Q4_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q8_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q4_K), GgmlType::Q8_K);
  EXPECT_EQ(vec_dot_type(GgmlType::Q6_K), GgmlType::Q8_K);
  EXPECT_EQ(vec_dot_type(GgmlType::BF16), GgmlType::F32);
  EXPECT_FALSE(has_vec_dot(GgmlType::Q2_K));
  EXPECT_THROW(vec_dot_kernel(GgmlType::IQ4_XS, SimdLevel::Scalar), Error);
  EXPECT_THROW(vec_dot_type(GgmlType::Q3_K), Error);
}

}  // namespace
}  // namespace moe

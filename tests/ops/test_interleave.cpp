// Interleaved weight layouts: repacking keeps every quantized number (the products agree with
// the row kernels' to float rounding), the SIMD kernel gives the scalar reference's bits, a
// token's result does not depend on how many share a call, and matmul on a repacked matrix
// equals the group kernel for any thread count.
#include <cmath>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/interleave.h"
#include "ops/cpu/matmul.h"
#include "ops_test_util.h"

namespace moe {
namespace {

constexpr int kTokens = 7;  // one full group of 4 tokens and a partial one

struct Problem {
  int64_t rows, cols;
  std::vector<std::byte> w;        // GGUF rows
  std::vector<std::byte> packed;   // interleaved
  std::vector<std::byte> xq;       // kTokens Q8_K rows
  size_t x_stride;

  WeightView packed_view() const {
    return WeightView::interleaved(GgmlType::Q4_K, WeightLayout::Q4_Kx16, rows, cols, packed.data());
  }
};

Problem make_problem(std::mt19937& rng, int64_t rows, int64_t cols) {
  Problem p{rows, cols, test::random_blocks(rng, GgmlType::Q4_K, rows, cols), {}, {}, row_bytes(GgmlType::Q8_K, cols)};
  p.packed.resize(interleaved_group_bytes(WeightLayout::Q4_Kx16, cols) * size_t(rows / kInterleaveRows));
  interleave_groups(WeightLayout::Q4_Kx16, cols, p.w.data(), row_bytes(GgmlType::Q4_K, cols), 0,
                    rows / kInterleaveRows, p.packed.data());
  p.xq = test::quantize(GgmlType::Q8_K, test::random_floats(rng, kTokens * cols), kTokens, cols);
  return p;
}

// y[t][r] from the group kernel, tokens passed n_tok at a time.
std::vector<float> run_groups(const Problem& p, GroupDotFn fn, int n_tok) {
  std::vector<float> y(size_t(kTokens * p.rows));
  const size_t group_bytes = interleaved_group_bytes(WeightLayout::Q4_Kx16, p.cols);
  for (int64_t g = 0; g < p.rows / kInterleaveRows; ++g) {
    for (int t0 = 0; t0 < kTokens; t0 += n_tok) {
      const int n = std::min(n_tok, kTokens - t0);
      float out[kInterleaveRows * kMaxDotTokens];
      fn(p.cols, p.packed.data() + g * group_bytes, p.xq.data() + t0 * p.x_stride, p.x_stride, n, out);
      for (int r = 0; r < kInterleaveRows; ++r) {
        for (int t = 0; t < n; ++t) y[size_t((t0 + t) * p.rows + g * kInterleaveRows + r)] = out[r * kMaxDotTokens + t];
      }
    }
  }
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Interleave, Q4_KProductsMatchTheRowKernel) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const VecDotFn row_dot = vec_dot_scalar(GgmlType::Q4_K);
  for (int64_t cols : test::test_cols(GgmlType::Q4_K)) {
    SCOPED_TRACE("cols=" + std::to_string(cols));
    const Problem p = make_problem(rng, 2 * kInterleaveRows, cols);
    const auto got = run_groups(p, group_dot_scalar(WeightLayout::Q4_Kx16), 1);
    const auto wf = test::dequantize(GgmlType::Q4_K, p.w, p.rows, cols);
    const auto xf = test::dequantize(GgmlType::Q8_K, p.xq, kTokens, cols);
    const size_t rb = row_bytes(GgmlType::Q4_K, cols);
    for (int64_t r = 0; r < p.rows; ++r) {
      for (int t = 0; t < kTokens; ++t) {
        float want;
        row_dot(cols, p.w.data() + r * rb, p.xq.data() + t * p.x_stride, p.x_stride, 1, &want);
        double magnitude = 0;  // sum |w_i x_i|: the size of float rounding errors
        for (int64_t i = 0; i < cols; ++i) magnitude += std::fabs(double(wf[r * cols + i]) * xf[t * cols + i]);
        ASSERT_NEAR(got[size_t(t * p.rows + r)], want, 1e-5 * magnitude) << "row " << r << " token " << t;
      }
    }
  }
}

TEST(Interleave, SimdKernelGivesTheScalarBitsForAnyTokenGrouping) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  std::vector<GroupDotFn> kernels{group_dot_scalar(WeightLayout::Q4_Kx16)};
  if (vec_dot_level(SimdLevel::Avx512) == SimdLevel::Avx512) kernels.push_back(group_dot_avx512(WeightLayout::Q4_Kx16));
  for (int64_t cols : test::test_cols(GgmlType::Q4_K)) {
    SCOPED_TRACE("cols=" + std::to_string(cols));
    const Problem p = make_problem(rng, 3 * kInterleaveRows, cols);
    const auto want = run_groups(p, kernels.front(), 1);
    for (GroupDotFn fn : kernels) {
      for (int n_tok = 1; n_tok <= kMaxDotTokens; ++n_tok) {
        EXPECT_TRUE(same_bits(run_groups(p, fn, n_tok), want)) << "kernel " << (fn == kernels.front() ? "scalar" : "avx512")
                                                               << " n_tok=" << n_tok;
      }
    }
  }
}

TEST(Interleave, MatmulOnRepackedWeightsIsTheGroupKernelForAnyThreadCount) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const Problem p = make_problem(rng, 5 * kInterleaveRows, 512);
  const auto want = run_groups(p, group_dot_kernel(WeightLayout::Q4_Kx16), kMaxDotTokens);
  const ActivationView x{GgmlType::Q8_K, p.cols, kTokens, p.xq.data(), p.x_stride};
  for (int threads : {1, 2, 3}) {
    ThreadPool pool{threads};
    std::vector<float> y(want.size());
    matmul(p.packed_view(), x, y, pool);
    EXPECT_TRUE(same_bits(y, want)) << threads << " threads";
  }
  EXPECT_EQ(p.packed_view().bytes(), p.packed.size());
}

TEST(Interleave, RejectsLayoutsThatDoNotFitTheWeights) {
  std::mt19937 rng(1);
  const Problem p = make_problem(rng, kInterleaveRows, 256);
  const ActivationView x{GgmlType::Q8_K, p.cols, 1, p.xq.data(), p.x_stride};
  std::vector<float> y(size_t(p.rows));
  ThreadPool pool{1};
  WeightView wrong_type = p.packed_view();
  wrong_type.type = GgmlType::Q6_K;
  EXPECT_THROW(matmul(wrong_type, x, y, pool), Error);
  WeightView partial_group = p.packed_view();
  partial_group.rows = kInterleaveRows - 1;
  std::vector<float> y2(size_t(partial_group.rows));
  EXPECT_THROW(matmul(partial_group, x, y2, pool), Error);
  EXPECT_EQ(interleaved_layout(GgmlType::Q8_0), WeightLayout::Rows);
  EXPECT_EQ(interleaved_layout(GgmlType::Q4_K, SimdLevel::Avx2), WeightLayout::Rows);
}

}  // namespace
}  // namespace moe

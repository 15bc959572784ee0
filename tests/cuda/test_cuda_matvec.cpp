// GPU matvec against the CPU reference: every weight format, odd row counts, row lengths of
// one and many blocks, 1 to 8 tokens, fresh random data each run (seed printed on failure).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "../ops/ops_test_util.h"
#include "core/error.h"
#include "ops/cuda/matvec.h"

namespace moe {
namespace {

std::vector<int64_t> gpu_test_cols(GgmlType type) {
  if (block_size(type) == 256) return {256, 2304, 4096 + 256};
  if (block_size(type) == 32) return {32, 288, 4096 + 256 + 32};
  return {8, 40, 4096 + 8};
}

TEST(CudaMatvec, EveryFormatMatchesTheCpuReference) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (GgmlType type : test::weight_types()) {
    for (int64_t cols : gpu_test_cols(type)) {
      for (int64_t rows : {1, 37}) {
        for (int n_tok : {1, 3, cuda::kMaxMatvecTokens}) {
          SCOPED_TRACE(fmt::format("{} {}x{} tokens={}", type_name(type), rows, cols, n_tok));
          const auto w = test::quantize(type, test::random_floats(rng, size_t(rows * cols), 0.05f), rows, cols);
          const auto x = test::random_floats(rng, size_t(n_tok * cols));
          std::vector<float> y(size_t(n_tok * rows));
          cuda::matvec_on_gpu(type, w, rows, cols, x, n_tok, y);
          const auto wf = test::dequantize(type, w, rows, cols);
          for (int t = 0; t < n_tok; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              double exact = 0, magnitude = 0;
              for (int64_t i = 0; i < cols; ++i) {
                const double p = double(wf[size_t(r * cols + i)]) * x[size_t(t * cols + i)];
                exact += p;
                magnitude += std::fabs(p);
              }
              ASSERT_NEAR(y[size_t(t * rows + r)], exact, 1e-5 * magnitude + 1e-30) << "token " << t << " row " << r;
            }
          }
        }
      }
    }
  }
}

TEST(CudaMatvec, LargeMatrixOfEveryFormat) {  // many blocks of warps, the grid's tail included
  SEED_TRACE();
  std::mt19937 rng(test::test_seed() + 1);
  for (GgmlType type : test::weight_types()) {
    SCOPED_TRACE(std::string(type_name(type)));
    const int64_t rows = 3001, cols = 2048;
    const auto w = test::quantize(type, test::random_floats(rng, size_t(rows * cols), 0.05f), rows, cols);
    const auto x = test::random_floats(rng, size_t(cols));
    std::vector<float> y(size_t(rows));
    cuda::matvec_on_gpu(type, w, rows, cols, x, 1, y);
    const auto wf = test::dequantize(type, w, rows, cols);
    for (int64_t r = 0; r < rows; r += 7) {
      double exact = 0, magnitude = 0;
      for (int64_t i = 0; i < cols; ++i) {
        exact += double(wf[size_t(r * cols + i)]) * x[size_t(i)];
        magnitude += std::fabs(double(wf[size_t(r * cols + i)]) * x[size_t(i)]);
      }
      ASSERT_NEAR(y[size_t(r)], exact, 1e-5 * magnitude) << "row " << r;
    }
  }
}

TEST(CudaMatvec, RejectsBadShapes) {
  std::vector<std::byte> w(34);
  std::vector<float> x(32), y(1);
  EXPECT_NO_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 32, x, 1, y));
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 32, x, 0, y), Error);        // no tokens
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 32, x, 9, y), Error);        // too many
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 33, x, 1, y), Error);        // not whole blocks
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q4_1, w, 1, 32, x, 1, y), Error);        // no kernel
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 2, 32, x, 1, y), Error);        // sizes disagree
  std::vector<std::byte> f(4 * 12);
  std::vector<float> x12(12), y1(1);
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::F32, f, 1, 12, x12, 1, y1), Error);      // not a multiple of 8
}

}  // namespace
}  // namespace moe

// The prefill GEMM against the CPU kernels on fresh random data: Q8_0, Q4_0 and float weights, rows
// that are not a multiple of the 128-row tile, column counts that are not a multiple of the
// 4-block stage, token counts around the 64-row tile; accumulate; and the expert form, whose
// rows go through the expert the router gave them whatever tile they land in.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "../ops/ops_test_util.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cuda_test_util.h"
#include "ops/cpu/matmul.h"
#include "ops/cpu/vec_dot.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/gemm.h"

namespace moe {
namespace {

using test::Device;

// The CPU's y[t] = W x[t] for rows of x (the same activation quantization, other float order).
std::vector<float> cpu_product(GgmlType type, const std::vector<std::byte>& w, int64_t rows, int64_t cols,
                               std::span<const float> x, int n) {
  ThreadPool pool(2);
  std::vector<float> y(size_t(n * rows));
  matmul(WeightView::packed(type, rows, cols, w.data()), x, n, y, pool);
  return y;
}

void expect_rows_near(std::span<const float> gpu, std::span<const float> cpu, int64_t rows, const std::string& what) {
  for (size_t j = 0; j < cpu.size() / size_t(rows); ++j) {
    double scale = 0;
    for (int64_t r = 0; r < rows; ++r) scale = std::max(scale, double(std::fabs(cpu[j * rows + r])));
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_NEAR(gpu[j * rows + r], cpu[j * rows + r], 2e-5 * scale + 1e-30) << what << " row " << j << " col " << r;
    }
  }
}

TEST(CudaGemm, DenseProductsMatchTheCpu) {
  SEED_TRACE();
  if (!cuda::device_has_gemm()) GTEST_SKIP() << "the device has no int8 mma (compute capability < 8.0)";
  std::mt19937 rng(test::test_seed());
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    for (const auto& [rows, cols, n] : {std::tuple{200, 128, 9}, std::tuple{128, 2048 + 64, 64}, std::tuple{300, 512, 130},
                                        std::tuple{70, 40, 17}}) {
      if (!cuda::has_gemm(type, cols)) continue;
      const std::string what = fmt::format("{} {}x{} n={}", type_name(type), rows, cols, n);
      const auto w = test::random_blocks(rng, type, rows, cols);
      const auto x = test::random_floats(rng, size_t(n * cols));
      const auto cpu = cpu_product(type, w, rows, cols, x, n);
      Device<std::byte> dw(w);
      Device<float> dx(x), dy{size_t(n * rows)};
      cuda::ActivationBuffer buffer;
      const auto a = buffer.quantize(vec_dot_type(type), dx.get(), n, cols, nullptr);
      cuda::gemm(type, dw.get(), row_bytes(type, cols), rows, a, dy.get(), nullptr);
      expect_rows_near(dy.host(), cpu, rows, what);
      // accumulate: y += W x once more gives twice the product
      cuda::gemm(type, dw.get(), row_bytes(type, cols), rows, a, dy.get(), nullptr, true);
      std::vector<float> twice(cpu.size());
      for (size_t i = 0; i < cpu.size(); ++i) twice[i] = 2 * cpu[i];
      expect_rows_near(dy.host(), twice, rows, what + " accumulated");
    }
  }
}

TEST(CudaGemm, ExpertRowsGoThroughTheirExpert) {
  SEED_TRACE();
  if (!cuda::device_has_gemm()) GTEST_SKIP() << "the device has no int8 mma (compute capability < 8.0)";
  std::mt19937 rng(test::test_seed());
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16}) {
    const int n_expert = 12, rows = 160, cols = 256, n_tok = 70, k = 3, n_rows = n_tok * k;
    const size_t rb = row_bytes(type, cols), expert_bytes = rb * rows;
    const auto w = test::random_blocks(rng, type, int64_t(n_expert) * rows, cols);
    const auto x = test::random_floats(rng, size_t(n_tok * cols));
    // Skewed routing: expert 0 gets more than a tile's rows, some experts none.
    std::vector<int32_t> experts(static_cast<size_t>(n_rows));
    for (auto& e : experts) e = rng() % 3 == 0 ? 0 : int32_t(rng() % 8);
    Device<std::byte> dw(w);
    Device<float> dx(x), dy{size_t(n_rows * rows)};
    Device<int32_t> de(experts);
    cuda::ActivationBuffer buffer;
    const auto a = buffer.quantize(vec_dot_type(type), dx.get(), n_tok, cols, nullptr);
    cuda::ExpertGroups groups;
    groups.build(de.get(), n_rows, n_expert, nullptr);
    cuda::gemm_experts(type, dw.get(), expert_bytes, rb, rows, a, k, groups, dy.get(), nullptr);
    const auto gpu = dy.host();
    for (int j = 0; j < n_rows; ++j) {
      const std::vector<std::byte> we(w.begin() + ptrdiff_t(size_t(experts[size_t(j)]) * expert_bytes),
                                      w.begin() + ptrdiff_t(size_t(experts[size_t(j)] + 1) * expert_bytes));
      const auto cpu = cpu_product(type, we, rows, cols, std::span(x).subspan(size_t(j / k * cols), size_t(cols)), 1);
      expect_rows_near(std::span(gpu).subspan(size_t(j * rows), size_t(rows)), cpu, rows,
                       fmt::format("{} expert row {} (expert {})", type_name(type), j, experts[size_t(j)]));
    }
  }
}

TEST(CudaGemm, RejectsWhatItCannotMultiply) {
  cuda::DeviceActivations a;
  a.type = GgmlType::Q8_K;
  a.cols = 256;
  a.n_tok = 16;
  EXPECT_THROW(cuda::gemm(GgmlType::Q4_K, nullptr, 144, 16, a, nullptr, nullptr), Error);
  EXPECT_THROW(cuda::gemm(GgmlType::Q8_0, nullptr, 272, 16, a, nullptr, nullptr), Error);  // Q8_K activations
  a.type = GgmlType::Q8_0;
  EXPECT_THROW(cuda::gemm(GgmlType::Q8_0, nullptr, 100, 16, a, nullptr, nullptr), Error);  // stride < a row
  a.cols = 96;  // not whole words per staged row
  EXPECT_FALSE(cuda::has_gemm(GgmlType::Q8_0, 96));
  EXPECT_THROW(cuda::gemm(GgmlType::Q8_0, nullptr, 102, 16, a, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace moe

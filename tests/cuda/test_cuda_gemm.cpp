// The prefill GEMM against the CPU kernels on fresh random data: Q8_0, Q4_0, the K-quants and
// float weights, rows that are not a multiple of the 128-row tile, column counts that are not a
// multiple of the 4-block stage (K-quants: odd numbers of super-blocks, so that Q6_K's 210-byte
// blocks start on both 2-byte phases), token counts around the 64-row tile; accumulate; and the
// expert form, whose rows go through the expert the router gave them whatever tile they land in.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
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
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"

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
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::F32,
                        GgmlType::F16, GgmlType::BF16}) {
    for (const auto& [rows, cols, n] : {std::tuple{200, 128, 9}, std::tuple{128, 2048 + 64, 64}, std::tuple{300, 512, 130},
                                        std::tuple{70, 40, 17}, std::tuple{200, 256, 9}, std::tuple{130, 2304, 64}}) {
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
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::F16}) {
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

// Q8_0 rows repacked into the split layout hold the same bytes elsewhere (checked on the host),
// and every product reads them to exactly the results of the GGUF layout: decode products for
// 1 to 8 tokens, expert products, the dense and expert GEMM.
TEST(CudaGemm, SplitQ8_0LayoutGivesTheSameProducts) {
  SEED_TRACE();
  if (!cuda::device_has_gemm()) GTEST_SKIP() << "the device has no int8 mma (compute capability < 8.0)";
  std::mt19937 rng(test::test_seed());
  const GgmlType type = GgmlType::Q8_0;
  const int rows = 200, cols = 320, n_expert = 3, n = 70;
  const size_t rb = row_bytes(type, cols), split_stride = cuda::q8_0_split_stride(cols);
  const auto w = test::random_blocks(rng, type, int64_t(n_expert) * rows, cols);
  Device<std::byte> dw(w), ds{split_stride * n_expert * rows};
  MOE_CUDA_CHECK(cuda::relayout_q8_0_split(dw.get(), rb, n_expert * rows, cols, ds.get(), split_stride, nullptr));
  const auto split = ds.host();
  for (int r = 0; r < n_expert * rows; ++r) {
    for (int b = 0; b < cols / 32; ++b) {
      const std::byte* blk = w.data() + size_t(r) * rb + size_t(b) * 34;
      const std::byte* row = split.data() + size_t(r) * split_stride;
      ASSERT_EQ(std::memcmp(row + b * 32, blk + 2, 32), 0) << "values of row " << r << " block " << b;
      ASSERT_EQ(std::memcmp(row + cols + 2 * b, blk, 2), 0) << "scale of row " << r << " block " << b;
    }
  }
  const auto x = test::random_floats(rng, size_t(n * cols));
  Device<float> dx(x), gguf{size_t(n * rows)}, ours{size_t(n * rows)};
  cuda::ActivationBuffer buffer;
  const auto a = buffer.quantize(GgmlType::Q8_0, dx.get(), n, cols, nullptr);
  for (int tokens = 1; tokens <= cuda::kMaxMatvecTokens; ++tokens) {
    cuda::matvec(type, dw.get(), rb, rows, a.rows(0, tokens), gguf.get(), nullptr);
    cuda::matvec(type, ds.get(), split_stride, rows, a.rows(0, tokens), ours.get(), nullptr, false,
                 cuda::GpuLayout::Q8_0Split);
    ASSERT_EQ(ours.host(), gguf.host()) << tokens << " tokens";
  }
  cuda::gemm(type, dw.get(), rb, rows, a, gguf.get(), nullptr);
  cuda::gemm(type, ds.get(), split_stride, rows, a, ours.get(), nullptr, false, cuda::GpuLayout::Q8_0Split);
  EXPECT_EQ(ours.host(), gguf.host()) << "gemm";
  // Experts: n rows routed over the three matrices, by the decode kernel and by the GEMM.
  std::vector<int32_t> experts(static_cast<size_t>(n));
  for (auto& e : experts) e = int32_t(rng() % n_expert);
  Device<int32_t> de(experts);
  cuda::matvec_experts(type, dw.get(), rb * rows, rb, rows, a, de.get(), gguf.get(), nullptr);
  cuda::matvec_experts(type, ds.get(), split_stride * rows, split_stride, rows, a, de.get(), ours.get(), nullptr, 1,
                       cuda::GpuLayout::Q8_0Split);
  EXPECT_EQ(ours.host(), gguf.host()) << "matvec_experts";
  cuda::ExpertGroups groups;
  groups.build(de.get(), n, n_expert, nullptr);
  cuda::gemm_experts(type, dw.get(), rb * rows, rb, rows, a, 1, groups, gguf.get(), nullptr);
  cuda::gemm_experts(type, ds.get(), split_stride * rows, split_stride, rows, a, 1, groups, ours.get(), nullptr,
                     cuda::GpuLayout::Q8_0Split);
  EXPECT_EQ(ours.host(), gguf.host()) << "gemm_experts";
}

TEST(CudaGemm, RejectsWhatItCannotMultiply) {
  cuda::DeviceActivations a;
  a.type = GgmlType::Q8_K;
  a.cols = 256;
  a.n_tok = 16;
  EXPECT_TRUE(cuda::has_gemm(GgmlType::Q4_K, 256));
  EXPECT_FALSE(cuda::has_gemm(GgmlType::Q6_K, 128));  // not a whole super-block
  EXPECT_THROW(cuda::gemm(GgmlType::Q4_K, nullptr, 100, 16, a, nullptr, nullptr), Error);  // stride < a row
  EXPECT_THROW(cuda::gemm(GgmlType::Q8_0, nullptr, 272, 16, a, nullptr, nullptr), Error);  // Q8_K activations
  a.type = GgmlType::Q8_0;
  EXPECT_THROW(cuda::gemm(GgmlType::Q4_K, nullptr, 144, 16, a, nullptr, nullptr), Error);  // Q8_0 activations
  EXPECT_THROW(cuda::gemm(GgmlType::Q8_0, nullptr, 100, 16, a, nullptr, nullptr), Error);  // stride < a row
  a.cols = 96;  // not whole words per staged row
  EXPECT_FALSE(cuda::has_gemm(GgmlType::Q8_0, 96));
  EXPECT_THROW(cuda::gemm(GgmlType::Q8_0, nullptr, 102, 16, a, nullptr, nullptr), Error);
  a.cols = 256;  // the split layout is for Q8_0 only
  EXPECT_THROW(cuda::gemm(GgmlType::Q4_0, nullptr, 512, 16, a, nullptr, nullptr, false, cuda::GpuLayout::Q8_0Split),
               Error);
}

}  // namespace
}  // namespace moe

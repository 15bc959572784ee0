// GPU matvec and activation quantization against the CPU: the activations quantize to the same
// bytes, and every weight format's products equal the CPU kernels' to float rounding (same
// integer block sums, other float order). Odd row counts, rows of one and many blocks, 1 to 8
// tokens, fresh random data each run (the seed is printed on failure).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "../ops/ops_test_util.h"
#include "core/bytes.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/matmul.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"
#include "cuda_test_util.h"

namespace moe {
namespace {

std::vector<int64_t> gpu_test_cols(GgmlType type) {
  if (block_size(type) == 256) return {256, 2304, 4096 + 256};
  if (block_size(type) == 32) return {32, 288, 4096 + 256 + 32};
  return {8, 40, 4096 + 8};
}

using test::download;

// Activations with what trips quantizers: a zero block, ties of opposite sign for the largest
// magnitude, halves that round differently under half-away and half-even, large outliers.
std::vector<float> awkward_activations(std::mt19937& rng, int64_t n) {
  auto x = test::random_floats(rng, size_t(n));
  for (int64_t i = 0; i < std::min<int64_t>(n, 32); ++i) x[size_t(i)] = 0.0f;
  if (n >= 512) {
    x[300] = 5.0f, x[301] = -5.0f;  // ties in one Q8_K block: the first one sets the sign
    for (int i = 320; i < 352; ++i) x[size_t(i)] = float(i % 7) * 0.5f;  // exact halves after scaling
    x[400] = 60.0f;
  }
  return x;
}

TEST(CudaActivations, QuantizeToTheCpuBytes) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int n_tok = 3;
  const int64_t cols = 2048;
  const auto x = awkward_activations(rng, n_tok * cols);
  cuda::DeviceBuffer dx(x.size() * sizeof(float));
  MOE_CUDA_CHECK(cudaMemcpy(dx.get(), x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
  cuda::ActivationBuffer buffer;
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_K}) {
    SCOPED_TRACE(std::string(type_name(type)));
    const auto a = buffer.quantize(type, dx.as<float>(), n_tok, cols, nullptr);
    const auto qs = download(a.qs, size_t(n_tok * cols));
    const int64_t per_block = block_size(type), n_blocks = n_tok * cols / per_block;
    const auto scales = download(a.scales, size_t(n_blocks));
    const auto cpu = test::quantize(type, x, n_tok, cols);
    for (int64_t b = 0; b < n_blocks; ++b) {
      if (type == GgmlType::Q8_0) {
        const auto blk = load_unaligned<BlockQ8_0>(cpu.data() + b * sizeof(BlockQ8_0));
        ASSERT_EQ(scales[size_t(b)], f16_to_f32(blk.d)) << "block " << b;
        ASSERT_EQ(0, std::memcmp(qs.data() + b * 32, blk.qs, 32)) << "block " << b;
      } else {
        const auto blk = load_unaligned<BlockQ8_K>(cpu.data() + b * sizeof(BlockQ8_K));
        ASSERT_EQ(scales[size_t(b)], blk.d) << "block " << b;
        ASSERT_EQ(0, std::memcmp(qs.data() + b * 256, blk.qs, 256)) << "block " << b;
        const auto sums = download(a.sums + b * 16, 16);
        for (int j = 0; j < 16; ++j) ASSERT_EQ(sums[size_t(j)], blk.bsums[j]) << "block " << b << " sum " << j;
      }
    }
  }
}

TEST(CudaMatvec, EveryFormatMatchesTheCpuKernels) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  for (GgmlType type : test::weight_types()) {
    for (int64_t cols : gpu_test_cols(type)) {
      for (int64_t rows : {1, 37, 3001}) {
        for (int n_tok : {1, 3, cuda::kMaxMatvecTokens}) {
          if (rows > 37 && n_tok > 1 && cols > 300) continue;  // the big ones once
          SCOPED_TRACE(fmt::format("{} {}x{} tokens={}", type_name(type), rows, cols, n_tok));
          const auto w = test::quantize(type, test::random_floats(rng, size_t(rows * cols), 0.05f), rows, cols);
          const auto x = awkward_activations(rng, n_tok * cols);
          std::vector<float> gpu(static_cast<size_t>(n_tok * rows)), cpu(gpu.size());
          cuda::matvec_on_gpu(type, w, rows, cols, x, n_tok, gpu);
          matmul(WeightView::packed(type, rows, cols, w.data()), x, n_tok, cpu, pool);
          // Float rounding of a k-term sum in two orders stays far below 1e-5 of sum |w x|.
          const auto wf = test::dequantize(type, w, rows, cols);
          for (int t = 0; t < n_tok; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              double magnitude = 0;
              for (int64_t i = 0; i < cols; ++i) magnitude += std::fabs(double(wf[size_t(r * cols + i)]) * x[size_t(t * cols + i)]);
              ASSERT_NEAR(gpu[size_t(t * rows + r)], cpu[size_t(t * rows + r)], 1e-5 * magnitude + 1e-30)
                  << "token " << t << " row " << r;
            }
          }
        }
      }
    }
  }
}

// A decode product of a matrix of more than 4096 rows (a warp a row, no split): every layout the
// engine uploads (Q8_0 as it is and split, a K-quant, f16), a row count that leaves the last
// block one row, and the residual add (y += W x) as well as y = W x.
TEST(CudaMatvec, TallMatricesMatchTheCpuWithAndWithoutTheResidual) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  const int64_t rows = 4096 + 8 * 3 + 1, cols = 512;
  struct Case {
    GgmlType type;
    cuda::GpuLayout layout;
  };
  for (const Case c : {Case{GgmlType::Q8_0, cuda::GpuLayout::Gguf}, Case{GgmlType::Q8_0, cuda::GpuLayout::Q8_0Split},
                       Case{GgmlType::Q4_K, cuda::GpuLayout::Gguf}, Case{GgmlType::F16, cuda::GpuLayout::Gguf}}) {
    for (const bool accumulate : {false, true}) {
      const bool split = c.layout == cuda::GpuLayout::Q8_0Split;
      SCOPED_TRACE(fmt::format("{}{} accumulate={}", type_name(c.type), split ? " split" : "", accumulate));
      const auto w = test::quantize(c.type, test::random_floats(rng, size_t(rows * cols), 0.05f), rows, cols);
      const auto x = awkward_activations(rng, cols);
      const auto y0 = test::random_floats(rng, size_t(rows));
      const size_t rb = row_bytes(c.type, uint64_t(cols)), stride = split ? cuda::q8_0_split_stride(cols) : rb;
      test::Device<std::byte> dw(w), ds(split ? stride * size_t(rows) : 1);
      test::Device<float> dx(x);
      if (split) MOE_CUDA_CHECK(cuda::relayout_q8_0_split(dw.get(), rb, rows, cols, ds.get(), stride, nullptr));
      test::Device<float> dy(y0);
      cuda::ActivationBuffer activations;
      const auto a = activations.quantize(vec_dot_type(c.type), dx.get(), 1, cols, nullptr);
      cuda::matvec(c.type, split ? static_cast<void*>(ds.get()) : static_cast<void*>(dw.get()), stride, rows, a,
                   dy.get(), nullptr, accumulate, c.layout);
      const auto gpu = dy.host();
      std::vector<float> cpu(static_cast<size_t>(rows));
      matmul(WeightView::packed(c.type, rows, cols, w.data()), x, 1, cpu, pool);
      const auto wf = test::dequantize(c.type, w, rows, cols);
      for (int64_t r = 0; r < rows; ++r) {
        double magnitude = 0;
        for (int64_t i = 0; i < cols; ++i) magnitude += std::fabs(double(wf[size_t(r * cols + i)]) * x[size_t(i)]);
        const float want = accumulate ? y0[size_t(r)] + cpu[size_t(r)] : cpu[size_t(r)];
        ASSERT_NEAR(gpu[size_t(r)], want, 1e-5 * magnitude + 1e-6 * std::fabs(want) + 1e-30) << "row " << r;
      }
    }
  }
}

TEST(CudaMatvec, RejectsBadShapes) {
  std::vector<std::byte> w(34);
  std::vector<float> x(32), y(1);
  EXPECT_NO_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 32, x, 1, y));
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 32, x, 0, y), Error);  // no tokens
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 32, x, 9, y), Error);  // too many
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 1, 33, x, 1, y), Error);  // not whole blocks
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q4_1, w, 1, 32, x, 1, y), Error);  // no kernel
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::Q8_0, w, 2, 32, x, 1, y), Error);  // sizes disagree
  std::vector<std::byte> f(4 * 12);
  std::vector<float> x12(12), y1(1);
  EXPECT_THROW(cuda::matvec_on_gpu(GgmlType::F32, f, 1, 12, x12, 1, y1), Error);  // not a multiple of 8
  // Activations of the wrong kind for the weights.
  cuda::DeviceBuffer dw(34), dx(32 * sizeof(float)), dy(sizeof(float));
  cuda::ActivationBuffer buffer;
  const auto k_acts = buffer.quantize(GgmlType::F32, dx.as<float>(), 1, 32, nullptr);
  EXPECT_THROW(cuda::matvec(GgmlType::Q8_0, dw.get(), 34, 1, k_acts, dy.as<float>(), nullptr), Error);
  EXPECT_THROW(buffer.quantize(GgmlType::Q8_K, dx.as<float>(), 1, 32, nullptr), Error);  // not whole Q8_K blocks
}

}  // namespace
}  // namespace moe

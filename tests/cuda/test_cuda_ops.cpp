// The GPU's small ops and expert products against their CPU references (models/blocks.cpp,
// ops/cpu), on fresh random data: RMSNorm, NEOX RoPE (whole and partial), SwiGLU, add, MoE
// routing, the embedding lookup (bit for bit) and the grouped expert products.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "../ops/ops_test_util.h"
#include "core/thread_pool.h"
#include "engine/expert_cache.h"
#include "engine/pcie_balance.h"
#include "models/blocks.h"
#include "ops/cpu/matmul.h"
#include "ops/cpu/quantize.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/handoff.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"
#include "ops/cuda/ops.h"
#include "ops/cuda/prefetch.h"
#include "cuda_test_util.h"

namespace moe {
namespace {

using test::Device;

// A KV cache of rows of kv_dim values as the GPU keeps it in `type` (the bytes the CPU
// engine's cache holds: f32_to_f16, or quantize_row's Q8_0 / Q4_0 blocks), and the values it reads.
struct HostCache {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};
HostCache host_cache(cuda::KvType type, const std::vector<float>& x, int64_t kv_dim) {
  const GgmlType t = type == cuda::KvType::F16 ? GgmlType::F16 : type == cuda::KvType::Q8_0 ? GgmlType::Q8_0 : GgmlType::Q4_0;
  const size_t rows = x.size() / size_t(kv_dim), row = cuda::kv_row_bytes(type, kv_dim);
  EXPECT_EQ(row, row_bytes(t, uint64_t(kv_dim)));  // the GPU's layout is the CPU's
  HostCache c{std::vector<uint8_t>(rows * row), std::vector<float>(x.size())};
  for (size_t r = 0; r < rows; ++r) {
    const std::span<const float> in(x.data() + r * size_t(kv_dim), size_t(kv_dim));
    const std::span<std::byte> out(reinterpret_cast<std::byte*>(c.bytes.data()) + r * row, row);
    quantize_row(t, in, out);
    dequantize_row(t, out, std::span(c.values.data() + r * size_t(kv_dim), size_t(kv_dim)));
  }
  return c;
}
const char* kv_name(cuda::KvType type) {
  return type == cuda::KvType::F16 ? "f16" : type == cuda::KvType::Q8_0 ? "q8_0" : "q4_0";
}
constexpr cuda::KvType kKvTypes[] = {cuda::KvType::F16, cuda::KvType::Q8_0, cuda::KvType::Q4_0};

TEST(CudaOps, RmsNormMatchesTheCpu) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (int width : {64, 2048, 3000}) {
    const int rows = 5;
    auto x = test::random_floats(rng, size_t(rows * width), 3.0f);
    const auto w = test::random_floats(rng, size_t(width));
    std::vector<float> cpu(x.size());
    rms_norm(x, w, 1e-6f, cpu);
    Device<float> dx(x), dw(w);
    MOE_CUDA_CHECK(cuda::rms_norm(dx.get(), dw.get(), 1e-6f, rows, width, dx.get(), nullptr));  // in place
    const auto gpu = dx.host();
    for (size_t i = 0; i < cpu.size(); ++i) ASSERT_NEAR(gpu[i], cpu[i], 1e-6f * std::fabs(cpu[i]) + 1e-30f) << i;
  }
}

TEST(CudaOps, RopeMatchesTheCpu) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int n_tok = 3, n_head = 4, head_dim = 64;
  for (int n_rot : {64, 16}) {
    auto x = test::random_floats(rng, size_t(n_tok * n_head * head_dim));
    const std::vector<int32_t> pos{0, 17, 99999};
    auto cpu = x;
    for (int t = 0; t < n_tok; ++t) {
      for (int h = 0; h < n_head; ++h) {
        rope_neox(std::span(cpu).subspan(size_t((t * n_head + h) * head_dim), size_t(head_dim)), n_rot, pos[size_t(t)],
                  1e6f);
      }
    }
    Device<float> dx(x);
    Device<int32_t> dpos(pos);
    Device<double> freq(cuda::rope_frequencies(n_rot, 1e6f));
    MOE_CUDA_CHECK(cuda::rope_neox(dx.get(), dpos.get(), n_tok, n_head, head_dim, n_rot, freq.get(), nullptr));
    const auto gpu = dx.host();
    for (size_t i = 0; i < cpu.size(); ++i) ASSERT_NEAR(gpu[i], cpu[i], 1e-6f * (std::fabs(cpu[i]) + 1.0f)) << i;
  }
}

TEST(CudaOps, SwigluAndAdd) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const size_t n = 10001;
  const auto g = test::random_floats(rng, n, 4.0f), u = test::random_floats(rng, n);
  Device<float> dg(g), du(u), dh(n);
  MOE_CUDA_CHECK(cuda::swiglu(dg.get(), du.get(), int64_t(n), dh.get(), nullptr));
  MOE_CUDA_CHECK(cuda::add(dg.get(), du.get(), int64_t(n), nullptr));
  const auto h = dh.host(), sum = dg.host();
  for (size_t i = 0; i < n; ++i) {
    const float want = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    ASSERT_NEAR(h[i], want, 1e-6f * std::fabs(want) + 1e-30f) << i;
    ASSERT_EQ(sum[i], g[i] + u[i]) << i;
  }
}

TEST(CudaOps, RoutingMatchesTheCpu) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int n_tok = 17;
  for (int n_expert : {8, 128, 512}) {
    for (int k : {2, 8, 10}) {
      if (k > n_expert) continue;
      // Ties: logits rounded to whole numbers (-0 among them), so that many experts share a
      // logit and the lower id must come first, as on the CPU; near ties: then moved up by 0 to 2
      // ulps, so that many differ by an ulp (their exponentials often round alike).
      enum class Ties { kNone, kWhole, kUlps };
      for (const auto& [renormalize, ties] : {std::pair{true, Ties::kNone}, std::pair{false, Ties::kNone},
                                              std::pair{true, Ties::kWhole}, std::pair{true, Ties::kUlps}}) {
        SCOPED_TRACE(fmt::format("{} experts, top {}, renormalize {}, ties {}", n_expert, k, renormalize, int(ties)));
        auto logits = test::random_floats(rng, size_t(n_tok * n_expert), 2.0f);
        if (ties != Ties::kNone) {
          for (float& v : logits) v = std::round(v);
        }
        if (ties == Ties::kUlps) {
          for (float& v : logits) {
            for (int u = int(rng() % 3); u > 0; --u) v = std::nextafter(v, INFINITY);
          }
        }
        Device<float> dl(logits), dw(size_t(n_tok * k));
        Device<int32_t> de(size_t(n_tok * k));
        MOE_CUDA_CHECK(cuda::route_top_k(dl.get(), n_tok, n_expert, k, renormalize, de.get(), dw.get(), nullptr));
        const auto experts = de.host();
        const auto weights = dw.host();
        for (int t = 0; t < n_tok; ++t) {
          const Route r = route_token(std::span(logits).subspan(size_t(t * n_expert), size_t(n_expert)), k, renormalize);
          for (int i = 0; i < k; ++i) {
            ASSERT_EQ(experts[size_t(t * k + i)], r.experts[size_t(i)]) << "token " << t << " rank " << i;
            ASSERT_NEAR(weights[size_t(t * k + i)], r.weights[size_t(i)], 1e-6f * r.weights[size_t(i)]) << t << " " << i;
          }
        }
      }
    }
  }
  Device<float> dl(size_t(8));
  Device<int32_t> de(size_t(8));
  EXPECT_EQ(cuda::route_top_k(dl.get(), 1, 1024, 2, true, de.get(), dl.get(), nullptr), cudaErrorInvalidValue);
}

TEST(CudaOps, GetRowsIsTheCpuDequantizerBitForBit) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (GgmlType type : test::weight_types()) {
    SCOPED_TRACE(std::string(type_name(type)));
    const int64_t rows = 50, cols = block_size(type) == 256 ? 512 : 96;
    const auto w = test::random_blocks(rng, type, rows, cols);
    const std::vector<int32_t> ids{7, 0, 49, 7, 23};
    Device<std::byte> dw(w);
    Device<int32_t> dids(ids);
    Device<float> out(ids.size() * size_t(cols));
    MOE_CUDA_CHECK(cuda::get_rows(type, dw.get(), row_bytes(type, cols), cols, dids.get(), int(ids.size()), out.get(),
                                  nullptr));
    const auto gpu = out.host();
    const auto all = test::dequantize(type, w, rows, cols);
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_EQ(gpu[i * size_t(cols) + size_t(c)], all[size_t(ids[i] * cols + c)]) << "row " << ids[i] << " col " << c;
      }
    }
  }
}

// Rows not a multiple of any kernel's rows a block (2 or 3 a warp, 4 warps): the last block
// of each expert is part empty.
TEST(CudaOps, ExpertProductsMatchTheCpu) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  ThreadPool pool(2);
  struct Case {
    GgmlType type;
    cuda::GpuLayout layout;
  };
  for (const Case c : {Case{GgmlType::Q8_0, cuda::GpuLayout::Gguf}, Case{GgmlType::Q8_0, cuda::GpuLayout::Q8_0Split},
                       Case{GgmlType::Q4_K, cuda::GpuLayout::Gguf}, Case{GgmlType::Q6_K, cuda::GpuLayout::Gguf},
                       Case{GgmlType::F16, cuda::GpuLayout::Gguf}}) {
    const bool split = c.layout == cuda::GpuLayout::Q8_0Split;
    SCOPED_TRACE(std::string(type_name(c.type)) + (split ? " split" : ""));
    const int n_expert = 6;
    const int64_t rows = 100, cols = 512;
    const auto w = test::quantize(c.type, test::random_floats(rng, size_t(n_expert * rows * cols), 0.05f),
                                  n_expert * rows, cols);
    const std::vector<int32_t> experts{3, 0, 3, 5, 1};
    const int n = int(experts.size());
    const auto x = test::random_floats(rng, size_t(n * cols));
    const size_t rb = row_bytes(c.type, cols), stride = split ? cuda::q8_0_split_stride(cols) : rb;
    Device<std::byte> dw(w), ds{stride * n_expert * rows};
    if (split) MOE_CUDA_CHECK(cuda::relayout_q8_0_split(dw.get(), rb, n_expert * rows, cols, ds.get(), stride, nullptr));
    Device<float> dx(x), dy(size_t(n * rows));
    Device<int32_t> de(experts);
    cuda::ActivationBuffer buffer;
    const auto a = buffer.quantize(vec_dot_type(c.type), dx.get(), n, cols, nullptr);
    cuda::matvec_experts(c.type, split ? ds.get() : dw.get(), stride * rows, stride, rows, a, de.get(), dy.get(),
                         nullptr, 1, c.layout);
    const auto gpu = dy.host();
    for (int j = 0; j < n; ++j) {
      std::vector<float> cpu(static_cast<size_t>(rows));
      const WeightView we = WeightView::packed(c.type, rows, cols, w.data() + size_t(experts[size_t(j)]) * rb * rows);
      matmul(we, std::span(x).subspan(size_t(j * cols), size_t(cols)), 1, cpu, pool);
      double scale = 0;
      for (float v : cpu) scale = std::max(scale, double(std::fabs(v)));
      for (int64_t r = 0; r < rows; ++r) ASSERT_NEAR(gpu[size_t(j * rows + r)], cpu[size_t(r)], 1e-5 * scale) << j << " " << r;
    }
  }
}

// The cache's writes round as the CPU's cache does, byte for byte, also where the rules have
// corners: an all-zero block, two values of the largest magnitude with opposite signs (the first
// sets the sign of Q4_0's scale), values on Q4_0's rounding boundaries, and random rows.
TEST(CudaOps, KvStoresRoundAsTheCpuCache) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int kv_dim = 128, n = 6;
  auto x = test::random_floats(rng, size_t(n * kv_dim), 3.0f);
  std::fill(x.begin(), x.begin() + 32, 0.0f);           // row 0, block 0: zeros
  x[32 + 3] = -2.0f, x[32 + 20] = 2.0f;                  // block 1: a tie, the negative first
  x[64 + 1] = 2.0f, x[64 + 30] = -2.0f;                  // block 2: a tie, the positive first
  for (int j = 0; j < 32; ++j) x[size_t(96 + j)] = 0.25f * float(j - 16);  // block 3: on the boundaries
  x[size_t(96)] = -4.0f;
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) pos[size_t(t)] = t;
  Device<float> dx(x);
  Device<int32_t> dpos(pos);
  for (const cuda::KvType type : kKvTypes) {
    SCOPED_TRACE(kv_name(type));
    const size_t bytes = size_t(n) * cuda::kv_row_bytes(type, kv_dim);
    Device<uint8_t> kc(std::vector<uint8_t>(bytes, 0xAB)), vc(std::vector<uint8_t>(bytes, 0xAB));
    MOE_CUDA_CHECK(cuda::store_kv(dx.get(), dx.get(), n, kv_dim, dpos.get(), type, kc.get(), vc.get(), nullptr));
    const HostCache want = host_cache(type, x, kv_dim);
    EXPECT_EQ(kc.host(), want.bytes);
    EXPECT_EQ(vc.host(), want.bytes);
  }
}

// Causal GQA attention over an f16, Q8_0 or Q4_0 cache against a double-precision softmax, for
// prefills (5 tokens after 300 cached positions; 70 tokens from the start, over several blocks
// and tiles with the causal edge inside them; 19 after 45), each by the tensor-core and the
// CUDA-core kernel, and for one decode token (split over warps, and for long contexts over
// blocks: chunks of 5 positions, and more chunks than positions); head_dim 96 takes the decode
// kernel written for any head_dim, also for the prefill.
TEST(CudaOps, AttentionMatchesADoubleReference) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  struct Case {
    int cached, n, chunks;
    cuda::PrefillKernel kernel = cuda::PrefillKernel::Auto;
  };
  for (const cuda::KvType type : kKvTypes) {
    for (int head_dim : {64, 96, 128, 256}) {
      const int n_head = 8, n_head_kv = 2, kv_dim = n_head_kv * head_dim;
      for (const auto [cached, n, chunks, kernel] :
           {Case{300, 5, 1, cuda::PrefillKernel::TensorCores}, Case{300, 5, 1, cuda::PrefillKernel::CudaCores},
            Case{0, 70, 1, cuda::PrefillKernel::TensorCores}, Case{0, 70, 1, cuda::PrefillKernel::CudaCores},
            Case{45, 19, 1, cuda::PrefillKernel::TensorCores}, Case{300, 1, 1}, Case{300, 1, 60}, Case{300, 1, 64}, Case{2, 1, 7}}) {
        SCOPED_TRACE(fmt::format("{} cache, head_dim {}, {} tokens after {}, {} chunks, {} kernel", kv_name(type),
                                 head_dim, n, cached, chunks,
                                 kernel == cuda::PrefillKernel::CudaCores ? "CUDA-core" : "tensor-core"));
        const int positions = cached + n;
        const auto q = test::random_floats(rng, size_t(n * n_head * head_dim));
        const auto k = test::random_floats(rng, size_t(positions * kv_dim)), v = test::random_floats(rng, size_t(positions * kv_dim));
        std::vector<int32_t> pos(static_cast<size_t>(n));
        for (int t = 0; t < n; ++t) pos[size_t(t)] = cached + t;
        // The reference reads the values the cache holds (rounded to f16, or quantized).
        const HostCache kc = host_cache(type, k, kv_dim), vc = host_cache(type, v, kv_dim);
        const std::vector<float>&kh = kc.values, &vh = vc.values;
        Device<float> dq(q), dout(q.size());
        Device<uint8_t> dk(kc.bytes), dv(vc.bytes);
        Device<int32_t> dpos(pos);
        const float scale = 1.0f / std::sqrt(float(head_dim));
        Device<float> partials{size_t(n_head * chunks * (head_dim + 2))};
        Device<unsigned> counters{std::vector<unsigned>(size_t(n_head), 0u)};
        if (chunks == 1) {
          MOE_CUDA_CHECK(cuda::attend(dq.get(), type, dk.get(), dv.get(), dpos.get(), n, n_head, n_head_kv, head_dim,
                                      scale, dout.get(), nullptr, kernel));
        } else {
          MOE_CUDA_CHECK(cuda::attend_decode({.q = dq.get(), .kv_type = type, .k_cache = dk.get(), .v_cache = dv.get(),
                                              .pos = dpos.get(),
                                              .n = n, .n_head = n_head, .n_head_kv = n_head_kv, .head_dim = head_dim,
                                              .scale = scale, .out = dout.get(), .fresh = {}, .chunks = chunks,
                                              .partials = partials.get(), .counters = counters.get()},
                                             nullptr));
          EXPECT_EQ(counters.host(), std::vector<unsigned>(size_t(n_head), 0u));  // left zero for the next launch
        }
        const auto got = dout.host();
        for (int t = 0; t < n; ++t) {
          for (int h = 0; h < n_head; ++h) {
            const int g = h / (n_head / n_head_kv);
            std::vector<double> w(size_t(pos[size_t(t)] + 1));
            double max = -1e300, sum = 0;
            for (int p = 0; p <= pos[size_t(t)]; ++p) {
              double s = 0;
              for (int i = 0; i < head_dim; ++i) {
                s += double(q[size_t((t * n_head + h) * head_dim + i)]) * double(kh[size_t(p * kv_dim + g * head_dim + i)]);
              }
              w[size_t(p)] = s * scale;
              max = std::max(max, w[size_t(p)]);
            }
            for (auto& x : w) sum += x = std::exp(x - max);
            for (int i = 0; i < head_dim; ++i) {
              double o = 0;
              for (size_t p = 0; p < w.size(); ++p) o += w[p] / sum * double(vh[p * kv_dim + size_t(g * head_dim + i)]);
              ASSERT_NEAR(got[size_t((t * n_head + h) * head_dim + i)], o, 1e-5) << "token " << t << " head " << h << " dim " << i;
            }
          }
        }
      }
    }
  }
}

// The fused kernels give the bits of the ops they fuse.
TEST(CudaOps, FusedNormQuantizeAndHeadKernelsEqualTheirParts) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int n = 3;
  const int64_t d = 512;
  const auto x = test::random_floats(rng, size_t(n * d), 2.0f), w = test::random_floats(rng, size_t(d));
  Device<float> dx(x), dw(w), u1(size_t(n * d)), u2(size_t(n * d));
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_K}) {
    cuda::ActivationBuffer fused, parts;
    const auto a = fused.quantize_normed(type, dx.get(), dw.get(), 1e-6f, n, d, u1.get(), nullptr);
    MOE_CUDA_CHECK(cuda::rms_norm(dx.get(), dw.get(), 1e-6f, n, int(d), u2.get(), nullptr));
    const auto b = parts.quantize(type, u2.get(), n, d, nullptr);
    EXPECT_EQ(u1.host(), u2.host());
    std::vector<int8_t> qa(size_t(n * d)), qb(qa.size());
    MOE_CUDA_CHECK(cudaMemcpy(qa.data(), a.qs, qa.size(), cudaMemcpyDeviceToHost));
    MOE_CUDA_CHECK(cudaMemcpy(qb.data(), b.qs, qb.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(qa, qb) << type_name(type);
  }
  // SwiGLU of [gate | up] rows, quantized in the same launch.
  const int64_t ff = 768;
  const auto gu = test::random_floats(rng, size_t(n * 2 * ff), 2.0f);
  Device<float> dgu(gu), h(size_t(n * ff));
  MOE_CUDA_CHECK(cuda::swiglu_pairs(dgu.get(), n, ff, h.get(), nullptr));
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_K}) {
    cuda::ActivationBuffer fused, parts;
    const auto a = fused.quantize_swiglu(type, dgu.get(), n, ff, nullptr);
    const auto b = parts.quantize(type, h.get(), n, ff, nullptr);
    std::vector<int8_t> qa(size_t(n * ff)), qb(qa.size());
    MOE_CUDA_CHECK(cudaMemcpy(qa.data(), a.qs, qa.size(), cudaMemcpyDeviceToHost));
    MOE_CUDA_CHECK(cudaMemcpy(qb.data(), b.qs, qb.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(qa, qb) << "swiglu " << type_name(type);
  }

  const int n_head = 4, n_head_kv = 2, hd = 128, n_rot = 32;
  const auto q = test::random_floats(rng, size_t(n * n_head * hd)), k = test::random_floats(rng, size_t(n * n_head_kv * hd));
  const auto v = test::random_floats(rng, size_t(n * n_head_kv * hd));
  const auto qn = test::random_floats(rng, size_t(hd)), kn = test::random_floats(rng, size_t(hd));
  const std::vector<int32_t> pos{4, 5, 6};
  Device<float> dv(v), dqn(qn), dkn(kn);
  Device<int32_t> dpos(pos);
  Device<double> freq(cuda::rope_frequencies(n_rot, 1e6f));
  for (const cuda::KvType type : kKvTypes) {
    SCOPED_TRACE(kv_name(type));
    Device<float> q1(q), k1(k), q2(q), k2(k);
    const int64_t kv_dim = n_head_kv * hd;
    const std::vector<uint8_t> zeros(8 * cuda::kv_row_bytes(type, kv_dim), 0);
    Device<uint8_t> kc1(zeros), vc1(zeros), kc2(zeros), vc2(zeros);
    MOE_CUDA_CHECK(cuda::qk_norm_rope_store(q1.get(), k1.get(), dv.get(), dqn.get(), dkn.get(), 1e-6f, dpos.get(), n,
                                            n_head, n_head_kv, hd, n_rot, freq.get(), type, kc1.get(), vc1.get(),
                                            nullptr));
    MOE_CUDA_CHECK(cuda::rms_norm(q2.get(), dqn.get(), 1e-6f, n * n_head, hd, q2.get(), nullptr));
    MOE_CUDA_CHECK(cuda::rms_norm(k2.get(), dkn.get(), 1e-6f, n * n_head_kv, hd, k2.get(), nullptr));
    MOE_CUDA_CHECK(cuda::rope_neox(q2.get(), dpos.get(), n, n_head, hd, n_rot, freq.get(), nullptr));
    MOE_CUDA_CHECK(cuda::rope_neox(k2.get(), dpos.get(), n, n_head_kv, hd, n_rot, freq.get(), nullptr));
    MOE_CUDA_CHECK(cuda::store_kv(k2.get(), dv.get(), n, int(kv_dim), dpos.get(), type, kc2.get(), vc2.get(), nullptr));
    EXPECT_EQ(q1.host(), q2.host());
    EXPECT_EQ(k1.host(), k2.host());
    EXPECT_EQ(kc1.host(), kc2.host());
    EXPECT_EQ(vc1.host(), vc2.host());
    // And the bytes are the CPU cache's: rows 4-6 as the CPU converts the same keys and values.
    const auto keys = k2.host();
    const size_t row = cuda::kv_row_bytes(type, kv_dim);
    const HostCache ck = host_cache(type, keys, kv_dim), cv = host_cache(type, v, kv_dim);
    const auto gk = kc2.host(), gv = vc2.host();
    EXPECT_TRUE(std::equal(ck.bytes.begin(), ck.bytes.end(), gk.begin() + 4 * row));
    EXPECT_TRUE(std::equal(cv.bytes.begin(), cv.bytes.end(), gv.begin() + 4 * row));
  }
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {

// A hand-off for n tokens of k slots, d wide, and `layers` layers' flags, in one pinned buffer
// (zeroed): what CpuExperts lays out, without the class.
struct HostHandoff {
  HostHandoff(int n, int k, int64_t d, int layers)
      : host(2 * size_t(n) * size_t(d) * sizeof(float) + size_t(n) * size_t(k) * 8 +
             3 * size_t(layers) * sizeof(unsigned)) {
    std::memset(host.get(), 0, host.bytes());
    h.u = host.as<float>();
    h.sum = h.u + size_t(n) * size_t(d);
    h.experts = reinterpret_cast<int32_t*>(h.sum + size_t(n) * size_t(d));
    h.weights = reinterpret_cast<float*>(h.experts + n * k);
    h.ready = reinterpret_cast<unsigned*>(h.weights + n * k);
    h.done = h.ready + layers;
    h.waited = h.done + layers;
    std::memset(stamps.get(), 0, stamps.bytes());
    h.times = stamps.as<uint64_t>();
  }
  void clear() {
    std::memset(host.get(), 0, host.bytes());
    std::memset(stamps.get(), 0, stamps.bytes());
  }
  cuda::PinnedBuffer host;
  cuda::PinnedBuffer stamps{size_t(8) * cuda::kHandoffTimes * sizeof(uint64_t)};  // up to 8 layers
  cuda::ExpertHandoff h;
};

// The hybrid hand-off's two kernels on their own (ops/cuda/handoff.h): publish_experts splits
// two tokens' slots between VRAM, PCIe and the CPU and writes the CPU's part to host memory with
// the ready flag; add_cpu_sum waits for the done flag (set here before the launch) and adds the
// CPU's sum to the residual rows.
TEST(CudaOps, HybridHandoffSplitsTheSlotsAndAddsTheCpusSum) {
  const int n = 2, k = 4, n_expert = 8, layer = 1;
  const int64_t d = 12;
  // Experts 0 and 1 in VRAM (slots 0, 1), expert n_expert (a shared one) in slot 2.
  std::vector<int32_t> slot_of(n_expert + 1, -1);
  slot_of[0] = 0, slot_of[1] = 1, slot_of[n_expert] = 2;
  const std::vector<int32_t> routed = {5, 0, 7, 8,   // token 0: RAM, VRAM, RAM, shared
                                       3, 4, 1, 8};  // token 1: RAM, RAM, VRAM, shared
  std::vector<float> weights(n * k), u(size_t(n) * d);
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = 0.1f * float(i + 1);
  for (size_t i = 0; i < u.size(); ++i) u[i] = float(i) - 3.5f;
  test::Device<int32_t> experts(routed), slots(slot_of), ram_ids(size_t(n * k));
  test::Device<float> w(weights), rows(u);
  test::Device<unsigned> counter(std::vector<unsigned>{0});
  HostHandoff handoff(n, k, d, 2);
  cuda::ExpertHandoff& h = handoff.h;
  // One slot a token over PCIe: the token's last one not in VRAM.
  MOE_CUDA_CHECK(cuda::publish_experts(rows.get(), n, d, experts.get(), w.get(), k, slots.get(), h, layer,
                                       counter.get(), nullptr, 1, ram_ids.get()));
  MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(h.ready[layer], 1u);
  EXPECT_EQ(h.ready[0], 0u);
  EXPECT_EQ(experts.host(), (std::vector<int32_t>{-1, 0, -2, 2, -1, -2, 1, 2}));  // -1: CPU, -2: PCIe
  EXPECT_EQ(ram_ids.host(), (std::vector<int32_t>{-2, -2, 7, -2, -2, 4, -2, -2}));
  EXPECT_EQ(std::vector<int32_t>(h.experts, h.experts + n * k), (std::vector<int32_t>{5, -1, -2, -1, 3, -2, -1, -1}));
  EXPECT_EQ(std::vector<float>(h.weights, h.weights + n * k), weights);
  EXPECT_EQ(std::vector<float>(h.u, h.u + n * d), u);
  EXPECT_EQ(counter.host()[0], 0u);
  // The GPU's clock when it raised this layer's flag; nothing for the other layer.
  const uint64_t* t = h.times + cuda::kHandoffTimes * layer;
  EXPECT_GT(t[0], 0u);
  EXPECT_EQ(h.times[0], 0u);

  for (int64_t i = 0; i < n * d; ++i) h.sum[i] = 0.5f * float(i);
  h.done[layer] = 1;
  MOE_CUDA_CHECK(cuda::add_cpu_sum(h, layer, n, d, rows.get(), nullptr));
  const auto x = rows.host();
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], u[i] + 0.5f * float(i)) << i;
  // And when the add began and saw the sum: in that order, after the flag went up.
  MOE_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_GE(t[1], t[0]);
  EXPECT_GE(t[2], t[1]);
}

// add_cpu_sum's threads loop over the values: every value of the residual rows gets its sum,
// whatever the count (a decode token, odd widths, a prefill of many passes of the grid).
TEST(CudaOps, HybridAddReachesEveryValue) {
  for (auto [n, d] : {std::pair<int, int64_t>{1, 7}, {1, 2048}, {3, 2053}, {600, 2048}}) {
    SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(d));
    HostHandoff handoff(n, 1, d, 1);
    cuda::ExpertHandoff& h = handoff.h;
    std::vector<float> x0(size_t(n) * size_t(d));
    for (size_t i = 0; i < x0.size(); ++i) x0[i] = float(i % 1000) - 250.0f, h.sum[i] = 0.25f * float(i % 77);
    test::Device<float> rows(x0);
    h.done[0] = 1;
    MOE_CUDA_CHECK(cuda::add_cpu_sum(h, 0, n, d, rows.get(), nullptr));
    const auto x = rows.host();
    size_t wrong = 0;
    for (size_t i = 0; i < x.size(); ++i) wrong += x[i] != x0[i] + 0.25f * float(i % 77);
    EXPECT_EQ(wrong, 0u);
  }
}

// --pcie-experts auto: the limit is a table of device ints the publish kernel reads when it
// runs (a graph recorded once follows it), by the token's number of misses, and the add marks
// the layers where it waited for the CPU's sum.
TEST(CudaOps, HybridHandoffFollowsTheLimitAndMarksWaits) {
  const int n = 1, k = 4, n_expert = 8, layer = 0;
  const int64_t d = 8;
  std::vector<int32_t> slot_of(n_expert + 1, -1);
  slot_of[0] = 0;
  const std::vector<int32_t> routed = {5, 0, 7, 3};  // three in RAM
  const std::vector<float> weights = {0.4f, 0.3f, 0.2f, 0.1f};
  std::vector<float> u(static_cast<size_t>(d));
  for (size_t i = 0; i < u.size(); ++i) u[i] = float(i) + 0.25f;
  HostHandoff handoff(n, k, d, 1);
  cuda::ExpertHandoff& h = handoff.h;
  test::Device<float> w(weights);
  test::Device<unsigned> counter(std::vector<unsigned>{0});
  // pcie_slots 3: a table's entries lower it, never raise it; a share of the misses takes entry 3
  // (7/20 of 3 rounds to 1).
  const std::vector<std::pair<std::vector<int32_t>, int>> tables = {
      {std::vector<int32_t>(k + 1, 0), 0}, {std::vector<int32_t>(k + 1, 2), 2}, {std::vector<int32_t>(k + 1, 3), 3},
      {std::vector<int32_t>(k + 1, 9), 3}, {PcieBalance(3, 7).table(k), 1}, {{0, 0, 0, 2, 0}, 2}};
  for (const auto& [table, want] : tables) {
    const int limit = table[3];
    handoff.clear();
    test::Device<int32_t> experts(routed), slots(slot_of), ram_ids(size_t(n * k));
    test::Device<int32_t> device_table(table);
    test::Device<float> rows(u);
    MOE_CUDA_CHECK(cuda::publish_experts(rows.get(), n, d, experts.get(), w.get(), k, slots.get(), h, layer,
                                         counter.get(), nullptr, 3, ram_ids.get(), device_table.get()));
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    const int over_pcie = int(std::count(h.experts, h.experts + n * k, -2));
    EXPECT_EQ(over_pcie, want) << limit;
    EXPECT_EQ(int(std::count_if(h.experts, h.experts + n * k, [](int32_t e) { return e >= 0; })), 3 - over_pcie);

    // The CPU's sum there before the add runs: no wait marked.
    for (int64_t i = 0; i < n * d; ++i) h.sum[i] = 1.0f;
    h.done[layer] = 1;
    MOE_CUDA_CHECK(cuda::add_cpu_sum(h, layer, n, d, rows.get(), nullptr));
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(h.waited[layer], 0u);
    // The add launched first, the sum raised later: the wait is marked, the sum still added.
    h.done[layer] = 0;
    MOE_CUDA_CHECK(cuda::add_cpu_sum(h, layer, n, d, rows.get(), nullptr));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::atomic_ref<unsigned>(h.done[layer]).store(1, std::memory_order_release);
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(h.waited[layer], 1u);
    // Its clock saw the wait: the sum came 20 ms after the add began (less a little, at most
    // the launch's own time before it ran).
    const uint64_t* t = h.times + cuda::kHandoffTimes * layer;
    EXPECT_GT(t[2] - t[1], uint64_t(10'000'000));
    const auto x = rows.host();
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], u[i] + 2.0f) << i;
  }
}

// The MoE combine that adds the hybrid's CPU sum itself (CombineRows::cpu) gives the bits of
// add_cpu_sum() and then the combine with the next norm: x, the normed rows and their
// quantization; with the sum raised before the launch, and 20 ms after it (the wait marked,
// the clock stamped, the sum still added).
TEST(CudaOps, CombineAddsTheCpusSumWithTheBitsOfTheAdd) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int64_t d = 2048;
  const int k = 11, layer = 1;
  for (int n : {1, 3}) {
    for (bool late : {false, true}) {
      SCOPED_TRACE(fmt::format("{} tokens, sum raised {}", n, late ? "late" : "first"));
      HostHandoff handoff(n, k, d, 2);
      cuda::ExpertHandoff& h = handoff.h;
      const auto cpu_sum = test::random_floats(rng, size_t(n * d), 2.0f);
      std::copy(cpu_sum.begin(), cpu_sum.end(), h.sum);
      const auto rows = test::random_floats(rng, size_t(n * k * d)), weights = test::random_floats(rng, size_t(n * k));
      const auto x = test::random_floats(rng, size_t(n * d), 3.0f), norm = test::random_floats(rng, size_t(d));
      test::Device<float> drows(rows), dweights(weights), x1(x), x2(x), dnorm(norm);
      test::Device<float> u1{size_t(n * d)}, u2{size_t(n * d)};
      cuda::CombineRows c{.rows = drows.get(), .weights = dweights.get(), .k = k};
      h.done[layer] = 1;
      MOE_CUDA_CHECK(cuda::add_cpu_sum(h, layer, n, d, x1.get(), nullptr));
      cuda::ActivationBuffer parts, fused;
      const auto expected = parts.combine_quantize_normed(GgmlType::Q8_0, c, x1.get(), dnorm.get(), 1e-6f, n, d,
                                                          u1.get(), nullptr);
      MOE_CUDA_CHECK(cudaDeviceSynchronize());
      handoff.clear();
      std::copy(cpu_sum.begin(), cpu_sum.end(), h.sum);
      h.done[layer] = late ? 0 : 1;
      c.cpu = h, c.cpu_layer = layer;
      const auto got = fused.combine_quantize_normed(GgmlType::Q8_0, c, x2.get(), dnorm.get(), 1e-6f, n, d, u2.get(),
                                                     nullptr);
      if (late) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::atomic_ref<unsigned>(h.done[layer]).store(1, std::memory_order_release);
      }
      MOE_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_EQ(x2.host(), x1.host());
      EXPECT_EQ(u2.host(), u1.host());
      EXPECT_TRUE(test::download(got) == test::download(expected));
      EXPECT_EQ(h.waited[layer], late ? 1u : 0u);
      const uint64_t* t = h.times + cuda::kHandoffTimes * layer;
      EXPECT_GT(t[1], 0u);
      if (late) {
        EXPECT_GT(t[2] - t[1], uint64_t(10'000'000));
      }
    }
  }
}

// The expert cache's decisions on the GPU (publish_experts with ExpertSlots) are the host
// model's (engine/expert_cache.h), pick by pick, over many steps of random routing with a
// shared expert and a PCIe limit that changes: the slots the products read, what goes to the
// CPU and over PCIe, the expert -> slot table and the slots' experts.
TEST(CudaOps, TheExpertCacheDecidesAsItsHostModel) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int n_expert = 40, n_slots = 9, k_routed = 5, k = k_routed + 1;  // + a shared expert
  const int64_t d = 8;
  ExpertCache model(n_expert, n_slots);
  std::vector<int32_t> slot_of(n_expert + 1, -1), state(2 * n_slots + 1, 0);
  for (int s = 0; s < n_slots; ++s) slot_of[size_t(s)] = s, state[size_t(s)] = s;
  slot_of[n_expert] = n_slots;  // the shared expert's slot, past the routed ones
  test::Device<int32_t> slots(slot_of), cache_state(state);
  int32_t* p = cache_state.get();
  const cuda::ExpertSlots cache{.expert_of = p, .stamp = reinterpret_cast<uint32_t*>(p + n_slots),
                                .tick = reinterpret_cast<uint32_t*>(p + 2 * n_slots), .n_slots = n_slots};
  test::Device<unsigned> counter(std::vector<unsigned>{0});
  const std::vector<float> u(size_t(8 * d), 1.0f);
  test::Device<float> rows(u);
  for (int step = 0; step < 300; ++step) {
    const int n = 1 + int(rng() % 8), limit = int(rng() % 4);
    // A fixed count, or a share of each token's misses (the table the balance writes).
    const std::vector<int32_t> table =
        step % 2 == 0 ? fixed_pcie_table(limit, k) : PcieBalance(3, int(rng() % (PcieBalance::kSteps + 1))).table(k);
    std::vector<int32_t> routed, routed_only;  // with and without the shared expert (last rank)
    for (int t = 0; t < n; ++t) {
      // Distinct experts a token, mostly from a small set, so that hits and repeats across the
      // step's tokens happen.
      std::vector<int32_t> token;
      while (int(token.size()) < k_routed) {
        const int32_t e = int32_t(rng() % 3 == 0 ? rng() % n_expert : rng() % 14);
        if (std::find(token.begin(), token.end(), e) == token.end()) token.push_back(e);
      }
      routed_only.insert(routed_only.end(), token.begin(), token.end());
      routed.insert(routed.end(), token.begin(), token.end());
      routed.push_back(n_expert);
    }
    std::vector<float> weights(routed.size(), 0.5f);
    HostHandoff handoff(n, k, d, 1);
    test::Device<int32_t> experts(routed), ram_ids(routed.size()), device_table(table);
    test::Device<float> w(weights);
    MOE_CUDA_CHECK(cuda::publish_experts(rows.get(), n, d, experts.get(), w.get(), k, slots.get(), handoff.h, 0,
                                         counter.get(), nullptr, 3, ram_ids.get(), device_table.get(), &cache));
    const auto got = experts.host(), got_ram = ram_ids.host();
    // The host model sees the routed experts only: the shared expert is always in its slot (and
    // never a miss: the table's first k_routed + 1 entries are all it reads).
    const ExpertCache::Step want =
        model.step(routed_only, k_routed, std::span<const int32_t>(table).first(size_t(k_routed) + 1));
    for (int t = 0; t < n; ++t) {
      for (int r = 0; r < k; ++r) {
        const size_t i = size_t(t * k + r);
        SCOPED_TRACE(fmt::format("step {} token {} rank {}", step, t, r));
        if (r == k_routed) {
          ASSERT_EQ(got[i], n_slots);
          ASSERT_EQ(handoff.h.experts[i], -1);
          continue;
        }
        const size_t j = size_t(t * k_routed + r);
        ASSERT_EQ(got[i], want.slot[j] >= 0 ? want.slot[j] : -1);
        ASSERT_EQ(got_ram[i], want.filled[j] ? routed_only[j] : -2);
        ASSERT_EQ(handoff.h.experts[i], want.filled[j] ? -2 : want.slot[j] >= 0 ? -1 : routed_only[j]);
      }
    }
    const auto slot_table = slots.host(), held = cache_state.host();
    for (int e = 0; e < n_expert; ++e) ASSERT_EQ(slot_table[size_t(e)], model.slot_of(e)) << "expert " << e;
    for (int s = 0; s < n_slots; ++s) ASSERT_EQ(held[size_t(s)], model.expert_in(s)) << "slot " << s;
    ASSERT_EQ(held[size_t(2 * n_slots)], step + 1);  // the tick
  }
}

// The expert cache's copies (fill_expert_slots): experts' rows from pinned host memory into
// VRAM slots, Q8_0 split (bytes as relayout_q8_0_split leaves them) or as they are, with
// 16-byte rows and with rows 4-byte aligned only (Q6_K's at 512 columns: 420 bytes); entries
// with no expert copy nothing, and nothing outside the chosen slots is touched.
TEST(CudaOps, ExpertFillsCopyTheRowsIntoTheirSlots) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int n_expert = 6, n_slots = 4;
  const int64_t rows = 137, cols = 256;  // rows over several blocks' chunks (16 KiB a block)
  struct Case {
    cuda::GpuLayout layout;
    size_t src_row;
  };
  for (const Case c : {Case{cuda::GpuLayout::Q8_0Split, size_t(cols / 32 * 34)}, Case{cuda::GpuLayout::Gguf, 272},
                       Case{cuda::GpuLayout::Gguf, 420}}) {
    SCOPED_TRACE(fmt::format("{} rows of {} bytes", c.layout == cuda::GpuLayout::Gguf ? "gguf" : "split", c.src_row));
    const size_t src_row = c.src_row, src_expert = src_row * size_t(rows);
    cuda::PinnedBuffer ram(src_expert * n_expert);
    auto* bytes = ram.as<uint8_t>();
    for (size_t i = 0; i < ram.bytes(); ++i) bytes[i] = uint8_t(rng());
    const size_t dst_row = c.layout == cuda::GpuLayout::Gguf ? src_row : cuda::q8_0_split_stride(cols) + 16;
    const size_t dst_expert = dst_row * size_t(rows) + 64;
    std::vector<uint8_t> before(dst_expert * n_slots);
    for (auto& b : before) b = uint8_t(rng());
    test::Device<uint8_t> vram(before);
    cuda::ExpertRows m[cuda::kMaxExpertMatrices];
    m[0] = {.src = bytes, .src_expert_stride = src_expert, .src_row_stride = src_row, .dst = vram.get(),
            .dst_expert_stride = dst_expert, .dst_row_stride = dst_row, .rows = rows, .cols = cols,
            .dst_layout = c.layout};
    // Three entries: expert 4 into slot 2, nothing, expert 1 into slot 0.
    test::Device<int32_t> ids(std::vector<int32_t>{4, -2, 1}), to(std::vector<int32_t>{2, 3, 0});
    MOE_CUDA_CHECK(cuda::fill_expert_slots(m, 1, ids.get(), to.get(), 3, nullptr));
    // The expected slots: the same rows relaid by the upload's kernel, or copied.
    std::vector<uint8_t> want = before;
    for (const auto& [e, slot] : {std::pair{4, 2}, std::pair{1, 0}}) {
      const uint8_t* from = bytes + size_t(e) * src_expert;
      if (c.layout == cuda::GpuLayout::Gguf) {
        std::copy(from, from + src_expert, want.begin() + ptrdiff_t(size_t(slot) * dst_expert));
      } else {
        test::Device<uint8_t> src(std::vector<uint8_t>(from, from + src_expert));
        test::Device<uint8_t> dst(std::vector<uint8_t>(want.begin() + ptrdiff_t(size_t(slot) * dst_expert),
                                                       want.begin() + ptrdiff_t(size_t(slot + 1) * dst_expert)));
        MOE_CUDA_CHECK(cuda::relayout_q8_0_split(src.get(), src_row, rows, cols, dst.get(), dst_row, nullptr));
        const auto relaid = dst.host();
        std::copy(relaid.begin(), relaid.end(), want.begin() + ptrdiff_t(size_t(slot) * dst_expert));
      }
    }
    EXPECT_EQ(vram.host(), want);
    // Rows not 4-byte aligned are refused, not copied wrongly.
    m[0].src_row_stride = src_row + 2;
    EXPECT_EQ(cuda::fill_expert_slots(m, 1, ids.get(), to.get(), 3, nullptr), cudaErrorInvalidValue);
  }
}

// prefetch_l2 is a hint: requests running on another stream while this one copies new values
// into the same bytes (unaligned ends included) leave exactly those values; more ranges than it
// takes are refused; empty and null ranges are skipped.
TEST(CudaOps, L2PrefetchIsOnlyAHint) {
  std::mt19937 rng(test::test_seed());
  const size_t n = (3u << 20) + 7;  // 12 MB of floats and an odd tail
  const auto before = test::random_floats(rng, n), after = test::random_floats(rng, n);
  test::Device<float> d(before), source(after);
  cudaStream_t side = nullptr;
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  const auto* bytes = reinterpret_cast<const char*>(d.get());
  const std::vector<cuda::L2Range> ranges{{bytes + 3, n * 4 - 5}, {nullptr, 1 << 20}, {bytes + 100, 9}, {bytes, 0}};
  auto requests = [&] {
    for (int i = 0; i < 8; ++i) EXPECT_EQ(cuda::prefetch_l2(ranges, side), cudaSuccess);
  };
  requests();
  MOE_CUDA_CHECK(cudaMemcpyAsync(d.get(), source.get(), n * 4, cudaMemcpyDeviceToDevice, nullptr));
  requests();
  EXPECT_EQ(d.host(), after);
  const std::vector<cuda::L2Range> too_many(cuda::kMaxL2Ranges + 1, cuda::L2Range{bytes, 1024});
  EXPECT_EQ(cuda::prefetch_l2(too_many, side), cudaErrorInvalidValue);
  MOE_CUDA_CHECK(cudaStreamSynchronize(side));
  MOE_CUDA_CHECK(cudaStreamDestroy(side));
}

}  // namespace
}  // namespace moe

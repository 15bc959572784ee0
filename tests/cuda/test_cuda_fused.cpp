// The decode step's fused launches give the bits of the launches they replace, on fresh random
// data and odd sizes: the router product that routes in its last block, the MoE block's norm
// with the router's product and routing, the experts' down products with their SwiGLU,
// attention with its gate and quantization, and the MoE combine with the next block's norm.
// Bit equality (not a tolerance): a fused kernel does the same arithmetic in the same order, so
// any difference is a bug.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <cuda_fp16.h>
#include <fmt/format.h>

#include "../ops/ops_test_util.h"
#include "core/error.h"
#include "ops/cpu/vec_dot.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"
#include "ops/cuda/norm_route.h"
#include "ops/cuda/ops.h"
#include "cuda_test_util.h"

namespace moe {
namespace {

using test::Device;
using test::download;

TEST(CudaFused, RouterProductRoutesInItsLastBlock) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int64_t cols = 2048;
  Device<unsigned> counter{std::vector<unsigned>{0}};
  for (GgmlType type : {GgmlType::F32, GgmlType::Q8_0}) {
    for (int n_expert : {60, 128, 512}) {
      for (bool shared : {false, true}) {
        const int k = n_expert == 60 ? 4 : n_expert == 128 ? 8 : 10, rows = n_expert + (shared ? 1 : 0);
        const int width = k + (shared ? 1 : 0);
        SCOPED_TRACE(fmt::format("{} router, {} experts, top {}, shared {}", type_name(type), n_expert, k, shared));
        const auto w = test::quantize(type, test::random_floats(rng, size_t(rows * cols), 0.05f), rows, cols);
        const auto x = test::random_floats(rng, size_t(cols));
        Device<std::byte> dw(w);
        Device<float> dx(x), y1{size_t(rows)}, y2{size_t(rows)}, w1{size_t(width)}, w2{size_t(width)};
        Device<int32_t> e1{size_t(width)}, e2{size_t(width)};
        cuda::ActivationBuffer buffer;
        const auto a = buffer.quantize(vec_dot_type(type), dx.get(), 1, cols, nullptr);
        const size_t rb = row_bytes(type, cols);
        cuda::matvec(type, dw.get(), rb, rows, a, y1.get(), nullptr);
        MOE_CUDA_CHECK(cuda::route_top_k(y1.get(), 1, n_expert, k, true, e1.get(), w1.get(), nullptr, rows,
                                         shared ? n_expert : -1));
        for (int launch = 0; launch < 2; ++launch) {  // the second finds the counter back at zero
          const cuda::RouteTarget route{.n_expert = n_expert, .k = k, .renormalize = true,
                                  .shared_expert = shared ? n_expert : -1, .experts = e2.get(), .weights = w2.get(),
                                  .counter = counter.get()};
          MOE_CUDA_CHECK(cudaMemset(e2.get(), 0xFF, size_t(width) * 4));
          cuda::matvec_route(type, dw.get(), rb, rows, a, y2.get(), route, nullptr);
          EXPECT_EQ(y2.host(), y1.host()) << "launch " << launch;
          EXPECT_EQ(e2.host(), e1.host()) << "launch " << launch;
          EXPECT_EQ(w2.host(), w1.host()) << "launch " << launch;
          EXPECT_EQ(counter.host()[0], 0u);
        }
      }
    }
  }
  cuda::ActivationBuffer buffer;
  Device<float> dx{size_t(2 * cols)}, y{size_t(8)};
  const auto two = buffer.quantize(GgmlType::Q8_0, dx.get(), 2, cols, nullptr);
  const cuda::RouteTarget route{.n_expert = 8, .k = 2, .counter = counter.get()};
  EXPECT_THROW(cuda::matvec_route(GgmlType::Q8_0, nullptr, row_bytes(GgmlType::Q8_0, cols), 8, two, y.get(), route,
                                  nullptr),
               Error);  // one token only
}

TEST(CudaFused, NormRouteHasTheBitsOfTheNormAndTheRoutedProduct) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  Device<unsigned> counter{std::vector<unsigned>{0}};
  struct Case {
    int n_expert, k;
    bool shared;
    int64_t cols;
    GgmlType type;  // of the quantized normed row
  };
  // Qwen3-Next's and Qwen3-30B's shapes, Q8_K rows, rows that end inside a block of four, the
  // widest row the kernel takes.
  for (const Case c : {Case{512, 10, true, 2048, GgmlType::Q8_0}, Case{128, 8, false, 2048, GgmlType::Q8_K},
                       Case{60, 4, true, 768, GgmlType::Q8_K}, Case{8, 2, false, 96, GgmlType::Q8_0},
                       Case{33, 3, false, 8192, GgmlType::Q8_0}}) {
    const int rows = c.n_expert + (c.shared ? 1 : 0), width = c.k + (c.shared ? 1 : 0);
    SCOPED_TRACE(fmt::format("{} experts, top {}, shared {}, {} columns, {}", c.n_expert, c.k, c.shared, c.cols,
                             type_name(c.type)));
    const auto router = test::random_floats(rng, size_t(rows) * size_t(c.cols), 0.05f);
    const auto x = test::random_floats(rng, size_t(c.cols), 3.0f), norm = test::random_floats(rng, size_t(c.cols));
    Device<float> drouter(router), dx(x), dnorm(norm), u1{size_t(c.cols)}, u2{size_t(c.cols)};
    Device<float> y1{size_t(rows)}, y2{size_t(rows)}, w1{size_t(width)}, w2{size_t(width)};
    Device<int32_t> e1{size_t(width)}, e2{size_t(width)};
    auto route = [&](int32_t* e, float* w) {
      return cuda::RouteTarget{.n_expert = c.n_expert, .k = c.k, .renormalize = true,
                               .shared_expert = c.shared ? c.n_expert : -1, .experts = e, .weights = w,
                               .counter = counter.get()};
    };
    const float eps = 1e-6f;
    const size_t stride = size_t(c.cols) * sizeof(float);
    cuda::ActivationBuffer parts, fused;
    const auto expected = parts.quantize_normed(c.type, dx.get(), dnorm.get(), eps, 1, c.cols, u1.get(), nullptr);
    const auto uf = parts.quantize(GgmlType::F32, u1.get(), 1, c.cols, nullptr);
    cuda::matvec_route(GgmlType::F32, drouter.get(), stride, rows, uf, y1.get(), route(e1.get(), w1.get()), nullptr);
    const auto target = fused.target(c.type, 1, c.cols);
    for (int launch = 0; launch < 2; ++launch) {  // the second finds the counter back at zero
      MOE_CUDA_CHECK(cudaMemset(e2.get(), 0xFF, size_t(width) * 4));
      MOE_CUDA_CHECK(cuda::norm_route({.x = dx.get(), .norm = dnorm.get(), .eps = eps, .width = c.cols, .u = u2.get(),
                                       .qs = target.qs, .scales = target.scales, .sums = target.sums,
                                       .k_quant = c.type == GgmlType::Q8_K, .router = drouter.get(),
                                       .row_stride = stride, .rows = rows, .logits = y2.get(),
                                       .route = route(e2.get(), w2.get())},
                                      nullptr));
      EXPECT_EQ(u2.host(), u1.host()) << "launch " << launch;
      EXPECT_TRUE(download(target.view) == download(expected)) << "launch " << launch;
      EXPECT_EQ(y2.host(), y1.host()) << "launch " << launch;
      EXPECT_EQ(e2.host(), e1.host()) << "launch " << launch;
      EXPECT_EQ(w2.host(), w1.host()) << "launch " << launch;
      EXPECT_EQ(counter.host()[0], 0u);
    }
  }
  // What the kernel does not take is refused before any launch.
  const cuda::RouteTarget route{.n_expert = 8, .k = 2, .counter = counter.get()};
  EXPECT_FALSE(cuda::fits_norm_route(1025, 2048, {.n_expert = 512, .k = 10}));  // more rows than a router's
  EXPECT_FALSE(cuda::fits_norm_route(8, 8200, route));                           // wider than shared memory
  EXPECT_FALSE(cuda::fits_norm_route(8, 100, route));                            // not whole 8-value tasks
  EXPECT_FALSE(cuda::fits_norm_route(7, 96, route));                             // fewer rows than experts
  EXPECT_TRUE(cuda::fits_norm_route(8, 96, route));
  EXPECT_EQ(cuda::norm_route({.width = 96, .rows = 8, .route = route}, nullptr), cudaErrorInvalidValue);
}

TEST(CudaFused, SwigluDownProductsEqualTheirParts) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int n_expert = 5, rows = 100;  // not a multiple of the 32 rows a block takes
  // -1: a zero row (the hybrid's CPU computes it); -2: the row left as it is (another launch's).
  const std::vector<int32_t> experts{4, 0, -1, 4, 2, 1, -2, 3, 0, 2, 4};
  const int n = int(experts.size());
  Device<int32_t> de(experts);
  struct Case {
    GgmlType type;
    cuda::GpuLayout layout;
  };
  for (const Case c : {Case{GgmlType::Q8_0, cuda::GpuLayout::Gguf}, Case{GgmlType::Q8_0, cuda::GpuLayout::Q8_0Split},
                       Case{GgmlType::Q4_0, cuda::GpuLayout::Gguf}, Case{GgmlType::Q4_K, cuda::GpuLayout::Gguf},
                       Case{GgmlType::Q6_K, cuda::GpuLayout::Gguf}}) {
    for (int64_t cols : {256, 512, 768, 1280}) {
      if (cols % block_size(c.type) != 0) continue;
      const bool split = c.layout == cuda::GpuLayout::Q8_0Split;
      SCOPED_TRACE(fmt::format("{}{} down, {} columns", type_name(c.type), split ? " split" : "", cols));
      const auto w = test::random_blocks(rng, c.type, int64_t(n_expert) * rows, cols);
      const size_t rb = row_bytes(c.type, cols), stride = split ? cuda::q8_0_split_stride(cols) : rb;
      Device<std::byte> dw(w), ds{stride * n_expert * rows};
      if (split) {
        MOE_CUDA_CHECK(cuda::relayout_q8_0_split(dw.get(), rb, n_expert * rows, cols, ds.get(), stride, nullptr));
      }
      const std::byte* weights = split ? ds.get() : dw.get();
      const auto gu = test::random_floats(rng, size_t(n) * 2 * size_t(cols), 2.0f);
      const auto y0 = test::random_floats(rng, size_t(n * rows));
      Device<float> dgu(gu), y1(y0), y2(y0);
      cuda::ActivationBuffer buffer;
      const auto h = buffer.quantize_swiglu(vec_dot_type(c.type), dgu.get(), n, cols, nullptr);
      cuda::matvec_experts(c.type, weights, stride * rows, stride, rows, h, de.get(), y1.get(), nullptr, 1, c.layout);
      cuda::matvec_experts_swiglu(c.type, weights, stride * rows, stride, rows, dgu.get(), n, cols, de.get(), y2.get(),
                                  nullptr, c.layout);
      ASSERT_EQ(y2.host(), y1.host());
    }
  }
  Device<float> gu{size_t(64)}, y{size_t(64)};
  EXPECT_THROW(cuda::matvec_experts_swiglu(GgmlType::F16, nullptr, 64, 64, 1, gu.get(), 1, 32, de.get(), y.get(),
                                           nullptr),
               Error);  // float weights read f32 activations
}

TEST(CudaFused, DecodeAttentionGatedAndQuantizedEqualsItsParts) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (int head_dim : {64, 96, 128, 256}) {
    for (bool gated : {false, true}) {
      SCOPED_TRACE(fmt::format("head_dim {}, gated {}", head_dim, gated));
      const int n = 2, n_head = 16, n_head_kv = 2, kv_dim = n_head_kv * head_dim, positions = 77;
      const int64_t q_dim = int64_t(n_head) * head_dim;
      const auto q = test::random_floats(rng, size_t(n * q_dim)), gate = test::random_floats(rng, q.size(), 3.0f);
      std::vector<__half> k(size_t(positions * kv_dim)), v(k.size());
      for (auto* cache : {&k, &v}) {
        for (auto& e : *cache) e = __float2half_rn(std::uniform_real_distribution<float>(-1, 1)(rng));
      }
      const std::vector<int32_t> pos{positions - 2, positions - 1};
      Device<float> dq(q), dg(gate), o1{q.size()}, o2{q.size()};
      Device<__half> dk(k), dv(v);
      Device<int32_t> dpos(pos);
      cuda::DecodeAttention a{.q = dq.get(), .k_cache = dk.get(), .v_cache = dv.get(), .pos = dpos.get(), .n = n,
                              .n_head = n_head, .n_head_kv = n_head_kv, .head_dim = head_dim, .scale = 0.125f,
                              .out = o1.get(), .fresh = {}};
      MOE_CUDA_CHECK(cuda::attend_decode(a, nullptr));
      if (gated) MOE_CUDA_CHECK(cuda::sigmoid_mul(o1.get(), dg.get(), int64_t(q.size()), nullptr));
      cuda::ActivationBuffer parts, fused;
      const auto expected = parts.quantize(GgmlType::Q8_0, o1.get(), n, q_dim, nullptr);
      const auto target = fused.target(GgmlType::Q8_0, n, q_dim);
      a.gate = gated ? dg.get() : nullptr, a.out = o2.get(), a.qs = target.qs, a.scales = target.scales;
      MOE_CUDA_CHECK(cuda::attend_decode(a, nullptr));
      EXPECT_EQ(o2.host(), o1.host());
      EXPECT_TRUE(download(target.view) == download(expected));
    }
  }
}

// Decode attention that norms, rotates and stores the token's own query, key and value (one
// launch, one block a head or split over blocks) against qk_norm_rope_store + attend: the same
// output, quantized bytes and caches, f16, Q8_0 or Q4_0 (where the token's key and value are
// rounded to the cache's values before it attends to them, as the parts read them back). The
// gated form reads each query head with its gate after it, as the product leaves them.
TEST(CudaFused, DecodeAttentionWithItsOwnRopeEqualsItsParts) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (const cuda::KvType type : {cuda::KvType::F16, cuda::KvType::Q8_0, cuda::KvType::Q4_0}) {
    for (int head_dim : {64, 96, 128, 256}) {
      for (bool gated : {false, true}) {
        const int n_head = 8, n_head_kv = 2, kv_dim = n_head_kv * head_dim, n_rot = gated ? head_dim / 4 : head_dim;
        for (const auto& [position, chunks] : {std::pair{0, 1}, std::pair{1, 1}, std::pair{40, 1}, std::pair{40, 3},
                                              std::pair{1, 3}}) {
          SCOPED_TRACE(fmt::format("cache type {}, head_dim {}, gated {}, position {}, {} chunks", int(type), head_dim,
                                   gated, position, chunks));
          // Split over blocks (chunks > 1): the same split in both, so the same merge order.
          Device<float> partials{size_t(n_head * chunks * (head_dim + 2))};
          Device<unsigned> counters{std::vector<unsigned>(size_t(n_head), 0u)};
          const int64_t q_dim = int64_t(n_head) * head_dim, q_stride = gated ? 2 * head_dim : head_dim;
          const auto qg = test::random_floats(rng, size_t(n_head * q_stride), 2.0f);
          const auto k = test::random_floats(rng, size_t(kv_dim), 2.0f), v = test::random_floats(rng, size_t(kv_dim));
          const auto qn = test::random_floats(rng, size_t(head_dim)), kn = test::random_floats(rng, size_t(head_dim));
          // Earlier positions: random bytes, made valid values (f16 of [-1, 1), quantized blocks'
          // scales small).
          std::vector<uint8_t> cache(64 * cuda::kv_row_bytes(type, kv_dim));
          if (type == cuda::KvType::F16) {
            for (size_t i = 0; i < cache.size(); i += 2) {
              const __half h = __float2half_rn(std::uniform_real_distribution<float>(-1, 1)(rng));
              std::memcpy(&cache[i], &h, 2);
            }
          } else {
            for (size_t i = 0; i < cache.size(); ++i) cache[i] = uint8_t(rng());
            const size_t block = cuda::kv_row_bytes(type, 32);
            for (size_t b = 0; b < cache.size(); b += block) {
              const __half d = __float2half_rn(std::uniform_real_distribution<float>(0, 0.01f)(rng));
              std::memcpy(&cache[b], &d, 2);
            }
          }
          Device<uint8_t> kc1(cache), vc1(cache), kc2(cache), vc2(cache);
          Device<float> dqg(qg), dk(k), dv(v), dqn(qn), dkn(kn), q{size_t(q_dim)}, gate{size_t(q_dim)};
          Device<float> o1{size_t(q_dim)}, o2{size_t(q_dim)}, k1(k);
          Device<int32_t> dpos(std::vector<int32_t>{position});
          Device<double> freq(cuda::rope_frequencies(n_rot, 1e6f));
          // The parts.
          if (gated) {
            MOE_CUDA_CHECK(cuda::split_gated_heads(dqg.get(), n_head, head_dim, q.get(), gate.get(), nullptr));
          } else {
            MOE_CUDA_CHECK(cudaMemcpy(q.get(), dqg.get(), size_t(q_dim) * 4, cudaMemcpyDeviceToDevice));
          }
          MOE_CUDA_CHECK(cuda::qk_norm_rope_store(q.get(), k1.get(), dv.get(), dqn.get(), dkn.get(), 1e-6f, dpos.get(), 1,
                                                  n_head, n_head_kv, head_dim, n_rot, freq.get(), type, kc1.get(),
                                                  vc1.get(), nullptr));
          cuda::ActivationBuffer parts, fused;
          const auto q8 = parts.target(GgmlType::Q8_0, 1, q_dim);
          MOE_CUDA_CHECK(cuda::attend_decode({.q = q.get(), .kv_type = type, .k_cache = kc1.get(), .v_cache = vc1.get(),
                                              .pos = dpos.get(),
                                              .n = 1, .n_head = n_head, .n_head_kv = n_head_kv, .head_dim = head_dim,
                                              .scale = 0.1f, .gate = gated ? gate.get() : nullptr, .out = o1.get(),
                                              .qs = q8.qs, .scales = q8.scales, .fresh = {}, .chunks = chunks,
                                              .partials = partials.get(), .counters = counters.get()},
                                             nullptr));
          // One launch.
          const auto f8 = fused.target(GgmlType::Q8_0, 1, q_dim);
          MOE_CUDA_CHECK(cuda::attend_decode(
              {.kv_type = type, .k_cache = kc2.get(), .v_cache = vc2.get(), .pos = dpos.get(), .n = 1, .n_head = n_head,
               .n_head_kv = n_head_kv, .head_dim = head_dim, .scale = 0.1f, .gate = gated ? dqg.get() + head_dim : nullptr,
               .gate_stride = q_stride, .out = o2.get(), .qs = f8.qs, .scales = f8.scales,
               .fresh = {.q = dqg.get(), .q_stride = q_stride, .k = dk.get(), .v = dv.get(), .q_norm = dqn.get(),
                         .k_norm = dkn.get(), .eps = 1e-6f, .n_rot = n_rot, .freq = freq.get(), .k_cache = kc2.get(),
                         .v_cache = vc2.get()},
               .chunks = chunks, .partials = partials.get(), .counters = counters.get()},
              nullptr));
          EXPECT_EQ(o2.host(), o1.host());
          EXPECT_TRUE(download(f8.view) == download(q8.view));
          EXPECT_EQ(kc2.host(), kc1.host());
          EXPECT_EQ(vc2.host(), vc1.host());
        }
      }
    }
  }
  Device<float> x{size_t(256)};
  EXPECT_EQ(cuda::attend_decode({.n = 2, .n_head = 2, .n_head_kv = 1, .head_dim = 128, .fresh = {.q = x.get()}}, nullptr),
            cudaErrorInvalidValue);  // one token only
}

TEST(CudaFused, CombineWithTheNextNormEqualsItsParts) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int64_t d = 1024;
  for (int n : {1, 40}) {  // one block of 32 warps a row, and of 4 (the norm kernels' two shapes)
    for (bool shared : {false, true}) {
      for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_K}) {
        SCOPED_TRACE(fmt::format("{} tokens, shared {}, {}", n, shared, type_name(type)));
        const int k = shared ? 11 : 8, logit_stride = 7;
        const auto rows = test::random_floats(rng, size_t(n * k * d)), weights = test::random_floats(rng, size_t(n * k));
        const auto x = test::random_floats(rng, size_t(n * d), 3.0f), norm = test::random_floats(rng, size_t(d));
        const auto shared_out = test::random_floats(rng, size_t(n * d));
        const auto logits = test::random_floats(rng, size_t(n * logit_stride), 4.0f);
        Device<float> drows(rows), dweights(weights), x1(x), x2(x), dnorm(norm), dshared(shared_out), dlogits(logits);
        Device<float> u1{size_t(n * d)}, u2{size_t(n * d)};
        const float* sh = shared ? dshared.get() : nullptr;
        const float* sl = shared ? dlogits.get() + 3 : nullptr;
        MOE_CUDA_CHECK(cuda::combine_experts(drows.get(), dweights.get(), n, k, d, x1.get(), nullptr, true, sh, sl,
                                             logit_stride));
        cuda::ActivationBuffer parts, fused;
        const auto expected = parts.quantize_normed(type, x1.get(), dnorm.get(), 1e-6f, n, d, u1.get(), nullptr);
        const cuda::CombineRows c{.rows = drows.get(), .weights = dweights.get(), .k = k, .shared = sh,
                                  .shared_logit = sl, .logit_stride = logit_stride};
        const auto got = fused.combine_quantize_normed(type, c, x2.get(), dnorm.get(), 1e-6f, n, d, u2.get(), nullptr);
        EXPECT_EQ(x2.host(), x1.host());
        EXPECT_EQ(u2.host(), u1.host());
        EXPECT_TRUE(download(got) == download(expected));
      }
    }
  }
}

}  // namespace
}  // namespace moe

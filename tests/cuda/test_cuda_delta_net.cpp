// Qwen3-Next's GPU ops against the CPU's arithmetic on fresh random data: the delta-net's conv,
// the delta rule (with its L2 norms and gates; the CPU's delta_rule_recurrent is the reference),
// the gated RMSNorm (alone and fused with the quantization), and the gated attention's and shared expert's small ops.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "../ops/ops_test_util.h"
#include "cuda_test_util.h"
#include "models/blocks.h"
#include "models/delta_net.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/delta_net.h"
#include "ops/cuda/ops.h"

namespace moe {
namespace {

using test::Device;

float silu(float x) { return x / (1.0f + std::exp(-x)); }
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, float rel, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size());
  double scale = 0;
  for (float v : cpu) scale = std::max(scale, double(std::fabs(v)));
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_NEAR(gpu[i], cpu[i], rel * (std::fabs(cpu[i]) + 1e-3 * scale)) << what << " at " << i;
  }
}

TEST(CudaDeltaNet, ConvContinuesItsStateAcrossCalls) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  struct Split {
    int K, n, first;  // the tokens of the first call; the rest in a second
  };
  // 7 tokens: a stretch of one token a thread; 77: 32 stretches of 3 (the last of 2 and 1)
  for (const auto [K, n, first] : {Split{2, 7, 4}, Split{4, 7, 4}, Split{4, 77, 70}, Split{3, 40, 39}}) {
    SCOPED_TRACE(fmt::format("K {}, {} tokens, then {}", K, first, n - first));
    const int channels = 300, stride = channels + 13;
    auto x = test::random_floats(rng, size_t(n * stride));
    const auto w = test::random_floats(rng, size_t(channels * K), 0.5f);
    auto state = test::random_floats(rng, size_t(channels * (K - 1)));
    // The CPU loop of delta_net(): taps oldest first, the current token last.
    auto cpu = x;
    auto cpu_state = state;
    for (int c = 0; c < channels; ++c) {
      std::vector<float> hist(cpu_state.begin() + c * (K - 1), cpu_state.begin() + (c + 1) * (K - 1));
      for (int t = 0; t < n; ++t) {
        float& v = cpu[size_t(t * stride + c)];
        float y = 0;
        for (int tap = 0; tap < K - 1; ++tap) y += w[size_t(c * K + tap)] * hist[size_t(tap)];
        y += w[size_t(c * K + K - 1)] * v;
        hist.erase(hist.begin());
        hist.push_back(v);
        v = silu(y);
      }
      std::copy(hist.begin(), hist.end(), cpu_state.begin() + c * (K - 1));
    }
    // The GPU in two calls: the state carries the history over.
    Device<float> dx(x), dw(w), ds(state);
    MOE_CUDA_CHECK(cuda::conv1d_silu(dx.get(), first, channels, stride, dw.get(), K, ds.get(), nullptr));
    MOE_CUDA_CHECK(
        cuda::conv1d_silu(dx.get() + first * stride, n - first, channels, stride, dw.get(), K, ds.get(), nullptr));
    auto gpu = dx.host();
    for (int t = 0; t < n; ++t) {  // the columns past `channels` are not the conv's
      for (int c = channels; c < stride; ++c) ASSERT_EQ(gpu[size_t(t * stride + c)], x[size_t(t * stride + c)]);
    }
    expect_close(gpu, cpu, 1e-5f, "conv output");
    expect_close(ds.host(), cpu_state, 0.0f, "conv state");
  }
}

// The delta rule against the CPU: inputs prepared as delta_net() prepares them, then
// delta_rule_recurrent per value head.
TEST(CudaDeltaNet, DeltaRuleMatchesTheCpuRecurrence) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  struct Shape {
    int nk, nv, dk, dv, n;
  };
  // All tokens but the last in one call (several tokens: inputs prepared first, in place), the
  // last alone (prepared on the fly).
  for (const Shape sh : {Shape{2, 4, 32, 16, 9}, Shape{2, 4, 128, 128, 5}, Shape{1, 2, 256, 64, 3},
                         Shape{4, 8, 128, 32, 41}}) {
    const int key_dim = sh.nk * sh.dk, ch = 2 * key_dim + sh.nv * sh.dv, r = sh.nv / sh.nk, n = sh.n;
    const auto qkv = test::random_floats(rng, size_t(n * ch));
    const auto ba = test::random_floats(rng, size_t(n * 2 * sh.nv), 2.0f);
    auto a = test::random_floats(rng, size_t(sh.nv));
    for (float& v : a) v = -std::exp(v);
    const auto dt_bias = test::random_floats(rng, size_t(sh.nv));
    const auto state = test::random_floats(rng, size_t(sh.nv * sh.dv * sh.dk), 0.1f);
    const float eps = 1e-6f;

    // CPU: normed q (scaled) and k, beta and g per token and value head, then the recurrence.
    std::vector<float> prepared = qkv, beta(size_t(n * sh.nv)), g(size_t(n * sh.nv));
    auto l2 = [&](float* v, int len) {
      double sum = 0;
      for (int i = 0; i < len; ++i) sum += double(v[i]) * v[i];
      const float inv = float(1.0 / std::max(std::sqrt(sum), double(eps)));
      for (int i = 0; i < len; ++i) v[i] *= inv;
    };
    for (int t = 0; t < n; ++t) {
      float* m = prepared.data() + size_t(t * ch);
      for (int h = 0; h < sh.nk; ++h) {
        l2(m + h * sh.dk, sh.dk);
        for (int i = 0; i < sh.dk; ++i) m[h * sh.dk + i] *= 1.0f / std::sqrt(float(sh.dk));
        l2(m + key_dim + h * sh.dk, sh.dk);
      }
      for (int j = 0; j < sh.nv; ++j) {
        const float* blk = ba.data() + size_t(t * 2 * sh.nv + (j / r) * 2 * r);
        const float x = blk[r + j % r] + dt_bias[size_t(j)];
        beta[size_t(t * sh.nv + j)] = sigmoid(blk[j % r]);
        g[size_t(t * sh.nv + j)] = a[size_t(j)] * (x > 20.0f ? x : std::log1p(std::exp(x)));
      }
    }
    auto cpu_state = state;
    std::vector<float> cpu_out(size_t(n * sh.nv * sh.dv));
    for (int j = 0; j < sh.nv; ++j) {
      DeltaRuleArgs args{};
      args.q = prepared.data() + (j / r) * sh.dk;
      args.k = prepared.data() + key_dim + (j / r) * sh.dk;
      args.v = prepared.data() + 2 * key_dim + j * sh.dv;
      args.q_stride = args.k_stride = args.v_stride = size_t(ch);
      args.beta = beta.data() + j;
      args.g = g.data() + j;
      args.gate_stride = size_t(sh.nv);
      args.n = n;
      args.d_k = sh.dk;
      args.d_v = sh.dv;
      args.state = cpu_state.data() + size_t(j * sh.dv * sh.dk);
      args.o = cpu_out.data() + j * sh.dv;
      args.o_stride = size_t(sh.nv * sh.dv);
      delta_rule_recurrent(args);
    }

    Device<float> dqkv(qkv), dba(ba), da(a), ddt(dt_bias), dstate(state), dout{size_t(n * sh.nv * sh.dv)};
    cuda::DeltaRuleBatch b;
    b.qkv = dqkv.get();
    b.qkv_stride = ch;
    b.ba = dba.get();
    b.ba_stride = 2 * sh.nv;
    b.a = da.get();
    b.dt_bias = ddt.get();
    b.n_k_heads = sh.nk;
    b.n_v_heads = sh.nv;
    b.d_k = sh.dk;
    b.d_v = sh.dv;
    b.eps = eps;
    b.state = dstate.get();
    b.out = dout.get();
    b.n = n - 1;
    MOE_CUDA_CHECK(cuda::delta_rule(b, nullptr));
    b.qkv += int64_t(n - 1) * ch;
    b.ba += int64_t(n - 1) * 2 * sh.nv;
    b.out += int64_t(n - 1) * sh.nv * sh.dv;
    b.n = 1;
    MOE_CUDA_CHECK(cuda::delta_rule(b, nullptr));
    expect_close(dout.host(), cpu_out, 2e-4f, "delta rule output");
    expect_close(dstate.host(), cpu_state, 2e-4f, "delta rule state");
  }
}

TEST(CudaDeltaNet, GatedRmsNormMatchesTheCpu) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int rows = 6, width = 128;
  const auto o = test::random_floats(rng, size_t(rows * width), 2.0f);
  const auto z = test::random_floats(rng, size_t(rows * width), 2.0f);
  const auto w = test::random_floats(rng, size_t(width));
  std::vector<float> cpu(o.size());
  for (int r = 0; r < rows; ++r) {
    const auto row = std::span(cpu).subspan(size_t(r * width), size_t(width));
    rms_norm(std::span(o).subspan(size_t(r * width), size_t(width)), w, 1e-6f, row);
    for (int i = 0; i < width; ++i) row[size_t(i)] *= silu(z[size_t(r * width + i)]);
  }
  Device<float> dout(o), dz(z), dw(w);
  MOE_CUDA_CHECK(cuda::gated_rms_norm(dout.get(), dz.get(), dw.get(), 1e-6f, rows, width, dout.get(), nullptr));
  expect_close(dout.host(), cpu, 1e-5f, "gated norm");

  // Fused with the quantization (rows of two heads): the bytes of the two steps.
  Device<float> din(o);
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_K}) {
    cuda::ActivationBuffer fused, parts;
    const auto a = fused.quantize_gated_norm(type, din.get(), dz.get(), dw.get(), 1e-6f, rows / 2, 2 * width, width,
                                             nullptr);
    const auto b = parts.quantize(type, dout.get(), rows / 2, 2 * width, nullptr);
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<int8_t> qa(size_t(rows * width)), qb(qa.size());
    std::vector<float> sa(size_t(rows * width / block_size(type))), sb(sa.size());
    MOE_CUDA_CHECK(cudaMemcpy(qa.data(), a.qs, qa.size(), cudaMemcpyDeviceToHost));
    MOE_CUDA_CHECK(cudaMemcpy(qb.data(), b.qs, qb.size(), cudaMemcpyDeviceToHost));
    MOE_CUDA_CHECK(cudaMemcpy(sa.data(), a.scales, sa.size() * 4, cudaMemcpyDeviceToHost));
    MOE_CUDA_CHECK(cudaMemcpy(sb.data(), b.scales, sb.size() * 4, cudaMemcpyDeviceToHost));
    EXPECT_EQ(qa, qb) << type_name(type);
    EXPECT_EQ(sa, sb) << type_name(type);
  }
}

// A decode step in one launch (delta_net_step) against its three launches (conv1d_silu,
// delta_rule, quantize_gated_norm): the same bytes of activations, state and conv history,
// step after step (the conv history and the state carry over; value heads that share a key
// head share its conv channels).
TEST(CudaDeltaNet, FusedDecodeStepHasTheBytesOfItsThreeLaunches) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  struct Shape {
    int nk, nv, dk, dv, K;
  };
  for (const Shape sh : {Shape{16, 32, 128, 128, 4}, Shape{2, 4, 64, 64, 4}, Shape{3, 3, 256, 96, 2},
                         Shape{1, 4, 32, 32, 8}}) {
    SCOPED_TRACE(fmt::format("{} key heads, {} value heads, d_k {}, d_v {}, K {}", sh.nk, sh.nv, sh.dk, sh.dv, sh.K));
    const int key_dim = sh.nk * sh.dk, vd = sh.nv * sh.dv, ch = 2 * key_dim + vd;
    auto a = test::random_floats(rng, size_t(sh.nv));
    for (float& v : a) v = -std::exp(v);
    Device<float> da(a), ddt(test::random_floats(rng, size_t(sh.nv))), dconv_w(test::random_floats(rng, size_t(ch * sh.K), 0.5f)),
        dnorm(test::random_floats(rng, size_t(sh.dv)));
    const auto conv_state = test::random_floats(rng, size_t(ch * (sh.K - 1)));
    const auto state = test::random_floats(rng, size_t(vd * sh.dk), 0.1f);
    Device<float> conv_fused(conv_state), conv_parts(conv_state), state_fused(state), state_parts(state);
    Device<unsigned> counters(std::vector<unsigned>(size_t(sh.nk), 0u));
    Device<float> o{size_t(vd)};
    cuda::ActivationBuffer fused_out, parts_out;
    const auto target = fused_out.target(GgmlType::Q8_0, 1, vd);
    for (int step = 0; step < 3; ++step) {
      const auto mixed = test::random_floats(rng, size_t(ch)), z = test::random_floats(rng, size_t(vd), 2.0f);
      const auto ba = test::random_floats(rng, size_t(2 * sh.nv), 2.0f);
      Device<float> dmixed(mixed), dz(z), dba(ba), dmixed_parts(mixed), dba_parts(ba);
      MOE_CUDA_CHECK(cuda::delta_net_step({.mixed = dmixed.get(), .z = dz.get(), .ba = dba.get(), .conv_w = dconv_w.get(),
                                           .conv_state = conv_fused.get(), .K = sh.K, .a = da.get(), .dt_bias = ddt.get(),
                                           .n_k_heads = sh.nk, .n_v_heads = sh.nv, .d_k = sh.dk, .d_v = sh.dv,
                                           .eps = 1e-6f, .state = state_fused.get(), .norm_w = dnorm.get(),
                                           .norm_eps = 1e-6f, .counters = counters.get(), .qs = target.qs,
                                           .scales = target.scales},
                                          nullptr));
      MOE_CUDA_CHECK(cuda::conv1d_silu(dmixed_parts.get(), 1, ch, ch, dconv_w.get(), sh.K, conv_parts.get(), nullptr));
      MOE_CUDA_CHECK(cuda::delta_rule({.qkv = dmixed_parts.get(), .qkv_stride = ch, .ba = dba_parts.get(),
                                       .ba_stride = 2 * sh.nv, .a = da.get(), .dt_bias = ddt.get(), .n = 1,
                                       .n_k_heads = sh.nk, .n_v_heads = sh.nv, .d_k = sh.dk, .d_v = sh.dv, .eps = 1e-6f,
                                       .state = state_parts.get(), .out = o.get()},
                                      nullptr));
      const auto parts = parts_out.quantize_gated_norm(GgmlType::Q8_0, o.get(), dz.get(), dnorm.get(), 1e-6f, 1, vd,
                                                       sh.dv, nullptr);
      MOE_CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<int8_t> qa(static_cast<size_t>(vd)), qb(qa.size());
      std::vector<float> sa(size_t(vd / 32)), sb(sa.size());
      MOE_CUDA_CHECK(cudaMemcpy(qa.data(), target.qs, qa.size(), cudaMemcpyDeviceToHost));
      MOE_CUDA_CHECK(cudaMemcpy(qb.data(), parts.qs, qb.size(), cudaMemcpyDeviceToHost));
      MOE_CUDA_CHECK(cudaMemcpy(sa.data(), target.scales, sa.size() * 4, cudaMemcpyDeviceToHost));
      MOE_CUDA_CHECK(cudaMemcpy(sb.data(), parts.scales, sb.size() * 4, cudaMemcpyDeviceToHost));
      ASSERT_EQ(qa, qb) << "step " << step;
      ASSERT_EQ(sa, sb) << "step " << step;
      ASSERT_EQ(state_fused.host(), state_parts.host()) << "step " << step;
      ASSERT_EQ(conv_fused.host(), conv_parts.host()) << "step " << step;
      ASSERT_EQ(dmixed.host(), mixed) << "the in-projection's output is read, not written";
      ASSERT_EQ(counters.host(), std::vector<unsigned>(size_t(sh.nk), 0u));
    }
  }
  // Shapes it leaves to the three launches: nothing launched, cudaErrorNotSupported.
  EXPECT_EQ(cuda::delta_net_step({.K = 4, .n_k_heads = 2, .n_v_heads = 4, .d_k = 128, .d_v = 256}, nullptr),
            cudaErrorNotSupported);
  EXPECT_EQ(cuda::delta_net_step({.K = 4, .n_k_heads = 2, .n_v_heads = 4, .d_k = 48, .d_v = 64}, nullptr),
            cudaErrorNotSupported);
}

// The gated attention's split and gate, and the MoE combine with a shared expert.
TEST(CudaDeltaNet, GatedAttentionAndSharedExpertOps) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  const int rows = 5, hd = 64;
  const auto qg = test::random_floats(rng, size_t(rows * 2 * hd));
  Device<float> dqg(qg), dq{size_t(rows * hd)}, dgate{size_t(rows * hd)};
  MOE_CUDA_CHECK(cuda::split_gated_heads(dqg.get(), rows, hd, dq.get(), dgate.get(), nullptr));
  const auto q = dq.host(), gate = dgate.host();
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < hd; ++i) {
      ASSERT_EQ(q[size_t(r * hd + i)], qg[size_t(r * 2 * hd + i)]);
      ASSERT_EQ(gate[size_t(r * hd + i)], qg[size_t(r * 2 * hd + hd + i)]);
    }
  }
  MOE_CUDA_CHECK(cuda::sigmoid_mul(dq.get(), dgate.get(), rows * hd, nullptr));
  std::vector<float> gated(q.size());
  for (size_t i = 0; i < q.size(); ++i) gated[i] = q[i] * sigmoid(gate[i]);
  expect_close(dq.host(), gated, 1e-6f, "sigmoid gate");

  // out = x + (sum_r w_r e_r + sigmoid(s . u) shared), s . u in double.
  const int n = 3, k = 4, width = 96;
  const auto expert_rows = test::random_floats(rng, size_t(n * k * width));
  const auto weights = test::random_floats(rng, size_t(n * k));
  const auto shared = test::random_floats(rng, size_t(n * width));
  const auto u = test::random_floats(rng, size_t(n * width));
  const auto s = test::random_floats(rng, size_t(width), 0.2f);
  const auto x = test::random_floats(rng, size_t(n * width));
  std::vector<float> cpu = x, logit_cpu(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) {
    double dot = 0;
    for (int i = 0; i < width; ++i) dot += double(s[size_t(i)]) * u[size_t(t * width + i)];
    logit_cpu[size_t(t)] = float(dot);
    for (int i = 0; i < width; ++i) {
      float sum = 0;
      for (int rr = 0; rr < k; ++rr) sum += weights[size_t(t * k + rr)] * expert_rows[size_t((t * k + rr) * width + i)];
      sum += sigmoid(float(dot)) * shared[size_t(t * width + i)];
      cpu[size_t(t * width + i)] += sum;
    }
  }
  Device<float> drows(expert_rows), dweights(weights), dshared(shared), du(u), ds(s), dx(x), dlogit{size_t(n)};
  MOE_CUDA_CHECK(cuda::dot_rows(du.get(), ds.get(), n, width, dlogit.get(), nullptr));
  expect_close(dlogit.host(), logit_cpu, 1e-6f, "shared gate logit");
  MOE_CUDA_CHECK(cuda::combine_experts(drows.get(), dweights.get(), n, k, width, dx.get(), nullptr, true, dshared.get(),
                                       dlogit.get()));
  expect_close(dx.host(), cpu, 1e-5f, "combine with the shared expert");
}

}  // namespace
}  // namespace moe

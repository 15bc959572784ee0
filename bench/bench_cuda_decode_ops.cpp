// The decode step's small launches, each timed as the step runs it: 200 launches of one op
// captured in a CUDA graph (programmatic dependent launch between them, as in the engine's
// decode graph), replayed; microseconds a launch, the median of the replays. Qwen3-Next-80B's
// shapes (2048 embedding, 512 experts of which 10 routed plus the shared one, delta-net heads
// of 128 values, 4096 wide), and Qwen3-30B's router. These ops move kilobytes: their time is
// latency, which is what this measures (a decode layer runs ten of them in a chain). Entries
// named "a_then_b" time the pair of launches as the step runs them (microseconds a pair).
// Prints one JSON object.
//   bench_cuda_decode_ops [--reps N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <tuple>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cuda_timing.h"
#include "expert_draws.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/delta_net.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/handoff.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"
#include "ops/cuda/norm_route.h"
#include "ops/cuda/ops.h"

namespace moe {
namespace {

constexpr int kLaunches = 200;
constexpr int64_t kEmbd = 2048, kExperts = 512, kUsed = 10, kDeltaWidth = 4096, kHead = 128;

cuda::DeviceBuffer random_floats(size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> host(n);
  for (auto& v : host) v = dist(rng);
  cuda::DeviceBuffer d(n * sizeof(float));
  MOE_CUDA_CHECK(cudaMemcpy(d.get(), host.data(), d.bytes(), cudaMemcpyHostToDevice));
  return d;
}

// Median microseconds a launch of enqueue(i) over kLaunches launches in one graph.
template <typename Enqueue>
double us_per_launch(cudaStream_t stream, int reps, Enqueue&& enqueue) {
  cudaGraph_t graph = nullptr;
  MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kLaunches; ++i) enqueue(i);
  MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double us = bench::median_us(stream, reps, kLaunches, [&] { MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream)); });
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return us;
}

int run(int reps) {
  cudaStream_t stream;
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::mt19937 rng(7);
  const auto x = random_floats(kDeltaWidth, 1.0f, rng), z = random_floats(kDeltaWidth, 1.0f, rng);
  const auto norm_w = random_floats(kDeltaWidth, 1.0f, rng);
  const auto expert_rows = random_floats((kUsed + 1) * kEmbd, 0.1f, rng);
  const auto expert_weights = random_floats(kUsed + 1, 0.3f, rng);
  cuda::DeviceBuffer out(kDeltaWidth * sizeof(float)), residual(kEmbd * sizeof(float));
  MOE_CUDA_CHECK(cudaMemset(residual.get(), 0, residual.bytes()));
  // The router (512 experts and the shared expert's gate as row 513, f32) in copies filling
  // 64 MiB, beyond the L2 cache: each launch reads its weights from HBM, as a decode step does.
  const int64_t router_rows = kExperts + 1;
  const size_t router_bytes = size_t(router_rows) * kEmbd * sizeof(float);
  const size_t copies = (size_t(64) << 20) / router_bytes;
  const auto router = random_floats(router_bytes / 4 * copies, 0.02f, rng);
  cuda::DeviceBuffer logits(router_rows * sizeof(float)), experts((kUsed + 1) * 4), weights((kUsed + 1) * 4),
      counter(4);
  MOE_CUDA_CHECK(cudaMemset(counter.get(), 0, 4));
  cuda::ActivationBuffer activations;
  const cuda::DeviceActivations fx{.type = GgmlType::F32, .cols = kEmbd, .n_tok = 1, .f32 = x.as<float>()};
  const auto target = activations.target(GgmlType::Q8_0, 1, kDeltaWidth);

  std::vector<std::pair<std::string, double>> results, rates;  // us a launch; GB/s of weights where counted
  auto time = [&](const std::string& name, auto enqueue) {
    results.emplace_back(name, us_per_launch(stream, reps, enqueue));
  };
  time("rms_norm_2048", [&](int) {
    MOE_CUDA_CHECK(cuda::rms_norm(x.as<float>(), norm_w.as<float>(), 1e-6f, 1, int(kEmbd), out.as<float>(), stream));
  });
  time("norm_quantize_2048", [&](int) {
    MOE_CUDA_CHECK(cuda::launch_norm_quantize(x.as<float>(), norm_w.as<float>(), 1e-6f, 1, kEmbd, out.as<float>(),
                                              false, target.qs, target.scales, target.sums, stream));
  });
  time("combine_norm_quantize_2048_k11", [&](int) {
    const cuda::CombineRows c{.rows = expert_rows.as<float>(), .weights = expert_weights.as<float>(), .k = kUsed + 1};
    MOE_CUDA_CHECK(cuda::launch_combine_norm_quantize(c, residual.as<float>(), norm_w.as<float>(), 1e-6f, 1, kEmbd,
                                                      out.as<float>(), false, target.qs, target.scales, target.sums,
                                                      stream));
  });
  time("gated_norm_quantize_4096_h128", [&](int) {
    MOE_CUDA_CHECK(cuda::launch_gated_norm_quantize(x.as<float>(), z.as<float>(), norm_w.as<float>(), 1e-6f, 1,
                                                    kDeltaWidth, int(kHead), false, target.qs, target.scales,
                                                    target.sums, stream));
  });
  // The MoE block's entry: the norm (with its Q8_0 copy) then the router's product that routes,
  // and norm_route's one launch for both, for Qwen3-Next's router (512 experts and the shared
  // expert's gate) and Qwen3-30B's (128 experts, top 8: its first 128 rows). The pair is timed as
  // the step runs it, one after the other (microseconds a pair).
  auto route_to = [&](int n_expert, int k, bool shared) {
    return cuda::RouteTarget{.n_expert = n_expert, .k = k, .renormalize = true,
                             .shared_expert = shared ? n_expert : -1, .experts = experts.as<int32_t>(),
                             .weights = weights.as<float>(), .counter = counter.as<unsigned>()};
  };
  auto router_copy = [&](int i) { return router.as<std::byte>() + size_t(i) % copies * router_bytes; };
  auto norm_quantize = [&] {
    MOE_CUDA_CHECK(cuda::launch_norm_quantize(x.as<float>(), norm_w.as<float>(), 1e-6f, 1, kEmbd, out.as<float>(),
                                              false, target.qs, target.scales, target.sums, stream));
  };
  auto fused = [&](int i, int64_t rows, const cuda::RouteTarget& route) {
    MOE_CUDA_CHECK(cuda::norm_route({.x = x.as<float>(), .norm = norm_w.as<float>(), .eps = 1e-6f, .width = kEmbd,
                                     .u = out.as<float>(), .qs = target.qs, .scales = target.scales,
                                     .sums = target.sums, .router = reinterpret_cast<const float*>(router_copy(i)),
                                     .row_stride = size_t(kEmbd) * 4, .rows = rows, .logits = logits.as<float>(),
                                     .route = route},
                                    stream));
  };
  struct RouterShape {
    const char* name;
    int n_expert, k;
    bool shared;
  };
  for (const RouterShape r :
       {RouterShape{"513x2048", int(kExperts), int(kUsed), true}, RouterShape{"128x2048", 128, 8, false}}) {
    const int64_t rows = r.n_expert + (r.shared ? 1 : 0);
    const cuda::RouteTarget route = route_to(r.n_expert, r.k, r.shared);
    time(fmt::format("router_route_{}_f32", r.name), [&](int i) {
      cuda::matvec_route(GgmlType::F32, router_copy(i), kEmbd * 4, rows, fx, logits.as<float>(), route, stream);
    });
    time(fmt::format("norm_then_router_route_{}_f32", r.name), [&](int i) {
      norm_quantize();
      cuda::matvec_route(GgmlType::F32, router_copy(i), kEmbd * 4, rows, fx, logits.as<float>(), route, stream);
    });
    time(fmt::format("norm_router_route_{}_f32", r.name), [&](int i) { fused(i, rows, route); });
  }
  time("router_product_513x2048_f32", [&](int i) {
    cuda::matvec(GgmlType::F32, router_copy(i), kEmbd * 4, router_rows, fx, logits.as<float>(), stream);
  });
  time("route_top_k_512", [&](int) {
    MOE_CUDA_CHECK(cuda::route_top_k(logits.as<float>(), 1, int(kExperts), int(kUsed), true, experts.as<int32_t>(),
                                     weights.as<float>(), stream, router_rows, int(kExperts)));
  });
  // A delta-net decode step in one launch (80B: 16 key heads, 32 value heads of 128, conv of 4).
  {
    const int nk = 16, nv = 32, dk = 128, dv = 128, K = 4, ch = 2 * nk * dk + nv * dv;
    const auto mixed = random_floats(ch, 1.0f, rng), conv_w = random_floats(size_t(ch) * K, 0.5f, rng);
    const auto conv_state = random_floats(size_t(ch) * (K - 1), 1.0f, rng);
    const auto state = random_floats(size_t(nv) * dv * dk, 0.1f, rng), ba = random_floats(2 * nv, 1.0f, rng);
    const auto a = random_floats(nv, 0.1f, rng), dt = random_floats(nv, 0.1f, rng);
    cuda::DeviceBuffer counters(nk * sizeof(unsigned));
    MOE_CUDA_CHECK(cudaMemset(counters.get(), 0, counters.bytes()));
    time("delta_net_step_80b", [&](int) {
      MOE_CUDA_CHECK(cuda::delta_net_step(
          {.mixed = mixed.as<float>(), .z = z.as<float>(), .ba = ba.as<float>(), .conv_w = conv_w.as<float>(),
           .conv_state = conv_state.as<float>(), .K = K, .a = a.as<float>(), .dt_bias = dt.as<float>(), .n_k_heads = nk,
           .n_v_heads = nv, .d_k = dk, .d_v = dv, .state = state.as<float>(), .norm_w = norm_w.as<float>(),
           .counters = counters.as<unsigned>(), .qs = target.qs, .scales = target.scales},
          stream));
    });
  }
  // The decode step's weight products, Q8_0 in the split layout the engine uploads: the MoE
  // block's gate/up products of 11 experts (10 routed and the shared one; 1024 rows [gate | up]
  // each) and its down products with the SwiGLU in the same launch, each launch drawing its
  // experts at random from 512 (so their bytes come from HBM), then the delta-net's stacked
  // input product and its output projection (accumulating), from copies beyond the L2 cache.
  // GB/s: the weight bytes a launch over its time.
  {
    const int64_t ff = 512, k = kUsed + 1;
    auto split_weights = [&](int64_t rows, int64_t cols, size_t matrices) {
      const size_t stride = cuda::q8_0_split_stride(cols), bytes = stride * size_t(rows);
      // One random matrix (int8 values, f16 scales of 1/64), repeated: the bytes moved count.
      std::vector<uint8_t> one(bytes);
      std::uniform_int_distribution<int> byte(0, 255);
      for (int64_t r = 0; r < rows; ++r) {
        uint8_t* row = one.data() + size_t(r) * stride;
        for (int64_t i = 0; i < cols; ++i) row[i] = uint8_t(byte(rng));
        for (int64_t b = 0; b < cols / 32; ++b) row[cols + 2 * b] = 0x00, row[cols + 2 * b + 1] = 0x24;
      }
      cuda::DeviceBuffer w(bytes * matrices);
      for (size_t m = 0; m < matrices; ++m) {
        MOE_CUDA_CHECK(cudaMemcpy(w.as<uint8_t>() + m * bytes, one.data(), bytes, cudaMemcpyHostToDevice));
      }
      return std::pair{std::move(w), stride};
    };
    auto [gate_up, gu_stride] = split_weights(2 * ff, kEmbd, kExperts);
    auto [down, down_stride] = split_weights(kEmbd, ff, kExperts);
    constexpr int kDraws = 64;
    const std::vector<int32_t> ids = bench::expert_draws(kDraws, int(kExperts), int(k), rng);
    cuda::DeviceBuffer draws(ids.size() * sizeof(int32_t));
    MOE_CUDA_CHECK(cudaMemcpy(draws.get(), ids.data(), draws.bytes(), cudaMemcpyHostToDevice));
    const int32_t* draw = draws.as<int32_t>();
    const auto u = random_floats(kEmbd, 1.0f, rng), gu = random_floats(size_t(k) * 2 * ff, 1.0f, rng);
    cuda::ActivationBuffer product_inputs;  // apart from `target`, which later entries still use
    const auto ua = product_inputs.quantize(GgmlType::Q8_0, u.as<float>(), 1, kEmbd, nullptr);
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    cuda::DeviceBuffer gu_out(size_t(k) * 2 * ff * sizeof(float)), down_out(size_t(k) * kEmbd * sizeof(float));
    const size_t gate_up_bytes = gu_stride * 2 * ff, down_bytes = down_stride * kEmbd;
    auto gate_up_product = [&](int i) {
      cuda::matvec_experts(GgmlType::Q8_0, gate_up.get(), gate_up_bytes, gu_stride, 2 * ff, ua,
                           draw + (i % kDraws) * k, gu_out.as<float>(), stream, int(k), cuda::GpuLayout::Q8_0Split);
    };
    auto down_product = [&](int i) {
      cuda::matvec_experts_swiglu(GgmlType::Q8_0, down.get(), down_bytes, down_stride, kEmbd, gu.as<float>(), int(k),
                                  ff, draw + (i % kDraws) * k, down_out.as<float>(), stream,
                                  cuda::GpuLayout::Q8_0Split);
    };
    auto timed_bytes = [&](const std::string& name, size_t bytes, auto enqueue) {
      time(name, enqueue);
      rates.emplace_back(name, double(bytes) / (results.back().second * 1e3));
    };
    timed_bytes("experts_gate_up_q8_0_1024x2048_k11", gate_up_bytes * k, gate_up_product);
    timed_bytes("experts_swiglu_down_q8_0_2048x512_k11", down_bytes * k, down_product);
    timed_bytes("experts_gate_up_then_down_k11", (gate_up_bytes + down_bytes) * k, [&](int i) {
      gate_up_product(i);
      down_product(i);
    });
    const size_t dense_set = size_t(256) << 20;  // copies of a matrix filling 256 MiB
    for (auto [rows, cols, accumulate] :
         {std::tuple<int64_t, int64_t, bool>{12352, kEmbd, false}, {kEmbd, kDeltaWidth, true}}) {
      const size_t stride = cuda::q8_0_split_stride(cols), bytes = stride * size_t(rows);
      const size_t n_copies = std::max<size_t>(2, dense_set / bytes);
      auto [w, w_stride] = split_weights(rows, cols, n_copies);
      const auto xs = random_floats(size_t(cols), 1.0f, rng);
      const auto xa = product_inputs.quantize(GgmlType::Q8_0, xs.as<float>(), 1, cols, nullptr);
      cuda::DeviceBuffer y(size_t(rows) * sizeof(float));
      MOE_CUDA_CHECK(cudaMemset(y.get(), 0, y.bytes()));
      MOE_CUDA_CHECK(cudaDeviceSynchronize());
      timed_bytes(fmt::format("product_q8_0_{}x{}", rows, cols), bytes, [&](int i) {
        cuda::matvec(GgmlType::Q8_0, w.as<uint8_t>() + size_t(i) % n_copies * bytes, w_stride, rows, xa,
                     y.as<float>(), stream, accumulate, cuda::GpuLayout::Q8_0Split);
      });
    }
  }
  // The hybrid's add of the CPU's sum (its flag already up): 2048 floats read from host memory
  // over PCIe, a round trip a read.
  {
    cuda::PinnedBuffer host(2 * kEmbd * sizeof(float) + 3 * sizeof(unsigned));
    std::memset(host.get(), 0, host.bytes());
    cuda::ExpertHandoff h;
    h.u = host.as<float>();
    h.sum = h.u + kEmbd;
    h.ready = reinterpret_cast<unsigned*>(h.sum + kEmbd);
    h.done = h.ready + 1;
    h.waited = h.done + 1;
    *h.done = 1;
    time("add_cpu_sum_2048", [&](int) {
      MOE_CUDA_CHECK(cuda::add_cpu_sum(h, 0, 1, kEmbd, residual.as<float>(), stream));
    });
    // The same sum added by the combine (+ norm + quantize) itself: against the sum of this
    // and combine_norm_quantize_2048_k11 above, the two launches it replaces.
    time("combine_cpu_sum_norm_quantize_2048_k11", [&](int) {
      const cuda::CombineRows c{.rows = expert_rows.as<float>(), .weights = expert_weights.as<float>(),
                                .k = kUsed + 1, .cpu = h, .cpu_layer = 0};
      MOE_CUDA_CHECK(cuda::launch_combine_norm_quantize(c, residual.as<float>(), norm_w.as<float>(), 1e-6f, 1, kEmbd,
                                                        out.as<float>(), false, target.qs, target.scales,
                                                        target.sums, stream));
    });
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  std::string body;
  for (const auto& [name, us] : results) {
    body += fmt::format("{}\n    \"{}\": {:.2f}", body.empty() ? "" : ",", name, us);
  }
  std::string gbs;
  for (const auto& [name, rate] : rates) gbs += fmt::format("{}\n    \"{}\": {:.1f}", gbs.empty() ? "" : ",", name, rate);
  std::printf("{\n  \"launches_per_graph\": %d,\n  \"us_per_launch\": {%s\n  },\n  \"weight_gb_s\": {%s\n  }\n}\n",
              kLaunches, body.c_str(), gbs.c_str());
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  return moe::bench::guarded("bench_cuda_decode_ops", [&] { return moe::run(moe::bench::reps_option(argc, argv)); });
}

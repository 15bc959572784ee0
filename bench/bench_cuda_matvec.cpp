// GPU decode products (activations already quantized): achieved GB/s of weights per format and shape, against the device's
// measured copy bandwidth (a device-to-device cudaMemcpy reads and writes, so its GB/s
// counts both directions). Weights rotate over copies filling 1 GiB, far beyond the L2 cache,
// so every launch streams from HBM. And the hybrid engine's reads of experts over PCIe from
// pinned host memory: the copy engine's H2D rate, the expert cache's fills into VRAM slots, and
// the expert products reading host memory directly. Prints one JSON object.
//   bench_cuda_matvec [--reps N] [--pcie-only]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "expert_draws.h"
#include "ops/cpu/quantize.h"
#include "ops/cpu/vec_dot.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"

namespace moe {
namespace {

constexpr size_t kWorkingSet = size_t(1) << 30;

struct Timer {
  cudaEvent_t start, stop;
  Timer() {
    MOE_CUDA_CHECK(cudaEventCreate(&start));
    MOE_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  float ms() const {
    float v = 0;
    MOE_CUDA_CHECK(cudaEventElapsedTime(&v, start, stop));
    return v;
  }
};

// Median over reps of GB/s for one call of fn(i) moving `bytes`.
template <typename Fn>
double median_gbs(size_t bytes, int reps, Fn&& fn) {
  Timer t;
  std::vector<double> gbs;
  for (int i = 0; i < 3; ++i) fn(i);  // warm-up
  for (int r = 0; r < reps; ++r) {
    MOE_CUDA_CHECK(cudaEventRecord(t.start));
    constexpr int kCalls = 20;
    for (int i = 0; i < kCalls; ++i) fn(r * kCalls + i);
    MOE_CUDA_CHECK(cudaEventRecord(t.stop));
    MOE_CUDA_CHECK(cudaEventSynchronize(t.stop));
    gbs.push_back(double(bytes) * kCalls / (t.ms() * 1e-3) / 1e9);
  }
  std::sort(gbs.begin(), gbs.end());
  return gbs[gbs.size() / 2];
}

// Qwen3-Next-80B's experts (Q8_0: gate and up 512 x 2048, down 2048 x 512) in pinned host
// memory, n of them a call: copied by the copy engine, filled into VRAM slots (split layout,
// as the expert cache does), or read by the expert products in place (the PCIe experts).
std::string pcie_results(int reps) {
  constexpr int kHostExperts = 64, kSlots = 8;
  constexpr int64_t ff = 512, d = 2048;
  const size_t gate_row = row_bytes(GgmlType::Q8_0, d), down_row = row_bytes(GgmlType::Q8_0, ff);
  const size_t matrix = gate_row * size_t(ff);  // each of the three (down: d rows of down_row)
  const size_t expert = 3 * matrix;
  cuda::PinnedBuffer host(expert * kHostExperts);
  std::mt19937 rng(3);
  for (size_t i = 0; i < host.bytes() / 4; ++i) host.as<uint32_t>()[i] = rng() & 0x3bff3bffu;  // finite f16 scales
  // gate | up | down of expert e at e * expert (the file keeps each matrix's experts together;
  // the bytes read per expert are the same).
  auto at = [&](int m) { return host.as<std::byte>() + size_t(m) * matrix; };
  const size_t gu_row = cuda::q8_0_split_stride(d), dn_row = cuda::q8_0_split_stride(ff);
  cuda::DeviceBuffer gate_up(gu_row * 2 * ff * kSlots), down(dn_row * size_t(d) * kSlots), staging(expert * 4);
  const cuda::ExpertRows rows[cuda::kMaxExpertMatrices] = {
      {.src = at(0), .src_expert_stride = expert, .src_row_stride = gate_row, .dst = gate_up.get(),
       .dst_expert_stride = gu_row * 2 * ff, .dst_row_stride = gu_row, .rows = ff, .cols = d,
       .dst_layout = cuda::GpuLayout::Q8_0Split},
      {.src = at(1), .src_expert_stride = expert, .src_row_stride = gate_row,
       .dst = gate_up.as<std::byte>() + gu_row * ff, .dst_expert_stride = gu_row * 2 * ff, .dst_row_stride = gu_row,
       .rows = ff, .cols = d, .dst_layout = cuda::GpuLayout::Q8_0Split},
      {.src = at(2), .src_expert_stride = expert, .src_row_stride = down_row, .dst = down.get(),
       .dst_expert_stride = dn_row * size_t(d), .dst_row_stride = dn_row, .rows = d, .cols = ff,
       .dst_layout = cuda::GpuLayout::Q8_0Split}};
  cuda::DeviceBuffer x(size_t(d) * 4 * 4), y(size_t(d) * 4 * 4 * 2);
  MOE_CUDA_CHECK(cudaMemset(x.get(), 0, x.bytes()));
  cuda::ActivationBuffer activations, down_activations;  // (a buffer holds one quantization)
  std::string out;
  for (const int n : {1, 2, 4}) {
    // Each call a fresh draw of n experts (cycled through 16 draws), into slots 0..n-1.
    std::vector<int32_t> ids, slots;
    for (int draw = 0; draw < 16; ++draw) {
      for (int i = 0; i < n; ++i) ids.push_back(int32_t((draw * 7 + i * 13) % kHostExperts)), slots.push_back(i);
    }
    cuda::DeviceBuffer dids(ids.size() * 4), dslots(slots.size() * 4);
    MOE_CUDA_CHECK(cudaMemcpy(dids.get(), ids.data(), dids.bytes(), cudaMemcpyHostToDevice));
    MOE_CUDA_CHECK(cudaMemcpy(dslots.get(), slots.data(), dslots.bytes(), cudaMemcpyHostToDevice));
    const auto xa = activations.quantize(GgmlType::Q8_0, x.as<float>(), n, d, nullptr);
    const double copy = median_gbs(expert * size_t(n), reps, [&](int i) {
      const int e = ids[size_t(i % 16 * n)] % (kHostExperts - n);  // n whole experts from there
      MOE_CUDA_CHECK(cudaMemcpyAsync(staging.get(), host.as<std::byte>() + size_t(e) * expert, expert * size_t(n),
                                     cudaMemcpyHostToDevice));
    });
    const double fill = median_gbs(expert * size_t(n), reps, [&](int i) {
      MOE_CUDA_CHECK(cuda::fill_expert_slots(rows, cuda::kMaxExpertMatrices, dids.as<int32_t>() + i % 16 * n,
                                             dslots.as<int32_t>() + i % 16 * n, n, nullptr));
    });
    // The products over PCIe: gate and up from the normed row, down from an f32 row of ff
    // (the engine's down launch fuses the SwiGLU; the bytes read are the same).
    const auto xd = down_activations.quantize(GgmlType::Q8_0, x.as<float>(), n, ff, nullptr);
    const double product = median_gbs(expert * size_t(n), reps, [&](int i) {
      const int32_t* e = dids.as<int32_t>() + i % 16 * n;
      cuda::matvec_experts(GgmlType::Q8_0, at(0), expert, gate_row, ff, xa, e, y.as<float>(), nullptr, 1);
      cuda::matvec_experts(GgmlType::Q8_0, at(1), expert, gate_row, ff, xa, e, y.as<float>(), nullptr, 1);
      cuda::matvec_experts(GgmlType::Q8_0, at(2), expert, down_row, d, xd, e, y.as<float>(), nullptr, 1);
    });
    out += fmt::format("{}\n    {{\"experts\": {}, \"bytes\": {}, \"copy_engine_gb_s\": {:.1f}, \"fill_gb_s\": {:.1f}, "
                       "\"products_gb_s\": {:.1f}}}",
                       out.empty() ? "" : ",", n, expert * size_t(n), copy, fill, product);
  }
  return out;
}

int run(int reps, bool pcie_only) {
  if (pcie_only) {
    std::printf("{\n  \"pcie\": [%s\n  ]\n}\n", pcie_results(reps).c_str());
    return 0;
  }
  cudaDeviceProp prop{};
  MOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  // Copy bandwidth: read + write of 512 MiB.
  const size_t copy_bytes = size_t(512) << 20;
  cuda::DeviceBuffer a(copy_bytes), b(copy_bytes);
  MOE_CUDA_CHECK(cudaMemset(a.get(), 1, copy_bytes));
  const double copy_gbs = median_gbs(2 * copy_bytes, reps, [&](int) {
    MOE_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), copy_bytes, cudaMemcpyDeviceToDevice));
  });
  std::string results;
  const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K,
                            GgmlType::Q6_K, GgmlType::F16,  GgmlType::BF16};
  // Qwen3-Next-80B-A3B decode shapes: an attention/delta-net projection, one expert's gate
  // (512 x 2048) and down (2048 x 512), the delta-net's stacked q|k|v|z|b|a input, and the
  // output head.
  const std::pair<int64_t, int64_t> shapes[] = {{4096, 2048}, {2048, 4096},  {512, 2048},
                                                {2048, 512},  {12352, 2048}, {151936, 2048}};
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (GgmlType type : types) {
    for (auto [rows, cols] : shapes) {
      const size_t rb = row_bytes(type, uint64_t(cols)), bytes = rb * size_t(rows);
      // 256 distinct random rows, repeated: the bytes streamed are what counts here.
      constexpr int64_t kDistinct = 256;
      std::vector<std::byte> host(bytes);
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        if (r < kDistinct) {
          for (auto& v : row) v = dist(rng);
          quantize_row(type, row, std::span(host).subspan(size_t(r) * rb, rb), QuantEffort::Fast);
        } else {
          std::memcpy(host.data() + size_t(r) * rb, host.data() + size_t(r % kDistinct) * rb, rb);
        }
      }
      const size_t copies = std::max<size_t>(1, kWorkingSet / bytes);
      cuda::DeviceBuffer w(bytes * copies);
      for (size_t c = 0; c < copies; ++c) {
        MOE_CUDA_CHECK(cudaMemcpy(w.as<std::byte>() + c * bytes, host.data(), bytes, cudaMemcpyHostToDevice));
      }
      for (int n_tok : {1, 4}) {
        cuda::DeviceBuffer x(size_t(n_tok * cols) * 4), y(size_t(n_tok * rows) * 4);
        MOE_CUDA_CHECK(cudaMemset(x.get(), 0, x.bytes()));
        cuda::ActivationBuffer activations;
        const auto xa = activations.quantize(vec_dot_type(type), x.as<float>(), n_tok, cols, nullptr);
        const double gbs = median_gbs(bytes, reps, [&](int i) {
          cuda::matvec(type, w.as<std::byte>() + size_t(i) % copies * bytes, rb, rows, xa, y.as<float>(), nullptr);
        });
        results += fmt::format("{}\n    {{\"type\": \"{}\", \"rows\": {}, \"cols\": {}, \"tokens\": {}, \"gb_s\": {:.1f}, "
                               "\"of_copy_bw\": {:.3f}}}",
                               results.empty() ? "" : ",", type_name(type), rows, cols, n_tok, gbs, gbs / copy_gbs);
      }
    }
  }
  // MoE expert products of one decode step in one launch: Qwen3-Next's 10 of 512 experts,
  // gate/up (512 x 2048) and down (2048 x 512), experts drawn at random each call.
  std::string experts_results;
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_K}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{512, 2048}, {2048, 512}}) {
      constexpr int kExperts = 512, kUsed = 10;
      const size_t rb = row_bytes(type, uint64_t(cols)), expert_bytes = rb * size_t(rows);
      std::vector<std::byte> host(expert_bytes * kExperts);
      std::vector<float> row(static_cast<size_t>(cols));
      for (size_t r = 0; r < size_t(rows) * kExperts; ++r) {
        if (r < 256) {
          for (auto& v : row) v = dist(rng);
          quantize_row(type, row, std::span(host).subspan(r * rb, rb), QuantEffort::Fast);
        } else {
          std::memcpy(host.data() + r * rb, host.data() + (r % 256) * rb, rb);
        }
      }
      cuda::DeviceBuffer w(host.size()), x(size_t(kUsed * cols) * 4), y(size_t(kUsed * rows) * 4);
      MOE_CUDA_CHECK(cudaMemcpy(w.get(), host.data(), host.size(), cudaMemcpyHostToDevice));
      MOE_CUDA_CHECK(cudaMemset(x.get(), 0, x.bytes()));
      // 64 random draws of 10 distinct experts, cycled through.
      constexpr int kDraws = 64;
      const std::vector<int32_t> ids = bench::expert_draws(kDraws, kExperts, kUsed, rng);
      cuda::DeviceBuffer dids(ids.size() * sizeof(int32_t));
      MOE_CUDA_CHECK(cudaMemcpy(dids.get(), ids.data(), dids.bytes(), cudaMemcpyHostToDevice));
      cuda::ActivationBuffer activations;
      const auto xa = activations.quantize(vec_dot_type(type), x.as<float>(), kUsed, cols, nullptr);
      const double gbs = median_gbs(expert_bytes * kUsed, reps, [&](int i) {
        cuda::matvec_experts(type, w.get(), expert_bytes, rb, rows, xa, dids.as<int32_t>() + (i % kDraws) * kUsed,
                             y.as<float>(), nullptr);
      });
      experts_results += fmt::format("{}\n    {{\"type\": \"{}\", \"rows\": {}, \"cols\": {}, \"experts\": {}, "
                                     "\"of\": {}, \"gb_s\": {:.1f}, \"of_copy_bw\": {:.3f}}}",
                                     experts_results.empty() ? "" : ",", type_name(type), rows, cols, kUsed, kExperts,
                                     gbs, gbs / copy_gbs);
    }
  }
  std::printf("{\n  \"device\": \"%s\",\n  \"copy_gb_s\": %.1f,\n  \"matvec\": [%s\n  ],\n  \"matvec_experts\": [%s\n  ],\n"
              "  \"pcie\": [%s\n  ]\n}\n",
              prop.name, copy_gbs, results.c_str(), experts_results.c_str(), pcie_results(reps).c_str());
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  int reps = 7;
  bool pcie_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    if (std::strcmp(argv[i], "--pcie-only") == 0) pcie_only = true;
  }
  try {
    return moe::run(reps, pcie_only);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_matvec: %s\n", e.what());
    return 1;
  }
}

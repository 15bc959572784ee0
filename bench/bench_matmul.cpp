// Matrix-vector (decode) and matrix-matrix (prefill) products per weight format, SIMD level
// and thread count.
//
// GEMV reports the weight bytes streamed per second ("GB/s", 1e9 B/s): decode is bound by
// memory bandwidth, so compare it with bench_memory. To measure DRAM and not the caches,
// every iteration uses the next of several copies of the matrix, 512 MiB in all.
// GEMM reports GFLOP/s (2 * rows * cols * n_tokens), activation quantization included.
//
// Names: gemv/<format>/<rows>x<cols>/<simd>/threads:<n>, gemm/<format>/<rows>x<cols>/
// tokens:<n>/<simd>/threads:<n>. Filter with --benchmark_filter, e.g. 'gemv/q4_k/.*avx512'.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "ops/cpu/matmul.h"
#include "ops/cpu/quantize.h"
#include "ops/cpu/vec_dot.h"

namespace moe {
namespace {

constexpr size_t kWorkingSet = size_t(512) << 20;

// Weight matrices with realistic values: random floats quantized once, then copied.
struct Weights {
  GgmlType type;
  WeightLayout layout = WeightLayout::Rows;
  int64_t rows = 0, cols = 0;
  size_t matrix_bytes = 0;
  std::vector<std::byte> data;  // n_copies matrices back to back
  size_t n_copies = 0;

  WeightView copy(size_t i) const {
    const std::byte* p = data.data() + (i % n_copies) * matrix_bytes;
    if (layout != WeightLayout::Rows) return WeightView::interleaved(type, layout, rows, cols, p);
    return WeightView::packed(type, rows, cols, p);
  }
};

// The benchmarks of one shape and format run one after another; keep only the current one.
const Weights& weights(GgmlType type, WeightLayout layout, int64_t rows, int64_t cols, size_t working_set) {
  static std::unique_ptr<Weights> cached;
  if (cached && cached->type == type && cached->layout == layout && cached->rows == rows && cached->cols == cols &&
      cached->n_copies * cached->matrix_bytes >= working_set) {
    return *cached;
  }
  cached.reset();  // free the previous set first
  auto w = std::make_unique<Weights>();
  w->type = type;
  w->layout = layout;
  w->rows = rows;
  w->cols = cols;
  w->matrix_bytes = layout == WeightLayout::Rows
                        ? row_bytes(type, cols) * rows
                        : interleaved_group_bytes(layout, cols) * size_t(rows / kInterleaveRows);
  w->n_copies = std::max<size_t>(1, (working_set + w->matrix_bytes - 1) / w->matrix_bytes);
  w->data.resize(w->n_copies * w->matrix_bytes);
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> row(cols);
  const size_t rb = row_bytes(type, cols);
  std::vector<std::byte> plain(rb * rows);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = dist(rng);
    quantize_row(type, row, std::span(plain).subspan(r * rb, rb));
  }
  if (layout == WeightLayout::Rows) {
    std::memcpy(w->data.data(), plain.data(), plain.size());
  } else {
    interleave_groups(layout, cols, plain.data(), rb, 0, rows / kInterleaveRows, w->data.data());
  }
  for (size_t c = 1; c < w->n_copies; ++c) {
    std::memcpy(w->data.data() + c * w->matrix_bytes, w->data.data(), w->matrix_bytes);
  }
  cached = std::move(w);
  return *cached;
}

ThreadPool& pool(int n_threads) {
  static ThreadPool p1(1), p2(2);
  return n_threads == 1 ? p1 : p2;
}

struct Config {
  GgmlType type;
  WeightLayout layout;
  int64_t rows, cols, n_tokens;
  SimdLevel level;
  int threads;
};

void run_matmul(benchmark::State& state, Config c) {
  const SimdLevel saved = active_simd_level();
  set_simd_level(c.level);
  const bool gemv = c.n_tokens == 1;
  const Weights& w = weights(c.type, c.layout, c.rows, c.cols, gemv ? kWorkingSet : 0);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(c.n_tokens * c.cols), y(c.n_tokens * c.rows);
  for (auto& v : x) v = dist(rng);
  ThreadPool& p = pool(c.threads);
  size_t i = 0;
  for (auto _ : state) {
    matmul(w.copy(i++), x, c.n_tokens, y, p);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double n = double(state.iterations());
  if (gemv) {
    state.counters["GB/s"] = benchmark::Counter(n * double(w.matrix_bytes) / 1e9, benchmark::Counter::kIsRate);
  } else {
    const double flops = 2.0 * double(c.rows) * double(c.cols) * double(c.n_tokens);
    state.counters["GFLOP/s"] = benchmark::Counter(n * flops / 1e9, benchmark::Counter::kIsRate);
  }
  set_simd_level(saved);
}

std::vector<SimdLevel> levels() {
  std::vector<SimdLevel> out;
  if (vec_dot_level(SimdLevel::Avx512) == SimdLevel::Avx512) out.push_back(SimdLevel::Avx512);
  if (best_simd_level() >= SimdLevel::Avx2) out.push_back(SimdLevel::Avx2);
  out.push_back(SimdLevel::Scalar);
  return out;
}

void register_all() {
  const GgmlType types[] = {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_0,
                            GgmlType::Q4_0, GgmlType::BF16, GgmlType::F16,  GgmlType::F32};
  // Qwen3-30B-A3B: dense-FFN-sized projections (2048 <-> 6144) and one expert's gate/up
  // (768 x 2048) and down (2048 x 768) matrices.
  const std::pair<int64_t, int64_t> gemv_shapes[] = {{6144, 2048}, {2048, 6144}, {768, 2048}, {2048, 768}};
  // Each format in GGUF's row layout, and (suffix "+x16") repacked where it has an
  // interleaved layout on this CPU.
  std::vector<std::pair<GgmlType, WeightLayout>> variants;
  for (GgmlType type : types) {
    variants.emplace_back(type, WeightLayout::Rows);
    if (interleaved_layout(type) != WeightLayout::Rows) variants.emplace_back(type, interleaved_layout(type));
  }
  auto variant_name = [](GgmlType type, WeightLayout layout) {
    return fmt::format("{}{}", type_name(type), layout == WeightLayout::Rows ? "" : "+x16");
  };
  for (auto [type, layout] : variants) {
    for (auto [rows, cols] : gemv_shapes) {
      for (SimdLevel level : levels()) {
        if (layout != WeightLayout::Rows && level != SimdLevel::Avx512) continue;
        for (int threads : {1, 2}) {
          const Config c{type, layout, rows, cols, 1, level, threads};
          const auto name = fmt::format("gemv/{}/{}x{}/{}/threads:{}", variant_name(type, layout), rows, cols,
                                        simd_level_name(level), threads);
          benchmark::RegisterBenchmark(name.c_str(), run_matmul, c)->UseRealTime()->MinTime(0.3);
        }
      }
    }
  }
  for (auto [type, layout] : variants) {
    for (int64_t n_tokens : {64, 512}) {
      for (SimdLevel level : levels()) {
        if (level == SimdLevel::Scalar && n_tokens > 64) continue;  // minutes per run
        if (layout != WeightLayout::Rows && level != SimdLevel::Avx512) continue;
        for (int threads : {1, 2}) {
          const Config c{type, layout, 2048, 2048, n_tokens, level, threads};
          const auto name = fmt::format("gemm/{}/2048x2048/tokens:{}/{}/threads:{}", variant_name(type, layout),
                                        n_tokens, simd_level_name(level), threads);
          benchmark::RegisterBenchmark(name.c_str(), run_matmul, c)->UseRealTime()->MinTime(0.3);
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("cpu", moe::describe_cpu());
  moe::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

// The hybrid engine's CPU side alone: how fast does this CPU compute the routed experts a decode
// step leaves in RAM (models/blocks.h expert_sum, one token, as CpuExperts::serve runs it)? On
// the GPU machine this is 85% of a hybrid decode token of Qwen3-Next-80B (docs/performance.md,
// 2026-11-27 (c)), at about half the RAM's bandwidth; this measures it without a GPU, so that
// changes to the CPU side can be tried in seconds.
//
// Qwen3-Next-80B's expert shapes (512 experts a layer, 2048 x 512, Q8_0 random blocks) for
// `layers` layers in anonymous memory, 4 KiB pages (or 2 MiB with --thp); each token routes
// `cpu` distinct random experts a layer to the CPU and serves every layer in turn. Prints, per
// thread count, the median ms a token over `reps` runs of `tokens` tokens and the GB/s of expert
// bytes read (each expert's three matrices once).
//
// Usage: bench_expert_sum [--layers 4] [--cpu 9] [--tokens 32] [--reps 5] [--threads 1,2,4] [--thp 0|1]
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "models/blocks.h"

namespace moe {
namespace {

constexpr int kExperts = 512;
constexpr int64_t kEmbd = 2048, kFf = 512;
constexpr size_t kBlock = 34;  // Q8_0: an f16 scale and 32 int8 values

struct Args {
  int layers = 4, cpu = 9, tokens = 32, reps = 5;
  bool thp = false;
  std::vector<int> threads{1, 2};
};

Args parse_args(int argc, char** argv) {
  Args a;
  if (argc % 2 == 0) fail("{}: expected a value", argv[argc - 1]);
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--layers") a.layers = std::stoi(value);
    else if (key == "--cpu") a.cpu = std::stoi(value);
    else if (key == "--tokens") a.tokens = std::stoi(value);
    else if (key == "--reps") a.reps = std::stoi(value);
    else if (key == "--thp") a.thp = value == "1";
    else if (key == "--threads") {
      a.threads.clear();
      std::istringstream list(value);
      for (std::string t; std::getline(list, t, ',');) a.threads.push_back(std::stoi(t));
    } else {
      fail("unknown option {} (use --layers N, --cpu N, --tokens N, --reps N, --threads A,B, --thp 0|1)", key);
    }
  }
  if (a.layers < 1 || a.cpu < 1 || a.cpu > kExperts || a.tokens < 1 || a.reps < 1 || a.threads.empty()) {
    fail("--layers, --tokens, --reps at least 1; --cpu between 1 and {}; --threads a list", kExperts);
  }
  return a;
}

// Anonymous memory (RAII), advised for or against transparent huge pages.
class Region {
 public:
  Region(size_t bytes, bool huge) : bytes_(bytes) {
    data_ = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data_ == MAP_FAILED) fail("cannot map {} bytes of anonymous memory", bytes);
    ::madvise(data_, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  }
  ~Region() { ::munmap(data_, bytes_); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  std::byte* data() const { return static_cast<std::byte*>(data_); }

 private:
  void* data_;
  size_t bytes_;
};

// Random Q8_0 blocks with a fixed small scale (the kernels' speed does not depend on values).
void fill_blocks(std::byte* p, size_t bytes, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  const f16 scale{0x2000};
  for (size_t b = 0; b + kBlock <= bytes; b += kBlock) {
    std::memcpy(p + b, &scale, 2);
    for (size_t i = 2; i < kBlock; i += 8) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      std::memcpy(p + b + i, &s, std::min<size_t>(8, kBlock - i));
    }
  }
}

int run(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  const size_t matrix = size_t(kFf) * size_t(kEmbd) / 32 * kBlock;  // gate, up and down alike
  const size_t layer_bytes = 3 * size_t(kExperts) * matrix;
  fmt::print("cpu: {} ({} hardware threads, SIMD {}); {} layers of {} Q8_0 experts ({:.2f} GB), {} pages\n",
             cpu_features().brand, std::thread::hardware_concurrency(), simd_level_name(active_simd_level()),
             a.layers, kExperts, double(layer_bytes) * a.layers / 1e9, a.thp ? "2 MiB" : "4 KiB");
  Region weights(layer_bytes * size_t(a.layers), a.thp);
  std::vector<MoeLayer> layers(static_cast<size_t>(a.layers));
  for (int l = 0; l < a.layers; ++l) {
    std::byte* base = weights.data() + size_t(l) * layer_bytes;
    fill_blocks(base, layer_bytes, uint64_t(l) + 1);
    auto stacked = [&](int m, int64_t rows, int64_t cols) {
      return ExpertWeights{WeightView::packed(GgmlType::Q8_0, rows, cols, base + size_t(m) * kExperts * matrix), matrix,
                           kExperts};
    };
    layers[size_t(l)].gate = stacked(0, kFf, kEmbd);
    layers[size_t(l)].up = stacked(1, kFf, kEmbd);
    layers[size_t(l)].down = stacked(2, kEmbd, kFf);
  }

  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> u(static_cast<size_t>(kEmbd)), out(u.size()), w(size_t(a.cpu), 1.0f / float(a.cpu));
  for (float& v : u) v = normal(rng);
  std::vector<int32_t> all(kExperts);
  for (int e = 0; e < kExperts; ++e) all[size_t(e)] = e;
  // Each token's routing, drawn once, the same for every thread count.
  std::vector<std::vector<int32_t>> routing(size_t(a.tokens) * size_t(a.layers));
  for (auto& r : routing) {
    std::shuffle(all.begin(), all.end(), rng);
    r.assign(all.begin(), all.begin() + a.cpu);
  }
  const double token_gb = double(a.cpu) * double(a.layers) * 3 * double(matrix) / 1e9;

  fmt::print("\n| threads | ms a token (median) | min | max | GB/s (median) |\n|---|---|---|---|---|\n");
  for (int threads : a.threads) {
    ThreadPool pool(threads);
    Scratch scratch;
    std::vector<double> ms;
    for (int rep = 0; rep <= a.reps; ++rep) {  // the first is a warm-up
      const auto t0 = std::chrono::steady_clock::now();
      for (int t = 0; t < a.tokens; ++t) {
        for (int l = 0; l < a.layers; ++l) {
          expert_sum(layers[size_t(l)], u, 1, routing[size_t(t) * size_t(a.layers) + size_t(l)], w, out, pool,
                     scratch);
        }
      }
      const double elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (rep > 0) ms.push_back(elapsed / a.tokens);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    fmt::print("| {} | {:.3f} | {:.3f} | {:.3f} | {:.1f} |\n", threads, median, ms.front(), ms.back(),
               token_gb / (median / 1e3));
  }
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  try {
    return moe::run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}

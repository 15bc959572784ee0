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
// Beside expert_sum ("sum") it can time a plain read of the same bytes in the same tasks
// ("read": the ceiling of this access pattern on this machine, no arithmetic), with weight
// prefetch at several distances (--prefetch, bytes; ops/cpu/matmul.h), and with every token
// routed to the same experts (--hot 1: they stay in cache, so the kernels' own speed shows).
//
// Usage: bench_expert_sum [--layers 4] [--cpu 9] [--tokens 32] [--reps 5] [--threads 1,2,4]
//                         [--thp 0|1] [--mode sum,read] [--prefetch 0,2048] [--hot 0|1]
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <immintrin.h>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "models/blocks.h"
#include "ops/cpu/matmul.h"

namespace moe {
namespace {

constexpr int kExperts = 512;
constexpr int64_t kEmbd = 2048, kFf = 512;
constexpr size_t kBlock = 34;  // Q8_0: an f16 scale and 32 int8 values

struct Args {
  int layers = 4, cpu = 9, tokens = 32, reps = 5;
  bool thp = false, hot = false;
  std::vector<int> threads{1, 2};
  std::vector<std::string> modes{"sum"};
  std::vector<size_t> prefetch{kDefaultWeightPrefetchBytes};
};

template <typename T>
std::vector<T> list_of(const std::string& value, T (*convert)(const std::string&)) {
  std::vector<T> out;
  std::istringstream list(value);
  for (std::string item; std::getline(list, item, ',');) out.push_back(convert(item));
  return out;
}

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
    else if (key == "--hot") a.hot = value == "1";
    else if (key == "--threads") a.threads = list_of<int>(value, [](const std::string& v) { return std::stoi(v); });
    else if (key == "--mode") a.modes = list_of<std::string>(value, [](const std::string& v) { return v; });
    else if (key == "--prefetch") {
      a.prefetch = list_of<size_t>(value, [](const std::string& v) { return size_t(std::stoull(v)); });
    } else {
      fail("unknown option {} (use --layers N, --cpu N, --tokens N, --reps N, --threads A,B, --thp 0|1, "
           "--mode sum,read, --prefetch BYTES,..., --hot 0|1)", key);
    }
  }
  if (a.layers < 1 || a.cpu < 1 || a.cpu > kExperts || a.tokens < 1 || a.reps < 1 || a.threads.empty() ||
      a.prefetch.empty()) {
    fail("--layers, --tokens, --reps at least 1; --cpu between 1 and {}; --threads, --prefetch lists", kExperts);
  }
  for (const auto& m : a.modes) {
    if (m != "sum" && m != "read") fail("--mode: {} is neither sum nor read", m);
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

// XOR of every 32 bytes of [p, p + bytes): a read the compiler cannot drop, at load speed.
__attribute__((target("avx2"))) uint64_t read_bytes(const std::byte* p, size_t bytes) {
  __m256i acc = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= bytes; i += 32) {
    acc = _mm256_xor_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
  }
  return uint64_t(_mm256_extract_epi64(acc, 0) ^ _mm256_extract_epi64(acc, 3));
}

// The bytes expert_sum reads for one token, in tasks of the same rows (kMatmulRowsPerTask),
// in two jobs as it runs them (gate and up, then down).
uint64_t read_experts(const MoeLayer& layer, std::span<const int32_t> experts, ThreadPool& pool,
                      std::vector<uint64_t>& sink) {
  const int64_t per_up = kFf / kMatmulRowsPerTask, per_down = kEmbd / kMatmulRowsPerTask;
  const size_t row_up = size_t(kEmbd) / 32 * kBlock, row_down = size_t(kFf) / 32 * kBlock;
  pool.parallel_for(experts.size() * 2 * size_t(per_up), [&](size_t task, int thread) {
    const size_t product = task / size_t(per_up), block = task % size_t(per_up);
    const ExpertWeights& w = product % 2 == 0 ? layer.gate : layer.up;
    const std::byte* base = w.expert(experts[product / 2]).data + block * kMatmulRowsPerTask * row_up;
    sink[size_t(thread) * 8] ^= read_bytes(base, kMatmulRowsPerTask * row_up);
  });
  pool.parallel_for(experts.size() * size_t(per_down), [&](size_t task, int thread) {
    const size_t e = task / size_t(per_down), block = task % size_t(per_down);
    const std::byte* base = layer.down.expert(experts[e]).data + block * kMatmulRowsPerTask * row_down;
    sink[size_t(thread) * 8] ^= read_bytes(base, kMatmulRowsPerTask * row_down);
  });
  return sink[0];
}

int run(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  const size_t matrix = size_t(kFf) * size_t(kEmbd) / 32 * kBlock;  // gate, up and down alike
  const size_t layer_bytes = 3 * size_t(kExperts) * matrix;
  fmt::print("cpu: {} ({} hardware threads, SIMD {}); {} layers of {} Q8_0 experts ({:.2f} GB), {} pages, {}\n",
             cpu_features().brand, std::thread::hardware_concurrency(), simd_level_name(active_simd_level()),
             a.layers, kExperts, double(layer_bytes) * a.layers / 1e9, a.thp ? "2 MiB" : "4 KiB",
             a.hot ? "the same experts every token (hot)" : "fresh random experts every token");
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

  fmt::print("\n| mode | threads | prefetch | ms a token (median) | min | max | GB/s (median) |\n"
             "|---|---|---|---|---|---|---|\n");
  for (const std::string& mode : a.modes) {
    for (int threads : a.threads) {
      for (size_t prefetch : mode == "read" ? std::vector<size_t>{0} : a.prefetch) {
        set_weight_prefetch_bytes(prefetch);
        ThreadPool pool(threads);
        Scratch scratch;
        std::vector<uint64_t> sink(size_t(threads) * 8);  // a cache line a thread
        std::vector<double> ms;
        for (int rep = 0; rep <= a.reps; ++rep) {  // the first is a warm-up
          const auto t0 = std::chrono::steady_clock::now();
          for (int t = 0; t < a.tokens; ++t) {
            for (int l = 0; l < a.layers; ++l) {
              const auto& experts = routing[a.hot ? size_t(l) : size_t(t) * size_t(a.layers) + size_t(l)];
              if (mode == "read") {
                read_experts(layers[size_t(l)], experts, pool, sink);
              } else {
                expert_sum(layers[size_t(l)], u, 1, experts, w, out, pool, scratch);
              }
            }
          }
          const double elapsed =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          if (rep > 0) ms.push_back(elapsed / a.tokens);
        }
        std::sort(ms.begin(), ms.end());
        const double median = ms[ms.size() / 2];
        fmt::print("| {} | {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.1f} |\n", mode, threads, prefetch, median, ms.front(),
                   ms.back(), token_gb / (median / 1e3));
        std::fflush(stdout);
      }
    }
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

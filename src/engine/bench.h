#pragma once
// Throughput measurement as llama-bench does it: random token ids, one warm-up run, then
// repetitions of a prompt-processing test (pp<P>) and a text-generation test (tg<N>), each
// repetition in a fresh sequence, optionally holding `depth` tokens before the timed ones
// (the speed deep into a long context: attention reads the whole KV cache every token). Kept apart from the CLI so servers and scripts reuse it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/function_ref.h"
#include "core/ggml_type.h"
#include "core/thread_pool.h"
#include "gguf/reader.h"
#include "models/model.h"

namespace moe {

struct BenchOptions {
  int n_prompt = 512;  // pp test size; 0 skips it
  int n_gen = 128;     // tg test size; 0 skips it
  int depth = 0;       // tokens already in the context when each test starts (prefilled, not timed)
  int reps = 5;
  int batch = 512;     // prompt tokens per forward call
  GgmlType kv_type = GgmlType::F16;
  uint32_t seed = 1234;  // of the random token ids, fixed so runs are comparable
  bool warmup = true;
  TokenId bos = -1;    // put first in every sequence when >= 0 (the vocabulary adds BOS)
};

struct BenchResult {
  std::string name;  // "pp512" or "tg128", with " @ d4096" at a depth (llama-bench's names)
  int n_prompt = 0;  // tokens prefilled (pp) ...
  int n_gen = 0;     // ... or decoded one at a time (tg); the other is 0
  int n_depth = 0;   // tokens in the context before the timed ones
  std::string test_time;  // RFC 3339, UTC, when the test started
  std::vector<uint64_t> samples_ns;
  std::vector<double> samples_ts;  // tokens per second of each repetition
  // A hybrid model's expert split over the repetitions (their depth prefills included).
  Model::ExpertSplit split;
  // The routed expert slots the GPU held, as a share; < 0 where no expert is in RAM.
  double vram_hit_rate() const {
    return split.routed_slots
               ? 1.0 - double(split.cpu_slots + split.pcie_slots) / double(split.routed_slots)
               : -1.0;
  }
  double pcie_share() const { return split.routed_slots ? double(split.pcie_slots) / double(split.routed_slots) : 0; }

  int n_tokens() const { return n_prompt + n_gen; }
  double avg_ns() const;
  double stddev_ns() const;
  double avg_ts() const;
  double stddev_ts() const;
  double ms_per_token() const { return avg_ns() / 1e6 / n_tokens(); }
};

// What a model's weights weigh, for the report and the decode roofline.
struct ModelFootprint {
  uint64_t bytes = 0;     // all tensors
  uint64_t n_params = 0;  // all tensor elements
  // Weight bytes one decoded token reads: every non-expert tensor, the output matrix, the
  // n_expert_used / n_expert share of the expert tensors and one embedding row.
  uint64_t weight_bytes_per_token = 0;
};
ModelFootprint model_footprint(const gguf::Reader& reader, const ModelConfig& config);

// The rules behind the footprints (here and in the placement plan, placement.h): whether a
// tensor holds routed experts (blk.N.ffn_{gate,up,down}_exps; a shared expert is _shexp) ...
bool is_routed_expert(std::string_view tensor_name);
// ... and what one token reads of any other tensor: all of it, except the embedding matrix
// where the output has its own (own_output: a lookup reads one row).
uint64_t bytes_read_per_token(const gguf::TensorInfo& t, bool own_output);

// Decode ceiling in tokens/s when every token must stream its weights at `gb_per_s` (1e9 B/s).
double roofline_tokens_per_second(uint64_t weight_bytes_per_token, double gb_per_s);

double mean(const std::vector<double>& values);
// Sample standard deviation (n - 1); 0 for fewer than two values, as llama-bench reports.
double sample_stddev(const std::vector<double>& values);

// Runs the pp test then the tg test. `progress` receives one line per phase (for stderr).
std::vector<BenchResult> run_bench(Model& model, const BenchOptions& options, ThreadPool& pool,
                                   FunctionRef<void(const std::string&)> progress);

}  // namespace moe

#pragma once
// Writes a random-weight GGUF model with the exact tensor names, shapes, types and metadata of
// a real Qwen3 / Qwen3-MoE model, so llama.cpp and moeserve load it like the real thing.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "models/synth/presets.h"

namespace moe::synth {

struct SynthOptions {
  std::string arch;    // "qwen3moe" | "qwen3" | "qwen3next"
  std::string preset;  // see preset_names()
  std::optional<int64_t> layers;  // overrides the preset's block count
  std::string type = "q8_0";      // storage type of the big matrices
  std::string vocab_path;         // copy tokenizer.* from this GGUF; empty = built-in vocabulary
  uint64_t seed = 0;
  int threads = 0;  // <= 0: one per hardware thread
  std::string output;
  bool fused_ssm_in = false;  // qwen3next: the legacy fused ssm_in layout
};

struct SynthReport {
  ModelShape shape;
  uint32_t n_vocab = 0;
  size_t n_tensors = 0;
  uint64_t file_bytes = 0;
  double seconds = 0;
  std::vector<std::string> notes;  // type fallbacks and other things the user should know

  double gb_per_second() const { return seconds > 0 ? double(file_bytes) / 1e9 / seconds : 0; }
};

// The types --type accepts.
std::vector<std::string> synth_type_names();
GgmlType parse_synth_type(const std::string& name);  // throws moe::Error listing the choices

// The preset with --layers applied; throws moe::Error for an unknown arch/preset or bad count.
ModelShape resolve_shape(const SynthOptions& options);

// Validates everything, then writes options.output (through OUTPUT.tmp, renamed at the end; on
// any error no file is left behind). Throws moe::Error.
SynthReport write_synth_model(const SynthOptions& options);

}  // namespace moe::synth

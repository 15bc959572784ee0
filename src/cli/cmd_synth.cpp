// moeserve synth: writes a random-weight model with the real shapes, types and metadata of a
// Qwen3 / Qwen3-MoE checkpoint, for tests and benchmarks that need a model file of a given size
// without downloading one.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"
#include "models/synth/synth.h"

namespace moe::cli {
namespace {

struct SynthCliArgs {
  synth::SynthOptions options;
  int64_t layers = 0;
};

}  // namespace

void add_synth_command(CLI::App& app) {
  auto args = std::make_shared<SynthCliArgs>();
  auto* cmd = app.add_subcommand("synth", "Write a random-weight model with the shapes of a real one");
  cmd->add_option("--arch", args->options.arch, "qwen3moe, qwen3 or qwen3next")->required();
  cmd->add_option("--preset", args->options.preset,
                  "qwen3moe: tiny, 30b-a3b, 235b-a22b, coder-30b-a3b; qwen3: tiny, 0.6b; qwen3next: tiny, 80b-a3b")
      ->required();
  auto* layers = cmd->add_option("--layers", args->layers, "Override the number of layers");
  cmd->add_option("--type", args->options.type, "Type of the big matrices: q8_0 (default), q4_k, q4_0, q5_k, q6_k, f16, bf16, f32");
  cmd->add_option("--vocab", args->options.vocab_path, "Copy the tokenizer from this GGUF file (default: built-in vocabulary)");
  cmd->add_option("--seed", args->options.seed, "Random seed (default 0)");
  cmd->add_option("-t,--threads", args->options.threads, "Threads (default: all)");
  cmd->add_option("-o,--output", args->options.output, "Output GGUF file")->required();
  cmd->add_flag("--fused-ssm-in", args->options.fused_ssm_in,
                "qwen3next: write the delta-nets' projections in the legacy fused ssm_in layout (GGUFs converted "
                "before January 2026) instead of attn_qkv + attn_gate");
  cmd->callback([args, layers] {
    if (layers->count() > 0) args->options.layers = args->layers;
    const auto report = synth::write_synth_model(args->options);
    for (const auto& note : report.notes) std::fprintf(stderr, "note: %s\n", note.c_str());
    std::fprintf(stderr, "synth: wrote %s: %zu tensors, %u tokens, %s in %.2f s (%.3f GB/s)\n",
                 args->options.output.c_str(), report.n_tensors, report.n_vocab,
                 format_bytes(report.file_bytes).c_str(), report.seconds, report.gb_per_second());
  });
}

}  // namespace moe::cli

// moeserve convert: a Hugging Face Qwen3 / Qwen3-MoE safetensors checkpoint -> one GGUF file
// with llama.cpp's names and layout, so the result also runs in llama.cpp and the engines can
// be compared on identical weights.
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"
#include "formats/hf_convert.h"

namespace moe::cli {
namespace {

struct ConvertArgs {
  std::string hf_dir;
  std::string out;
  std::string type = "f16";
};

void run_convert(const ConvertArgs& args) {
  const auto type = parse_type(args.type);
  if (!type || !formats::is_convert_type(*type)) {
    fail("convert: --type '{}' is not supported (supported: {})", args.type, formats::convert_type_names());
  }
  const auto summary = formats::convert_hf_to_gguf({.hf_dir = args.hf_dir, .out_path = args.out, .type = *type});
  std::printf("%s: %s, %zu tensors, %s of tensor data (%s)\n", args.out.c_str(), summary.gguf_arch.c_str(),
              summary.n_tensors, format_bytes(summary.tensor_bytes).c_str(), args.type.c_str());
  if (!summary.fallbacks.empty()) {
    std::printf("%zu tensors written as f16 because their rows do not divide into %s blocks\n",
                summary.fallbacks.size(), args.type.c_str());
  }
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  auto* cmd = app.add_subcommand("convert", "Convert a Hugging Face Qwen3/Qwen3-MoE checkpoint to GGUF");
  cmd->add_option("HF_DIR", args->hf_dir, "Checkpoint directory (config.json, tokenizer.json, *.safetensors)")->required();
  cmd->add_option("-o,--output", args->out, "Output GGUF file")->required();
  cmd->add_option("--type", args->type, "Type of the weight matrices: " + formats::convert_type_names());
  cmd->callback([args] { run_convert(*args); });
}

}  // namespace moe::cli

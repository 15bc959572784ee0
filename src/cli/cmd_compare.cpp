// moeserve compare: one model through two engines (the CPU engine and a GPU, by default),
// checkpoint by checkpoint (engine/op_compare.h): a table of each intermediate tensor's
// relative RMS difference and the first one above the threshold. Exits 1 when one is.
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "core/log.h"
#include "engine/model_loading.h"
#include "engine/op_compare.h"
#include "gguf/reader.h"

namespace moe::cli {
namespace {

struct CompareCliOptions {
  std::string model, against = "cpu", output = "md", kv_type = "f16";
  OpCompareOptions compare;
  int threads = 0;
  LoadOptions load;  // --device: the engine under test
};

nlohmann::json to_json(const OpCompareResult& r, const CompareCliOptions& opt, const std::string& a,
                       const std::string& b) {
  auto diffs = nlohmann::json::array();
  for (const TensorDiff& d : r.diffs) {
    diffs.push_back({{"name", d.name}, {"step", d.step}, {"count", d.count}, {"rel_rms", d.rel_rms},
                     {"max_abs", d.max_abs}});
  }
  nlohmann::json j{{"model", opt.model},  {"reference", a}, {"tested", b}, {"threshold", opt.compare.threshold},
                   {"prompt_tokens", opt.compare.prompt_tokens}, {"decode_steps", opt.compare.decode_steps},
                   {"diffs", diffs}};
  j["first_divergent"] = r.first_divergent < 0 ? nlohmann::json(nullptr) : diffs[size_t(r.first_divergent)];
  return j;
}

void compare(const CompareCliOptions& opt) {
  if (opt.output != "md" && opt.output != "json") fail("compare: -o must be md or json, got '{}'", opt.output);
  CompareCliOptions o = opt;
  const auto kv = parse_type(opt.kv_type);
  if (!kv) fail("unknown KV cache type '{}' (use f32, f16, q8_0 or q4_0)", opt.kv_type);
  o.compare.kv_type = *kv;
  const gguf::Reader reader(opt.model, opt.load.backing);
  prepare_model_memory(reader, opt.load);
  LoadOptions reference_load = opt.load;
  reference_load.device = opt.against, reference_load.gpu_layers = -1;
  auto reference = open_model(reader, reference_load);
  auto tested = open_model(reader, opt.load);
  ThreadPool pool(opt.threads > 0 ? opt.threads : int(std::thread::hardware_concurrency()));
  const std::string a = reference->backend(), b = tested->backend();
  spdlog::info("compare: {} (reference) against {}: {} prompt tokens, {} decode steps, threshold {:g}", a, b,
               o.compare.prompt_tokens, o.compare.decode_steps, o.compare.threshold);
  const OpCompareResult r = compare_ops(*reference, *tested, o.compare, pool);
  if (opt.output == "json") {
    std::printf("%s\n", to_json(r, o, a, b).dump(2).c_str());
  } else {
    std::printf("| step | checkpoint | values | rel. RMS diff | max abs diff |\n|---:|---|---:|---:|---:|\n");
    for (size_t i = 0; i < r.diffs.size(); ++i) {
      const TensorDiff& d = r.diffs[i];
      std::printf("| %d | %s | %zu | %.3e | %.3e |%s\n", d.step, d.name.c_str(), d.count, d.rel_rms, d.max_abs,
                  int(i) == r.first_divergent ? " <- first above the threshold" : "");
    }
  }
  if (r.first_divergent >= 0) {
    const TensorDiff& d = r.diffs[size_t(r.first_divergent)];
    fail("compare: {} against {} first differs at {} (step {}): relative RMS {:.3e} above {:g}", b, a, d.name, d.step,
         d.rel_rms, o.compare.threshold);
  }
  spdlog::info("compare: {} checkpoints within {:g}", r.diffs.size(), o.compare.threshold);
}

}  // namespace

void add_compare_command(CLI::App& app) {
  auto opt = std::make_shared<CompareCliOptions>();
  opt->load.prefault = Prefault::None;
  auto* cmd = app.add_subcommand(
      "compare", "Run a model through two engines and compare every intermediate tensor (find the first op that differs)");
  cmd->add_option("-m,--model", opt->model, "GGUF model (for a split model, the first shard)")->required();
  cmd->add_option("--against", opt->against, "The reference engine's device: cpu, cuda or cudaN")->capture_default_str();
  cmd->add_option("-p,--prompt-tokens", opt->compare.prompt_tokens, "Random prompt tokens in the first forward call")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("-n,--decode-steps", opt->compare.decode_steps, "Single-token calls after it (greedy on the reference)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", opt->compare.seed, "Seed of the prompt's token ids")->capture_default_str();
  cmd->add_option("--threshold", opt->compare.threshold, "Relative RMS difference above which a tensor diverges")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--kv-type", opt->kv_type, "KV cache type: f32, f16, q8_0, q4_0")->capture_default_str();
  cmd->add_option("-t,--threads", opt->threads, "CPU threads (default: all)");
  cmd->add_option("-o,--output", opt->output, "Output format: md or json")->capture_default_str();
  add_load_options(*cmd, opt->load);
  cmd->callback([opt] { compare(*opt); });
}

}  // namespace moe::cli

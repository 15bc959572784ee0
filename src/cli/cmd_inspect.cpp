// moeserve inspect: what a GGUF model is, before anything is loaded onto a device; with
// --vram-budget, where its weights would go (engine/placement.h).
#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/machine_bandwidth.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "core/units.h"
#include "engine/placement.h"
#include "engine/routing_locality.h"
#include "gguf/reader.h"
#include "models/model.h"

namespace moe::cli {
namespace {

struct InspectOptions {
  std::string model;
  bool json = false;
  bool no_tensors = false;
  // The placement plan (--vram-budget) and what it depends on.
  std::string vram_budget, vram_reserve, kv_type = "f16", routing = "even";
  int n_cpu_moe = -1;
  bool cpu_moe = false;
  bool stream_prefill = true;
  int64_t context = 4096;
  int ubatch = 512;
  double ram_gb_s = 0, gpu_gb_s = 0, pcie_gb_s = 0, hit_rate = -1;
};

bool is_tokenizer_key(std::string_view key) { return key.starts_with("tokenizer."); }

nlohmann::json to_json(const gguf::Value& v) {
  using gguf::ValueType;
  if (!v.is_array()) {
    switch (v.type()) {
      case ValueType::String: return std::string(v.to_string());
      case ValueType::Bool: return v.to_bool();
      // An f32 printed through double shows float noise (1e-6 as 9.99999997e-07): round-trip it
      // through its shortest float spelling instead.
      case ValueType::F32: return std::stod(fmt::format("{}", float(v.to_double())));
      case ValueType::F64: return v.to_double();
      default: return v.to_double() < 0 ? nlohmann::json(v.to_int()) : nlohmann::json(v.to_uint());
    }
  }
  // Long arrays (vocabularies, merges) are summarised: inspect is for people, not a dump.
  constexpr uint64_t kMaxItems = 64;
  if (v.size() > kMaxItems) {
    return {{"array_of", std::string(gguf::value_type_name(v.element_type()))}, {"length", v.size()}};
  }
  nlohmann::json items = nlohmann::json::array();
  if (v.element_type() == ValueType::String) {
    for (auto s : v.to_strings()) items.push_back(std::string(s));
  } else if (gguf::is_integer(v.element_type())) {
    for (auto x : v.to_ints()) items.push_back(x);
  } else {
    for (auto x : v.to_doubles()) items.push_back(x);
  }
  return items;
}

struct TypeTotal {
  uint64_t tensors = 0;
  uint64_t bytes = 0;
};

std::map<std::string_view, TypeTotal> totals_by_type(const gguf::Reader& r) {
  std::map<std::string_view, TypeTotal> totals;
  for (const auto& t : r.tensors()) {
    auto& total = totals[type_name(t.type)];
    ++total.tensors;
    total.bytes += t.nbytes;
  }
  return totals;
}

void print_json(const gguf::Reader& r, const InspectOptions& opt) {
  nlohmann::json out;
  out["path"] = r.path();
  out["files"] = r.n_files();
  out["gguf_version"] = r.file(0).version();
  uint64_t file_bytes = 0;
  for (size_t i = 0; i < r.n_files(); ++i) file_bytes += r.file(i).size();
  out["file_bytes"] = file_bytes;
  out["tensor_bytes"] = r.tensor_bytes();
  if (const auto* arch = r.metadata().find("general.architecture")) out["architecture"] = std::string(arch->to_string());
  nlohmann::json metadata = nlohmann::json::object();
  for (const auto& [key, value] : r.metadata().entries()) metadata[std::string(key)] = to_json(value);
  out["metadata"] = metadata;
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [name, total] : totals_by_type(r)) {
    types[std::string(name)] = {{"tensors", total.tensors}, {"bytes", total.bytes}};
  }
  out["tensor_types"] = types;
  out["tensor_count"] = r.tensors().size();
  if (!opt.no_tensors) {
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& t : r.tensors()) {
      std::vector<int64_t> shape(t.ne.begin(), t.ne.begin() + t.n_dims);
      tensors.push_back({{"name", std::string(t.name)},
                         {"type", std::string(type_name(t.type))},
                         {"shape", shape},
                         {"bytes", t.nbytes},
                         {"file", t.file_index},
                         {"offset", t.offset}});
    }
    out["tensors"] = tensors;
  }
  std::printf("%s\n", out.dump(2).c_str());
}

void print_text(const gguf::Reader& r, const InspectOptions& opt) {
  const auto& meta = r.metadata();
  uint64_t file_bytes = 0;
  for (size_t i = 0; i < r.n_files(); ++i) file_bytes += r.file(i).size();
  std::printf("file          %s (%zu file%s, GGUF v%u, %s)\n", r.path().c_str(), r.n_files(),
              r.n_files() == 1 ? "" : "s", r.file(0).version(), format_bytes(file_bytes).c_str());
  const std::string arch(meta.get_string("general.architecture", "(none: no general.architecture key)"));
  std::printf("architecture  %s\n", arch.c_str());
  if (const auto* name = meta.find("general.name")) std::printf("name          %s\n", std::string(name->to_string()).c_str());

  auto print_section = [&](const char* title, auto&& wanted) {
    bool any = false;
    for (const auto& [key, value] : meta.entries()) {
      if (!wanted(key)) continue;
      if (!any) std::printf("\n%s\n", title);
      any = true;
      std::printf("  %-44s %s\n", std::string(key).c_str(), value.to_display(4).c_str());
    }
  };
  const std::string prefix = arch + ".";
  print_section("hyperparameters", [&](std::string_view k) { return k.starts_with(prefix); });
  print_section("tokenizer", [&](std::string_view k) { return is_tokenizer_key(k); });
  print_section("other metadata",
                [&](std::string_view k) { return !k.starts_with(prefix) && !is_tokenizer_key(k); });

  std::printf("\ntensors       %zu, %s\n", r.tensors().size(), format_bytes(r.tensor_bytes()).c_str());
  for (const auto& [name, total] : totals_by_type(r)) {
    std::printf("  %-8s %6llu tensors  %12s\n", std::string(name).c_str(), (unsigned long long)total.tensors,
                format_bytes(total.bytes).c_str());
  }
  if (opt.no_tensors || r.tensors().empty()) return;
  std::printf("\n  %-40s %-8s %-26s %12s%s\n", "name", "type", "shape", "size", r.n_files() > 1 ? "  file" : "");
  for (const auto& t : r.tensors()) {
    std::printf("  %-40s %-8s %-26s %12s", std::string(t.name).c_str(), std::string(type_name(t.type)).c_str(),
                t.shape_string().c_str(), format_bytes(t.nbytes).c_str());
    if (r.n_files() > 1) std::printf("  %u", t.file_index + 1);
    std::printf("\n");
  }
}

// The bandwidths the ceilings use: as given, else RAM measured here and the first GPU's peak (the
// link only where given).
MachineBandwidth plan_bandwidth(const InspectOptions& opt) {
  ThreadPool pool(int(std::max(1u, std::thread::hardware_concurrency())));
  return machine_bandwidth({.ram_gb_s = opt.ram_gb_s, .gpu_gb_s = opt.gpu_gb_s, .pcie_gb_s = opt.pcie_gb_s}, pool, 0,
                           false);
}

void print_plan(const gguf::Reader& reader, const InspectOptions& opt) {
  const auto kv = parse_type(opt.kv_type);
  if (!kv) fail("unknown KV cache type '{}' (use f32, f16, q8_0 or q4_0)", opt.kv_type);
  const auto model = load_model(reader, ModelOptions{.repack = false});  // the hyperparameters, nothing copied
  const ModelConfig& c = model->config();
  PlacementRequest request{.vram_budget = parse_bytes(opt.vram_budget),
                           .n_cpu_moe = opt.cpu_moe ? c.n_layer : opt.n_cpu_moe,
                           .context = opt.context,
                           .kv_type = *kv,
                           .ubatch = opt.ubatch,
                           .bandwidth = plan_bandwidth(opt),
                           .stream_prefill = opt.stream_prefill,
                           .hit_rate = opt.hit_rate};
  if (!opt.vram_reserve.empty()) request.runtime_reserve = parse_bytes(opt.vram_reserve);
  std::optional<RoutingLocality> locality;
  if (opt.routing == "local" && c.n_expert > 0) {  // Qwen3-Next's published locality
    locality.emplace(c.n_expert, c.n_expert_used);
    request.locality = &*locality;
  }
  const PlacementPlan plan = plan_placement(reader, c, request);
  if (!opt.json) {
    std::printf("%s", describe(plan, request).c_str());
    return;
  }
  const nlohmann::json j = {{"vram_budget", plan.budget},
                            {"vram_used", plan.used()},
                            {"runtime_reserve", plan.runtime},
                            {"dense_bytes", plan.dense},
                            {"cache_bytes", plan.cache},
                            {"activation_bytes", plan.activations},
                            {"staging_bytes", plan.staging},
                            {"expert_bytes_vram", plan.experts_vram},
                            {"expert_bytes_ram", plan.experts_ram},
                            {"expert_bytes", plan.expert_bytes},
                            {"vram_experts_per_layer", plan.vram_experts},
                            {"n_expert", plan.n_expert},
                            {"context", request.context},
                            {"kv_type", opt.kv_type},
                            {"routing", opt.routing},
                            {"hit_rate", plan.hit_rate},
                            {"token_gpu_bytes", plan.token_gpu_bytes},
                            {"token_ram_bytes", plan.token_ram_bytes},
                            {"ram_gb_s", request.bandwidth.ram_gb_s},
                            {"gpu_gb_s", request.bandwidth.gpu_gb_s},
                            {"pcie_gb_s", request.bandwidth.pcie_gb_s},
                            {"pcie_share", plan.pcie_share},
                            {"token_link_bytes", plan.token_link_bytes},
                            {"ceiling_overlapped_ts", plan.overlapped_tok_s},
                            {"ceiling_serial_ts", plan.serial_tok_s},
                            {"ceiling_ram_ts", plan.ram_bound_tok_s}};
  std::printf("%s\n", j.dump(2).c_str());
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "Show a model's architecture, hyperparameters, tokenizer and tensors");
  cmd->add_option("-m,--model", opt->model, "GGUF file (for a split model, the first shard)")->required();
  cmd->add_flag("--json", opt->json, "Print JSON instead of text");
  cmd->add_flag("--no-tensors", opt->no_tensors, "Leave out the per-tensor table");
  cmd->add_option("--vram-budget", opt->vram_budget,
                  "Print where the weights would go in this much VRAM (e.g. 16GiB) and the decode ceilings, "
                  "instead of the model");
  auto* n_cpu_moe = cmd->add_option("--n-cpu-moe", opt->n_cpu_moe, "With --vram-budget: the experts of the first N layers in RAM, the "
                                                 "rest in VRAM (llama.cpp's option; default: as many as fit, spread "
                                                 "evenly)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--cpu-moe", opt->cpu_moe, "With --vram-budget: every routed expert in RAM")->excludes(n_cpu_moe);
  cmd->add_flag_callback(
      "--no-stream-prefill", [opt] { opt->stream_prefill = false; },
      "With --vram-budget: no staging buffer for copying a layer's experts in for long prefills (as run and bench "
      "take it)");
  cmd->add_option("-c,--ctx-size", opt->context, "With --vram-budget: KV cache positions to hold")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--kv-type", opt->kv_type, "With --vram-budget: KV cache type (f32, f16, q8_0, q4_0)");
  cmd->add_option("-b,--batch-size", opt->ubatch, "With --vram-budget: tokens of the largest forward pass")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--vram-reserve", opt->vram_reserve,
                  "With --vram-budget: VRAM the CUDA runtime keeps (default 1.25GiB)");
  cmd->add_option("--ram-bw", opt->ram_gb_s, "With --vram-budget: RAM read bandwidth in GB/s (default: measured)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gpu-bw", opt->gpu_gb_s, "With --vram-budget: GPU memory bandwidth in GB/s (default: the GPU's peak)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--pcie-bw", opt->pcie_gb_s,
                  "With --vram-budget: the GPU reading host memory over PCIe, in GB/s (bench_cuda_matvec --pcie-only "
                  "measures it): the ceilings then count the PCIe experts and, with --routing local, the expert cache "
                  "they fill (default: neither)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--routing", opt->routing,
                  "With --vram-budget: even (every expert equally likely: synth's random weights, the worst case) "
                  "or local (the temporal locality published for Qwen3-Next: an LRU cache of 12.5% of the experts "
                  "hits 67%, of 25% 81%; the VRAM experts an LRU cache, or with --pcie-bw the runtime's cache)")
      ->check(CLI::IsMember({"even", "local"}));
  cmd->add_option("--hit-rate", opt->hit_rate,
                  "With --vram-budget: the share of routed expert bytes found in VRAM (default: routing spread "
                  "evenly over the experts)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->callback([opt] {
    const gguf::Reader reader(opt->model);
    if (!opt->vram_budget.empty()) print_plan(reader, *opt);
    else if (opt->json) print_json(reader, *opt);
    else print_text(reader, *opt);
  });
}

}  // namespace moe::cli

// moeserve bench: prompt-processing and generation throughput, reported as llama-bench does
// (markdown table or JSON array), so the numbers line up with llama.cpp's column for column.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/load_options.h"
#include "cli/machine_bandwidth.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/log.h"
#include "core/nvml.h"
#include "core/thread_pool.h"
#include "core/units.h"
#include "engine/bench.h"
#include "engine/model_loading.h"
#include "engine/placement.h"
#include "engine/routing_locality.h"
#include "gguf/reader.h"
#include "models/model.h"
#include "tokenizer/tokenizer.h"

namespace moe::cli {
namespace {

struct BenchCliOptions {
  std::string model, kv_type = "f16", output = "md", routing = "plain";
  int n_prompt = 512, n_gen = 128, depth = 0, reps = 5, threads = 0, batch = 512;
  double mem_bw_gb_s = 0;  // 0: the model's device's, if it reports one (a GPU), else no roofline
  double ram_gb_s = 0, pcie_gb_s = 0;  // a hybrid placement's ceiling: RAM and link reads (0: measured)
  bool no_warmup = false;
  // Populate by default, so the first repetition does not measure the disk.
  LoadOptions load{.prefault = Prefault::Populate};
};

// llama-bench's "model" column is the architecture, size class and file type; here the
// architecture, block count and the type holding most of the bytes (what decides speed).
std::string model_type(const gguf::Reader& reader, const ModelConfig& c) {
  std::map<std::string, uint64_t> bytes_by_type;
  for (const auto& t : reader.tensors()) bytes_by_type[std::string(type_name(t.type))] += t.nbytes;
  std::string dominant = "?";
  uint64_t most = 0;
  for (const auto& [name, bytes] : bytes_by_type) {
    if (bytes > most) most = bytes, dominant = name;
  }
  std::transform(dominant.begin(), dominant.end(), dominant.begin(), [](unsigned char ch) { return std::toupper(ch); });
  return fmt::format("{} {}L {}", c.arch, c.n_layer, dominant);
}

// Same units as llama-bench: MiB below 1 GiB, else GiB; M or B parameters.
std::string size_cell(uint64_t bytes) {
  return bytes < (1ull << 30) ? fmt::format("{:.2f} MiB", bytes / 1024.0 / 1024.0)
                              : fmt::format("{:.2f} GiB", bytes / 1024.0 / 1024.0 / 1024.0);
}
std::string params_cell(uint64_t n) {
  return n < 1000000000ull ? fmt::format("{:.2f} M", n / 1e6) : fmt::format("{:.2f} B", n / 1e9);
}

void print_markdown(const std::vector<BenchResult>& results, const std::string& type, const ModelFootprint& fp,
                    const std::string& backend, int threads) {
  std::printf("| %-30s | %10s | %10s | %-10s | %7s | %15s | %20s |\n", "model", "size", "params", "backend", "threads",
              "test", "t/s");
  std::printf("| %s | %s: | %s: | %s | %s: | %s: | %s: |\n", std::string(30, '-').c_str(),
              std::string(9, '-').c_str(), std::string(9, '-').c_str(), std::string(10, '-').c_str(),
              std::string(6, '-').c_str(), std::string(14, '-').c_str(), std::string(19, '-').c_str());
  for (const auto& r : results) {
    const std::string ts = fmt::format("{:.2f} ± {:.2f}", r.avg_ts(), r.stddev_ts());
    // "±" is two bytes in UTF-8 but one column: pad by hand so the table stays aligned.
    std::printf("| %-30s | %10s | %10s | %-10s | %7d | %15s | %*s |\n", type.c_str(), size_cell(fp.bytes).c_str(),
                params_cell(fp.n_params).c_str(), backend.c_str(), threads, r.name.c_str(), 21, ts.c_str());
  }
}

// A decode test's rate of weight bytes: what each token streams, times tokens a second.
double weight_gb_s(const ModelFootprint& fp, const BenchResult& r) {
  return double(fp.weight_bytes_per_token) * r.avg_ts() / 1e9;
}

// What a decode test is measured against: the bandwidth roofline of the model's device, and for
// a hybrid placement the plan's own ceiling (inspect's "at once" figure: the CPU's and the GPU's
// parts overlapped, the PCIe experts and, with --routing local, the expert cache counted).
struct Ceilings {
  double mem_bw_gb_s = 0;             // 0: no roofline
  std::optional<PlacementPlan> plan;  // hybrid placements only
  MachineBandwidth bandwidth;         // the plan's

  // The plan's ceiling with the GPU's serial part of r's hybrid steps added (as measured; the
  // ceiling leaves it out): what is left of the gap is the overlap of the two sides. 0 without.
  double with_serial(const BenchResult& r) const {
    if (!plan || r.split.gpu_serial_s <= 0) return 0;
    const double tokens = double(r.n_tokens()) * double(r.samples_ns.size());
    return with_serial_part(plan->overlapped_tok_s, r.split.gpu_serial_s / tokens);
  }
};

nlohmann::json to_json(const std::vector<BenchResult>& results, const BenchCliOptions& opt, const std::string& type,
                       const ModelFootprint& fp, const LoadReport& load, const std::string& backend, int threads,
                       const Ceilings& ceilings) {
  const double mem_bw_gb_s = ceilings.mem_bw_gb_s;
  auto rows = nlohmann::json::array();
  for (const auto& r : results) {
    nlohmann::json j;
    j["build_commit"] = "";  // moeserve records its version instead
    j["build_number"] = 0;
    j["moeserve_version"] = MOE_VERSION;
    j["cpu_info"] = cpu_features().brand;
    j["gpu_info"] = "";
    j["backends"] = backend;
    j["model_filename"] = opt.model;
    j["model_type"] = type;
    j["model_size"] = fp.bytes;
    j["model_n_params"] = fp.n_params;
    j["n_batch"] = opt.batch;
    j["n_threads"] = threads;
    j["type_k"] = opt.kv_type;
    j["type_v"] = opt.kv_type;
    j["kv_type"] = opt.kv_type;
    j["routing"] = opt.routing;
    j["n_prompt"] = r.n_prompt;
    j["n_gen"] = r.n_gen;
    j["n_depth"] = r.n_depth;
    j["test_time"] = r.test_time;
    j["avg_ns"] = uint64_t(r.avg_ns());
    j["stddev_ns"] = uint64_t(r.stddev_ns());
    j["avg_ts"] = r.avg_ts();
    j["stddev_ts"] = r.stddev_ts();
    j["samples_ns"] = r.samples_ns;
    j["samples_ts"] = r.samples_ts;
    j["ms_per_token"] = r.ms_per_token();
    j["weight_bytes_per_token"] = fp.weight_bytes_per_token;
    if (r.vram_hit_rate() >= 0) {  // hybrid placement
      const double tokens = double(r.n_tokens()) * double(r.samples_ns.size());
      j["vram_expert_hit_rate"] = r.vram_hit_rate();
      j["pcie_expert_share"] = r.pcie_share();
      j["cpu_expert_ms_per_token"] = r.split.cpu_compute_s * 1e3 / tokens;
      j["cpu_wait_ms_per_token"] = r.split.cpu_wait_s * 1e3 / tokens;
      j["gpu_expert_ms_per_token"] = r.split.gpu_experts_s * 1e3 / tokens;
      j["gpu_wait_ms_per_token"] = r.split.gpu_wait_s * 1e3 / tokens;
      j["gpu_serial_ms_per_token"] = r.split.gpu_serial_s * 1e3 / tokens;
    }
    // How the weights reached RAM, so a run that started on a cold page cache can be told apart.
    j["load_prefault"] = std::string(prefault_name(load.prefault));
    j["load_mlock"] = load.locked;
    j["load_resident_pct"] = load.resident_fraction * 100.0;
    j["load_warm"] = load.warm();
    j["load_no_mmap"] = load.copied;
    j["load_seconds"] = load.copied ? load.copy_seconds + load.prefault_seconds : load.prefault_seconds;
    // The bandwidth ceiling applies to decoding, where each token streams the weights once.
    if (r.n_gen > 0) {
      j["weight_gb_s"] = weight_gb_s(fp, r);
      if (mem_bw_gb_s > 0) {
        j["mem_bw_gb_s"] = mem_bw_gb_s;
        j["roofline_ts"] = roofline_tokens_per_second(fp.weight_bytes_per_token, mem_bw_gb_s);
        j["roofline_fraction"] = weight_gb_s(fp, r) / mem_bw_gb_s;
      }
      if (ceilings.plan && ceilings.plan->overlapped_tok_s > 0) {
        j["ceiling_ts"] = ceilings.plan->overlapped_tok_s;
        j["ceiling_fraction"] = r.avg_ts() / ceilings.plan->overlapped_tok_s;
        j["ceiling_ram_gb_s"] = ceilings.bandwidth.ram_gb_s;
        j["ceiling_pcie_gb_s"] = ceilings.bandwidth.pcie_gb_s;
        j["ceiling_hit_rate"] = ceilings.plan->hit_rate;
        j["ceiling_pcie_share"] = ceilings.plan->pcie_share;
        if (const double with_serial = ceilings.with_serial(r); with_serial > 0) {
          j["ceiling_serial_ts"] = with_serial;
          j["ceiling_serial_fraction"] = r.avg_ts() / with_serial;
        }
      }
    }
    rows.push_back(std::move(j));
  }
  return rows;
}

void bench(const BenchCliOptions& opt) {
  if (opt.output != "md" && opt.output != "json") fail("bench: -o must be md or json, got '{}'", opt.output);
  const auto kv = parse_type(opt.kv_type);
  if (!kv) fail("unknown KV cache type '{}' (use f32, f16, q8_0 or q4_0)", opt.kv_type);
  const gguf::Reader reader(opt.model, opt.load.backing);
  const LoadReport load = prepare_model_memory(reader, opt.load);
  const auto tokenizer = tokenizer::Tokenizer::from_gguf(reader.metadata());
  ThreadPool pool(opt.threads > 0 ? opt.threads : int(std::thread::hardware_concurrency()));
  Ceilings ceilings;
  // A hybrid placement's ceiling takes the machine's bandwidths, measured before the model is loaded
  // so that nothing runs beside the measurements and the link's test buffers are gone before the
  // VRAM samples start.
  if (const std::optional<int> gpu = gpu_index(opt.load.device); opt.load.hybrid() && gpu) {
    ceilings.bandwidth = machine_bandwidth({.ram_gb_s = opt.ram_gb_s, .pcie_gb_s = opt.pcie_gb_s}, pool, gpu, true);
  }
  // What the GPU holds for this process: NVML's device figure, sampled from before the model is
  // loaded (loading's transient buffers count too) to the end of the run.
  const NvmlPeakSampler vram;
  LoadOptions load_options = opt.load;
  load_options.context = int64_t(opt.depth) + opt.n_prompt + opt.n_gen + 1;  // what a placement keeps room for
  load_options.batch = std::min(opt.batch, std::max({opt.n_prompt, opt.depth, 1}));
  load_options.kv_type = *kv;
  PlacementRequest planned;  // its budget stays 0 unless a hybrid load plans
  auto model = open_model(reader, load_options, &planned);
  const ModelConfig& c = model->config();
  // --routing local: experts chosen with Qwen3-Next's published locality instead of by the
  // (random) router, through the engines' routing hook.
  std::optional<RoutingLocality> locality;
  std::optional<LocalRouting> local_routing;
  if (opt.routing == "local") {
    if (c.n_expert <= 0) fail("bench --routing local: {} has no routed experts", c.arch);
    locality.emplace(c.n_expert, c.n_expert_used);
    local_routing.emplace(*locality, c.n_layer, 1234);
    model->set_routing_source(&*local_routing);
  }
  if (planned.vram_budget > 0) {  // the plan again, with the bandwidths and the routing: its ceiling
    planned.bandwidth = ceilings.bandwidth;
    planned.bandwidth.gpu_gb_s = model->memory_bandwidth_gb_s();
    planned.locality = locality ? &*locality : nullptr;
    ceilings.plan = plan_placement(reader, c, planned);
  }

  BenchOptions b;
  b.n_prompt = opt.n_prompt;
  b.n_gen = opt.n_gen;
  b.depth = opt.depth;
  b.reps = opt.reps;
  b.batch = opt.batch;
  b.kv_type = *kv;
  b.warmup = !opt.no_warmup;
  if (tokenizer.vocab().add_bos()) b.bos = tokenizer.vocab().bos();

  const ModelFootprint fp = model_footprint(reader, c);
  const std::string type = model_type(reader, c);
  spdlog::info("{}: {} tensor bytes, {} weight bytes per decoded token, {} threads, KV {}", type, fp.bytes,
               fp.weight_bytes_per_token, pool.size(), opt.kv_type);
  const auto results = run_bench(*model, b, pool, [](const std::string& line) { spdlog::info("bench: {}", line); });
  const std::optional<uint64_t> vram_after = first_gpu_memory_used(), vram_peak = vram.peak();
  std::optional<uint64_t> vram_used, vram_most;  // at the end of the run, and the most at any sample
  if (vram.baseline() && vram_after && vram_peak && model->backend() != "CPU") {
    vram_used = *vram_after - std::min(*vram_after, *vram.baseline());
    vram_most = *vram_peak - std::min(*vram_peak, *vram.baseline());
  }
  // The decode roofline: --mem-bw, else the bandwidth the model's device reports (a GPU's HBM).
  ceilings.mem_bw_gb_s = opt.mem_bw_gb_s > 0 ? opt.mem_bw_gb_s : model->memory_bandwidth_gb_s();
  const double mem_bw = ceilings.mem_bw_gb_s;
  if (opt.output == "json") {
    nlohmann::json rows = to_json(results, opt, type, fp, load, model->backend(), int(pool.size()), ceilings);
    if (vram_used) {
      for (auto& row : rows) row["vram_used_bytes"] = *vram_used, row["vram_peak_bytes"] = *vram_most;
    }
    std::printf("%s\n", rows.dump(2).c_str());
  } else {
    print_markdown(results, type, fp, model->backend(), int(pool.size()));
    if (mem_bw > 0) {
      std::printf("\ndecode roofline at %.1f GB/s: %.2f t/s (%llu weight bytes per token)\n", mem_bw,
                  roofline_tokens_per_second(fp.weight_bytes_per_token, mem_bw),
                  static_cast<unsigned long long>(fp.weight_bytes_per_token));
    }
    if (vram_used) {
      std::printf("VRAM used by this process (NVML): %s after the run, at most %s (sampled every 50 ms from before "
                  "loading)\n",
                  format_bytes(*vram_used).c_str(), format_bytes(*vram_most).c_str());
    }
    for (const auto& r : results) {
      if (r.vram_hit_rate() >= 0) {
        const double tokens = double(r.n_tokens()) * double(r.samples_ns.size());
        std::printf("%s: %.1f%% of the routed experts found in VRAM, %.1f%% read over PCIe; the CPU's experts %.3f "
                    "ms a token, its waits for the GPU %.3f ms; the GPU's experts %.3f ms, its waits for the CPU "
                    "%.3f ms, its serial part %.3f ms\n",
                    r.name.c_str(), 100.0 * r.vram_hit_rate(), 100.0 * r.pcie_share(),
                    r.split.cpu_compute_s * 1e3 / tokens, r.split.cpu_wait_s * 1e3 / tokens,
                    r.split.gpu_experts_s * 1e3 / tokens, r.split.gpu_wait_s * 1e3 / tokens,
                    r.split.gpu_serial_s * 1e3 / tokens);
      }
      if (r.n_gen == 0) continue;
      std::printf("%s streams the weights at %.1f GB/s", r.name.c_str(), weight_gb_s(fp, r));
      if (mem_bw > 0) std::printf(" (%.0f%% of the roofline)", 100.0 * weight_gb_s(fp, r) / mem_bw);
      if (ceilings.plan && ceilings.plan->overlapped_tok_s > 0) {
        std::printf("; %.0f%% of the placement's ceiling, %.2f t/s (inspect's: RAM %.1f GB/s, PCIe %.1f GB/s, "
                    "%.0f%% of the routed expert bytes in VRAM)",
                    100.0 * r.avg_ts() / ceilings.plan->overlapped_tok_s, ceilings.plan->overlapped_tok_s,
                    ceilings.bandwidth.ram_gb_s, ceilings.bandwidth.pcie_gb_s, 100.0 * ceilings.plan->hit_rate);
        if (const double with_serial = ceilings.with_serial(r); with_serial > 0) {
          std::printf("; %.0f%% of %.2f t/s, the ceiling with the GPU's serial part added",
                      100.0 * r.avg_ts() / with_serial, with_serial);
        }
      }
      std::printf("\n");
    }
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto opt = std::make_shared<BenchCliOptions>();
  auto* cmd = app.add_subcommand("bench", "Measure prompt-processing and generation throughput (like llama-bench)");
  cmd->add_option("-m,--model", opt->model, "GGUF model (for a split model, the first shard)")->required();
  cmd->add_option("-p,--n-prompt", opt->n_prompt, "Prompt tokens of the pp test (0: skip)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-n,--n-gen", opt->n_gen, "Generated tokens of the tg test (0: skip)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-d,--n-depth", opt->depth,
                  "Tokens already in the context when each test starts (prefilled, not timed): the speed at that "
                  "context length")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-r,--repetitions", opt->reps, "Repetitions of each test")->check(CLI::PositiveNumber);
  cmd->add_option("-t,--threads", opt->threads, "CPU threads (default: all)");
  cmd->add_option("-b,--batch-size", opt->batch, "Prompt tokens per forward pass")->check(CLI::PositiveNumber);
  cmd->add_option("--kv-type", opt->kv_type, "KV cache type: f32, f16, q8_0, q4_0");
  cmd->add_option("-o,--output", opt->output, "Output format: md or json");
  cmd->add_option("--mem-bw", opt->mem_bw_gb_s,
                  "Memory bandwidth in GB/s, for the decode roofline (default: a GPU's own peak; none on the CPU)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ram-bw", opt->ram_gb_s,
                  "With a hybrid placement: RAM read bandwidth in GB/s for the placement's ceiling (default: measured)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--pcie-bw", opt->pcie_gb_s,
                  "With a hybrid placement: the link's read bandwidth in GB/s for the placement's ceiling (default: "
                  "measured)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-warmup", opt->no_warmup, "Skip the warm-up runs");
  cmd->add_option("--routing", opt->routing,
                  "Which experts the tokens go to: plain (the model's router; synth's random weights spread them "
                  "evenly, the worst case for an expert cache) or local (Qwen3-Next's published locality: an LRU "
                  "cache of 64 of 512 experts hits 67%)")
      ->check(CLI::IsMember({"plain", "local"}));
  add_load_options(*cmd, opt->load);
  cmd->callback([opt] { bench(*opt); });
}

}  // namespace moe::cli

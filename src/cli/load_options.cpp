#include "cli/load_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <numeric>
#include <optional>
#include <string>

#include "core/error.h"
#include "core/units.h"
#include "core/log.h"
#include "engine/placement.h"
#include "ops/cpu/matmul.h"
#ifdef MOE_HAVE_CUDA
#include "models/cuda/gpu_model.h"
#include "ops/cuda/device.h"
#endif

namespace moe::cli {

void add_load_options(CLI::App& cmd, LoadOptions& options) {
  const auto set_prefault = [&options](const std::string& name) {
    for (Prefault how : {Prefault::None, Prefault::Advise, Prefault::Populate}) {
      if (name == prefault_name(how)) options.prefault = how;
    }
  };
  cmd.add_option_function<std::string>(
         "--prefault", set_prefault,
         fmt::format("Bring the model's pages into RAM before the first token: none, advise (the kernel reads "
                     "ahead in the background) or populate (read everything now); default {}",
                     prefault_name(options.prefault)))
      ->check(CLI::IsMember({"none", "advise", "populate"}));
  cmd.add_flag_callback(
      "--no-mmap", [&options] { options.backing = MappedFile::Backing::HugePageCopy; },
      "Read the model into private memory in 2 MiB huge pages instead of mapping the file: fewer TLB misses "
      "(decode 1.47x faster on a VM, docs/performance.md) for a slower load and private RAM");
  cmd.add_flag_callback(
      "--no-repack", [&options] { options.repack = false; },
      "Use every matrix in place in the model file instead of repacking Q4_K matrices into the faster "
      "interleaved layout (AVX-512 VNNI CPUs; costs a copy at load, the file's pages are released)");
  cmd.add_option("--device", options.device,
                 "Where the model runs: auto (the GPU when the architecture runs there and the weights fit, else the "
                 "CPU), cpu, cuda or cudaN")
      ->capture_default_str();
  cmd.add_option_function<int>(
      "--n-gpu-layers",
      [&options](int n) {
        if (n < 0) throw CLI::ValidationError("-ngl", "must be >= 0");
        options.device = n == 0 ? "cpu" : "cuda";
        options.gpu_layers = n;
      },
      "-ngl: layers on the GPU, as llama.cpp counts them: 0 runs on the CPU, at least the model's layer count on the GPU "
      "(a split between the two comes with --vram-budget)");
  cmd.add_option("--vram-budget", options.vram_budget,
                 "Everything this process may hold on the GPU (e.g. 16GiB): the weights every token reads, the KV "
                 "cache and buffers go to VRAM with as many routed experts a layer as fit; the CPU computes the rest "
                 "from RAM at the same time (`inspect --vram-budget` prints the plan)");
  auto* n_cpu_moe = cmd.add_option("--n-cpu-moe", options.n_cpu_moe,
                                   "As llama.cpp: the routed experts of the first N layers stay in RAM (computed by "
                                   "the CPU), the other layers' in VRAM")
                        ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--cpu-moe", options.cpu_moe, "As llama.cpp: every routed expert stays in RAM, computed by the CPU")
      ->excludes(n_cpu_moe);
  cmd.add_flag_callback(
      "--no-stream-prefill", [&options] { options.stream_prefill = false; },
      "With part of the experts in RAM: prefills of 256+ tokens leave them to the CPU instead of copying each "
      "layer's experts to the GPU (which needs one layer's experts of VRAM)");
  cmd.add_option_function<std::string>(
         "--pcie-experts",
         [&options](const std::string& value) {
           int n = -1;
           const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
           if (value == "auto") {
             options.pcie_experts = -1;
           } else if (ec == std::errc() && end == value.data() + value.size() && n >= 0) {
             options.pcie_experts = n;
           } else {
             throw CLI::ValidationError("--pcie-experts", "'" + value + "' is neither auto nor a count of experts");
           }
         },
         "With part of the experts in RAM: in each MoE layer of a decode step, up to N of a token's experts left in "
         "RAM are computed by the GPU reading them over PCIe while the CPU computes the others (quantized weights). "
         "auto (the default): N follows the balance of the two sides, step by step; 0: none")
      ->type_name("N|auto");
  cmd.add_option_function<std::string>(
         "--expert-cache",
         [&options](const std::string& value) {
           if (value != "on" && value != "off") {
             throw CLI::ValidationError("--expert-cache", "'" + value + "' is neither on nor off");
           }
           options.expert_cache = value == "on";
         },
         "With part of the experts in RAM and PCIe experts: on (the default): the experts the GPU reads over PCIe "
         "land in VRAM, in place of the least recently used, so that the VRAM experts follow the routing; off: each "
         "layer keeps its first experts")
      ->type_name("on|off");
  cmd.add_option("--weight-prefetch", options.weight_prefetch,
                 fmt::format("Tuning: how far ahead (bytes) the CPU's decode products request weights from RAM, 0 for "
                             "none (default {}; bench_expert_sum measures the choices)",
                             kDefaultWeightPrefetchBytes))
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--mlock", options.mlock,
               "Lock the model in RAM so it is never paged out (a failure, e.g. RLIMIT_MEMLOCK, is a warning)");
}

std::optional<int> gpu_index(const std::string& device) {
  if (device == "cpu") return std::nullopt;
  if (device == "auto" || device == "cuda") return 0;
  if (device.starts_with("cuda") && device.size() > 4 &&
      device.find_first_not_of("0123456789", 4) == std::string::npos) {
    return std::stoi(device.substr(4));
  }
  fail("--device '{}': use auto, cpu, cuda or cudaN", device);
}

namespace {

#ifdef MOE_HAVE_CUDA
// Why the GPU backend cannot take this model on device `gpu`; empty when it can. Weights that
// do not fit only count for "auto": asked for explicitly, loading says how much is missing.
std::string gpu_unusable(const gguf::Reader& reader, int gpu, bool required) {
  const auto list = cuda::list_gpus();
  if (list.gpus.empty()) return "no CUDA device: " + list.reason;
  if (gpu >= int(list.gpus.size())) return fmt::format("no CUDA device {} ({} found)", gpu, list.gpus.size());
  std::string why;
  if (!cuda::gpu_supports(reader, &why)) return why;
  const uint64_t free_bytes = list.gpus[size_t(gpu)].free_bytes;
  if (!required && reader.tensor_bytes() > free_bytes) {
    return fmt::format("the weights ({}) do not fit the free VRAM ({})", format_bytes(reader.tensor_bytes()),
                       format_bytes(free_bytes));
  }
  return "";
}

// The placement the options ask for, planned for this device and loaded.
std::unique_ptr<Model> open_hybrid(const gguf::Reader& reader, const LoadOptions& options, int gpu,
                                   PlacementRequest* planned) {
  const std::string why = gpu_unusable(reader, gpu, true);
  if (!why.empty()) fail("--vram-budget / --n-cpu-moe: {}", why);
  const uint64_t free_bytes = cuda::list_gpus().gpus[size_t(gpu)].free_bytes;
  const auto cpu_view = load_model(reader, ModelOptions{.repack = false});  // the hyperparameters, nothing copied
  const ModelConfig& c = cpu_view->config();
  PlacementRequest request{.vram_budget = options.vram_budget.empty() ? free_bytes : parse_bytes(options.vram_budget),
                           .n_cpu_moe = options.cpu_moe ? c.n_layer : options.n_cpu_moe,
                           .context = options.context,
                           .kv_type = options.kv_type,
                           .ubatch = options.batch,
                           .stream_prefill = options.stream_prefill};
  if (request.vram_budget > free_bytes) {
    fail("--vram-budget {}: device {} has {} free", format_bytes(request.vram_budget), gpu, format_bytes(free_bytes));
  }
  const PlacementPlan plan = plan_placement(reader, c, request);
  if (planned) *planned = request;
  const int in_vram = std::accumulate(plan.vram_experts.begin(), plan.vram_experts.end(), 0);
  spdlog::info("device: cuda{} + cpu: {} of {} routed experts in VRAM ({} of {} planned)", gpu, in_vram,
               int64_t(c.n_expert) * c.n_layer, format_bytes(plan.used()), format_bytes(plan.budget));
  // Nothing left in RAM: nothing to stream either.
  const bool all_in_vram = std::all_of(plan.vram_experts.begin(), plan.vram_experts.end(),
                                       [&](int n) { return n == c.n_expert; });
  return cuda::load_hybrid_model(reader, gpu,
                                 {.vram_experts = plan.vram_experts,
                                  .stream_prefill = options.stream_prefill && !all_in_vram,
                                  // auto: any number of a token's experts, as the balance of the two sides says
                                  .pcie_experts = options.pcie_experts < 0 ? c.n_expert_used : options.pcie_experts,
                                  .pcie_auto = options.pcie_experts < 0,
                                  .expert_cache = options.expert_cache,
                                  .kv_positions = request.context});
}
#endif

}  // namespace

std::unique_ptr<Model> open_model(const gguf::Reader& reader, const LoadOptions& options,
                                  [[maybe_unused]] PlacementRequest* planned) {  // read by a CUDA build only
  if (options.weight_prefetch >= 0) set_weight_prefetch_bytes(size_t(options.weight_prefetch));
  const std::optional<int> gpu = gpu_index(options.device);
  const bool required = options.device != "auto";
  if (!gpu && options.hybrid()) {
    fail("--vram-budget / --n-cpu-moe / --cpu-moe split the experts with a GPU: not with --device cpu");
  }
  if (gpu) {
    const auto n_layer = int64_t(reader.metadata().get_uint(std::string(reader.architecture()) + ".block_count"));
    if (options.gpu_layers > 0 && options.gpu_layers < n_layer) {
      fail("-ngl {}: {} of the {} layers on the GPU is not supported yet; use -ngl 0 (CPU) or -ngl {} (GPU)",
           options.gpu_layers, options.gpu_layers, n_layer, n_layer);
    }
#ifdef MOE_HAVE_CUDA
    if (options.hybrid()) return open_hybrid(reader, options, *gpu, planned);
    const std::string why = gpu_unusable(reader, *gpu, required);
    if (why.empty()) {
      spdlog::info("device: cuda{}", *gpu);
      return cuda::load_gpu_model(reader, *gpu);
    }
    if (required) fail("--device {}: {}", options.device, why);
    spdlog::info("device: cpu ({})", why);
#else
    if (options.hybrid()) fail("--vram-budget / --n-cpu-moe: this moeserve was built without CUDA");
    if (required) fail("--device {}: this moeserve was built without CUDA", options.device);
#endif
  }
  return build_model(reader, options);
}

}  // namespace moe::cli

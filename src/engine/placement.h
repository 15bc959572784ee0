#pragma once
// Where a model's weights go when it does not fit in VRAM: the plan of --vram-budget.
//
// Everything the process holds on the GPU counts against the budget: the CUDA runtime's own
// memory (context, library workspaces, graph pools: a reserve), the weights every token reads
// (attention, delta-nets, routers, shared experts, norms, the embedding and output matrices),
// the KV cache and recurrent state for the requested context, the activation buffers of the
// largest forward pass; what is left holds routed experts, as many a layer in every layer (an
// even split keeps each layer's CPU share equal, which is what bounds a layer when the CPU and
// the GPU work at once). The rest of the experts stay in RAM, where the file maps them.
//
// The plan also states the decode ceilings the machine's bandwidths allow (one sequence): per
// token the GPU reads its weights and the experts it holds that the token routes to, the CPU
// reads the routed experts left in RAM. With routing spread evenly over the experts (random
// weights: synth's worst case) a layer holding s of E experts serves s / E of the routed
// expert bytes from VRAM; with routing of a stated locality (routing_locality.h) its s experts
// act as an LRU cache; a measured hit rate replaces either. Where the link's bandwidth is known,
// the GPU also reads part of a token's missed experts over PCIe (the PCIe experts), which is
// how the runtime's expert cache fills (expert_cache.h): the "at once" ceiling then takes the
// best share for the bandwidths, every expert read from host RAM (the CPU's and the link's)
// counted against the RAM's bandwidth.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "engine/expert_cache.h"
#include "engine/routing_locality.h"
#include "gguf/reader.h"
#include "models/model.h"

namespace moe {

// Bandwidths in GB/s (1e9 bytes a second); 0 where unknown.
struct MachineBandwidth {
  double ram_gb_s = 0;   // the CPU reading RAM, all cores
  double gpu_gb_s = 0;   // the GPU reading its memory
  double pcie_gb_s = 0;  // the GPU reading host memory over the link (0: no PCIe experts in the ceilings)
  // All three known: the ceilings count the PCIe experts.
  bool with_link() const { return pcie_gb_s > 0 && gpu_gb_s > 0 && ram_gb_s > 0; }
};

struct PlacementRequest {
  uint64_t vram_budget = 0;  // bytes, everything the process holds on the GPU
  // llama.cpp's --n-cpu-moe: the routed experts of the first n_cpu_moe layers stay in RAM and
  // every other layer's are all in VRAM (-1: as many as the budget holds, spread evenly).
  int n_cpu_moe = -1;
  int64_t context = 4096;  // KV cache positions to hold
  GgmlType kv_type = GgmlType::F16;
  int ubatch = 512;  // tokens of the largest forward pass (prefill), for the activation buffers
  // The CUDA runtime's own memory: context, kernels, library workspaces, graph pools, and the
  // driver's tables for the registered model. NVML saw the hybrid engine hold 0.23-0.24 GiB more
  // than a plan with 640 MiB here, at every budget, and later, with 1 GiB, one run of the 80B
  // (q8_0 KV, 4096-token passes) 0.07 GiB over its 16 GiB budget, the same plan with f16 KV 0.02
  // under (H200, CUDA 13; docs/performance.md): 1.25 GiB keeps a margin over both.
  uint64_t runtime_reserve = 1280 * 1024 * 1024ull;
  MachineBandwidth bandwidth{};
  // Room for one layer's experts in VRAM, for prefills that copy the experts left in RAM to
  // the GPU instead of computing them on the CPU (models/cuda/expert_stream.h).
  bool stream_prefill = false;
  double hit_rate = -1;  // the share of routed expert bytes found in VRAM; < 0: from the routing
  // Routing with temporal locality (its expert count the model's): each layer's VRAM experts
  // act as an LRU cache of that many slots. Null: routing spread evenly over the experts.
  const RoutingLocality* locality = nullptr;
};

struct PlacementPlan {
  uint64_t budget = 0;
  uint64_t runtime = 0;       // the reserve
  uint64_t dense = 0;         // weights every token reads
  uint64_t cache = 0;         // KV cache and recurrent state
  uint64_t activations = 0;   // the largest pass's buffers
  uint64_t staging = 0;       // a streamed prefill's buffer: the largest layer's experts (+ slack)
  uint64_t experts_vram = 0;  // routed experts placed in VRAM
  uint64_t experts_ram = 0;   // routed experts left in RAM
  int n_layer = 0, n_expert = 0, n_expert_used = 0;
  uint64_t expert_bytes = 0;  // one expert of one layer (gate, up and down): the largest layer's
  std::vector<int> vram_experts;  // per layer, how many of its experts are in VRAM

  // Decode, one sequence: the bytes one token reads on each side and the ceilings.
  double hit_rate = 0;            // routed expert bytes served from VRAM, as a share
  int pcie_share = 0;             // with the link's bandwidth: a token's experts a layer read over it, at best
  uint64_t token_link_bytes = 0;  // routed experts read over the link (part of token_ram_bytes' RAM reads)
  uint64_t token_gpu_bytes = 0;   // dense weights + the routed experts found in VRAM
  uint64_t token_ram_bytes = 0;   // routed experts read from RAM
  double serial_tok_s = 0;        // the CPU's experts, then the GPU's part, one after the other
  double overlapped_tok_s = 0;    // both at once (the slower side sets the pace)
  double ram_bound_tok_s = 0;     // what RAM alone allows (however fast the GPU): 0 with nothing in RAM

  uint64_t used() const { return runtime + dense + cache + activations + staging + experts_vram; }
};

// The plan for `reader`'s model (config: its hyperparameters as the CPU engine read them).
// Throws moe::Error for a budget too small for everything but the experts, saying how much is
// needed, or for an n_cpu_moe whose VRAM layers do not fit.
PlacementPlan plan_placement(const gguf::Reader& reader, const ModelConfig& config, const PlacementRequest& request);

// Decode of one hybrid layer for one token at each PCIe share s (outcomes[s], s = 0..k: how many
// of its k routed experts hit VRAM, are read over the link, fall to the CPU): the share whose
// slowest resource is fastest. The GPU reads `dense` and the hits at gpu_gb_s, the link its
// experts at pcie_gb_s, and host RAM serves the link's and the CPU's experts at ram_gb_s.
struct LayerDecode {
  int share = 0;
  CacheOutcome picks;
  double seconds = 0;
};
LayerDecode fastest_share(std::span<const CacheOutcome> outcomes, uint64_t dense, uint64_t expert,
                          const MachineBandwidth& bandwidth);

// A decode ceiling (tokens a second) with a fixed time added to every token: the GPU's serial
// part of a hybrid step (attention or delta-net, router, hand-over), which the ceilings above
// leave out, as bench measures it. 0 stays 0.
double with_serial_part(double tok_s, double serial_s_per_token);

// The plan as lines for a person (inspect --vram-budget).
std::string describe(const PlacementPlan& plan, const PlacementRequest& request);

}  // namespace moe

#include "engine/placement.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <numeric>
#include <string_view>

#include "core/error.h"
#include "core/units.h"
#include "engine/bench.h"

namespace moe {
namespace {

// N of "blk.N....", else -1.
int layer_of(std::string_view name) {
  if (!name.starts_with("blk.")) return -1;
  int layer = -1;
  const char* begin = name.data() + 4;
  const auto [end, ec] = std::from_chars(begin, name.data() + name.size(), layer);
  return ec == std::errc() && end != begin ? layer : -1;
}

// What each layer holds, and what the token-wide tensors weigh.
struct Footprint {
  std::vector<uint64_t> dense;    // per layer: the weights every token reads
  std::vector<uint64_t> expert;   // per layer: one routed expert (its slices of gate, up and down)
  uint64_t global = 0;            // embedding, output norm and matrix (in VRAM)
  uint64_t global_per_token = 0;  // what a token reads of them (one embedding row where the output is its own matrix)
  uint64_t widest = 0;            // the most outputs of any matrix a layer runs on every token (a row's projections)
};

Footprint footprint(const gguf::Reader& reader, int n_layer, int n_expert) {
  Footprint f;
  f.dense.assign(size_t(n_layer), 0);
  f.expert.assign(size_t(n_layer), 0);
  const bool own_output = reader.find_tensor("output.weight") != nullptr;
  for (const auto& t : reader.tensors()) {
    const int layer = layer_of(t.name);
    if (layer >= n_layer) continue;  // Qwen3-Next's MTP block: not run
    if (layer < 0) {
      f.global += t.nbytes;
      f.global_per_token += bytes_read_per_token(t, own_output);
    } else if (is_routed_expert(t.name)) {
      f.expert[size_t(layer)] += t.nbytes / uint64_t(n_expert);  // n_expert equal slices
    } else {
      f.dense[size_t(layer)] += t.nbytes;
      if (t.n_dims == 2) f.widest = std::max(f.widest, uint64_t(t.ne[1]));
    }
  }
  return f;
}

// The activation buffers of a forward pass of `ub` tokens on the GPU engine, generously: the
// residual stream and normed rows, two rows of the widest projection a layer runs (Qwen3-Next's
// delta-net q|k|v|z, 12288 wide, with its convolved copy; an attention layer's q+gate|k|v), the
// router's logits, each (token, expert) row's gate/up and output, their quantized copies, and
// one row of logits; a quarter more for what this misses. For the 80B at 4096 tokens a pass
// this is 371 KiB a token; NVML saw 370 (docs/performance.md, 2026-11-27 (c)).
uint64_t activation_bytes(const ModelConfig& c, int ub, uint64_t widest) {
  const uint64_t n = uint64_t(std::max(ub, 1)), d = uint64_t(c.n_embd);
  const uint64_t k = uint64_t(c.n_expert_used) + 1;  // + a shared expert run as one more
  const uint64_t ff = uint64_t(std::max(c.n_ff_expert, c.n_ff));
  const uint64_t qkv = uint64_t(2 * c.n_head + 2 * c.n_head_kv) * uint64_t(c.head_dim);
  const uint64_t wide = std::max({qkv, 2 * d, widest});
  const uint64_t floats = n * (2 * d + 2 * wide + uint64_t(c.n_expert) + 1) + n * k * (2 * ff + d);
  const uint64_t quantized = n * k * std::max(d, ff) * 2;  // int8 values, scales, sums
  return (floats * 4 + quantized + uint64_t(c.n_vocab) * 4) * 5 / 4;
}

double seconds(double bytes, double gb_s) { return bytes / (gb_s * 1e9); }

// The share of a layer's picks its `slots` VRAM experts serve when none is ever swapped in: as
// given, or with routing spread evenly the layer's share of the experts.
double fixed_hit_rate(const PlacementRequest& r, int slots, int n_expert) {
  return r.hit_rate >= 0 ? (slots > 0 ? r.hit_rate : 0.0) : double(slots) / double(n_expert);
}

// Of a token's k routed experts in a layer holding `slots`, at each PCIe share 0..k: the hits,
// the link's (filling the cache where the routing has locality) and the CPU's.
std::vector<CacheOutcome> share_outcomes(const ModelConfig& c, int slots, const PlacementRequest& r) {
  const int k = c.n_expert_used;
  std::vector<CacheOutcome> out;
  for (int share = 0; share <= k; ++share) {
    if (r.hit_rate < 0 && r.locality && slots > 0) {
      out.push_back(simulate_cache(*r.locality, slots, share));
      continue;
    }
    // A given hit rate, or routing spread evenly: admissions change no odds, the link only
    // moves misses off the CPU (at most `share` of a token's; on average what is missed).
    const double h = fixed_hit_rate(r, slots, c.n_expert);
    const double misses = k * (1 - h), link = std::min(double(share), misses);
    out.push_back({.hits = k * h, .fills = link, .cpu = misses - link});
  }
  return out;
}

}  // namespace

double with_serial_part(double tok_s, double serial_s_per_token) {
  return tok_s > 0 ? 1.0 / (1.0 / tok_s + std::max(0.0, serial_s_per_token)) : 0.0;
}

LayerDecode fastest_share(std::span<const CacheOutcome> outcomes, uint64_t dense, uint64_t expert,
                          const MachineBandwidth& bw) {
  LayerDecode best;
  for (size_t share = 0; share < outcomes.size(); ++share) {
    const CacheOutcome& o = outcomes[share];
    if (o.fills > 0 && bw.pcie_gb_s <= 0) break;
    const double gpu = seconds(double(dense) + o.hits * double(expert), bw.gpu_gb_s);
    const double link = o.fills > 0 ? seconds(o.fills * double(expert), bw.pcie_gb_s) : 0.0;
    const double ram = seconds((o.fills + o.cpu) * double(expert), bw.ram_gb_s);
    const double t = std::max({gpu, link, ram});
    if (share == 0 || t < best.seconds) best = {.share = int(share), .picks = o, .seconds = t};
  }
  return best;
}

PlacementPlan plan_placement(const gguf::Reader& reader, const ModelConfig& c, const PlacementRequest& r) {
  if (c.n_expert <= 0) fail("--vram-budget: {} has no routed experts to leave in RAM", c.arch);
  if (r.locality && r.locality->n_expert() != c.n_expert) {
    fail("placement: routing locality for {} experts, the model has {}", r.locality->n_expert(), c.n_expert);
  }
  if (r.context < 1 || r.ubatch < 1) fail("placement: a context of {} and passes of {} tokens", r.context, r.ubatch);
  const Footprint f = footprint(reader, c.n_layer, c.n_expert);
  PlacementPlan p;
  p.budget = r.vram_budget;
  p.runtime = r.runtime_reserve;
  p.n_layer = c.n_layer;
  p.n_expert = c.n_expert;
  p.n_expert_used = c.n_expert_used;
  p.dense = f.global;
  for (uint64_t b : f.dense) p.dense += b;
  const uint64_t kv_row = row_bytes(r.kv_type, uint64_t(c.n_head_kv) * uint64_t(c.head_dim));
  p.cache = uint64_t(c.n_cache_layers) * uint64_t(r.context) * 2 * kv_row + c.recurrent_floats * sizeof(float);
  p.activations = activation_bytes(c, r.ubatch, f.widest);
  p.expert_bytes = *std::max_element(f.expert.begin(), f.expert.end());
  if (r.stream_prefill) {  // every expert of a layer, a shared expert of their shape as one more, alignment
    const bool shared = reader.find_tensor("blk.0.ffn_gate_shexp.weight") != nullptr;
    p.staging = p.expert_bytes * (uint64_t(c.n_expert) + (shared ? 1 : 0)) + (1u << 20);
  }

  const uint64_t fixed = p.runtime + p.dense + p.cache + p.activations + p.staging;
  if (r.vram_budget < fixed) {
    fail("--vram-budget {} is too small: without any expert this model needs {} of VRAM (runtime reserve {}, "
         "weights every token reads {}, KV cache and state for {} tokens {}, buffers for passes of {} tokens {}{})",
         format_bytes(r.vram_budget), format_bytes(fixed), format_bytes(p.runtime), format_bytes(p.dense), r.context,
         format_bytes(p.cache), r.ubatch, format_bytes(p.activations),
         p.staging ? fmt::format(", a layer's experts for streamed prefills {}", format_bytes(p.staging)) : "");
  }
  const uint64_t room = r.vram_budget - fixed, n_expert = uint64_t(c.n_expert);
  p.vram_experts.assign(size_t(c.n_layer), 0);
  if (r.n_cpu_moe >= 0) {  // llama.cpp's layout: whole layers of experts, the first ones in RAM
    uint64_t need = 0;
    for (int il = std::min(r.n_cpu_moe, c.n_layer); il < c.n_layer; ++il) need += f.expert[size_t(il)] * n_expert;
    if (need > room) {
      int fits = c.n_layer;  // the fewest layers in RAM that leave the rest within the budget
      for (uint64_t rest = 0; fits > 0 && rest + f.expert[size_t(fits - 1)] * n_expert <= room; --fits) {
        rest += f.expert[size_t(fits - 1)] * n_expert;
      }
      fail("--n-cpu-moe {}: the experts of layers {} to {} need {} of VRAM, {} is left in a budget of {}; "
           "--n-cpu-moe {} fits",
           r.n_cpu_moe, r.n_cpu_moe, c.n_layer - 1, format_bytes(need), format_bytes(room),
           format_bytes(r.vram_budget), fits);
    }
    for (int il = std::min(r.n_cpu_moe, c.n_layer); il < c.n_layer; ++il) p.vram_experts[size_t(il)] = c.n_expert;
  } else {
    // The same count in every layer, then one more in the first layers while it fits.
    const uint64_t per_round = std::accumulate(f.expert.begin(), f.expert.end(), uint64_t(0));  // one a layer
    const int even = per_round ? int(std::min(n_expert, room / per_round)) : c.n_expert;
    uint64_t left = room - uint64_t(even) * per_round;
    for (int il = 0; il < c.n_layer; ++il) {
      const uint64_t one = f.expert[size_t(il)];
      p.vram_experts[size_t(il)] = even;
      if (even < c.n_expert && one <= left) p.vram_experts[size_t(il)] += 1, left -= one;
    }
  }

  // Per token: the GPU reads every layer's dense weights and its experts' hits; the CPU the rest.
  double serial = seconds(double(f.global_per_token), r.bandwidth.gpu_gb_s), overlapped = serial;
  uint64_t routed = 0, hit_bytes = 0;
  std::map<int, std::vector<CacheOutcome>> outcomes;  // by a layer's slot count (an even spread: one or two)
  const bool link = r.bandwidth.with_link();
  for (int il = 0; il < c.n_layer; ++il) {
    const uint64_t one = f.expert[size_t(il)], dense = f.dense[size_t(il)];
    const int slots = p.vram_experts[size_t(il)], k = c.n_expert_used;
    p.experts_vram += one * uint64_t(slots);
    p.experts_ram += one * (n_expert - uint64_t(slots));
    const uint64_t layer_routed = one * uint64_t(k);
    // Without the link: the hit rate as given, of an LRU cache (copies free) on routing of the
    // stated locality, or the layer's share of the experts.
    const double h =
        r.hit_rate < 0 && r.locality ? r.locality->lru_hit_rate(slots) : fixed_hit_rate(r, slots, c.n_expert);
    const double t_gpu = seconds(double(dense) + double(layer_routed) * h, r.bandwidth.gpu_gb_s);
    const double t_ram = seconds(double(layer_routed) * (1 - h), r.bandwidth.ram_gb_s);
    serial += t_gpu + t_ram;
    LayerDecode d{.picks = {.hits = k * h, .cpu = k * (1 - h)}, .seconds = std::max(t_gpu, t_ram)};
    if (link && slots < c.n_expert) {
      // The PCIe experts: the link's best share for this layer (with locality the cache's hits
      // follow it), in the "at once" ceiling and the token's bytes.
      auto [it, fresh] = outcomes.try_emplace(slots);
      if (fresh) it->second = share_outcomes(c, slots, r);
      d = fastest_share(it->second, dense, one, r.bandwidth);
    }
    const auto hits = uint64_t(d.picks.hits * double(one));
    routed += layer_routed;
    hit_bytes += hits;
    p.token_gpu_bytes += dense + hits;
    p.token_ram_bytes += layer_routed - hits;
    p.token_link_bytes += uint64_t(d.picks.fills * double(one));
    p.pcie_share = std::max(p.pcie_share, d.share);
    overlapped += d.seconds;
  }
  p.token_gpu_bytes += f.global_per_token;
  p.hit_rate = routed ? double(hit_bytes) / double(routed) : 1.0;
  const bool known = r.bandwidth.gpu_gb_s > 0 && (r.bandwidth.ram_gb_s > 0 || p.token_ram_bytes == 0);
  p.serial_tok_s = known && serial > 0 ? 1.0 / serial : 0;
  p.overlapped_tok_s = known && overlapped > 0 ? 1.0 / overlapped : 0;
  if (r.bandwidth.ram_gb_s > 0 && p.token_ram_bytes > 0) {
    p.ram_bound_tok_s = r.bandwidth.ram_gb_s * 1e9 / double(p.token_ram_bytes);
  }
  return p;
}

std::string describe(const PlacementPlan& p, const PlacementRequest& r) {
  std::string s = fmt::format("placement in a VRAM budget of {} ({} used, {} spare)\n", format_bytes(p.budget),
                              format_bytes(p.used()), format_bytes(p.budget - p.used()));
  auto line = [&](const char* what, uint64_t bytes, const std::string& note) {
    s += fmt::format("  {:<34} {:>11}  {}\n", what, format_bytes(bytes), note);
  };
  line("CUDA runtime (reserve)", p.runtime, "context, kernels, workspaces");
  line("weights every token reads", p.dense, "attention / delta-nets, routers, shared experts, embeddings, output");
  line("KV cache and recurrent state", p.cache, fmt::format("{} tokens, {} cache", r.context, type_name(r.kv_type)));
  line("activation buffers", p.activations, fmt::format("passes of up to {} tokens", r.ubatch));
  if (p.staging) line("prefill staging", p.staging, "one layer's experts, copied in for long prefills");
  const auto [fewest, most] = std::minmax_element(p.vram_experts.begin(), p.vram_experts.end());
  const std::string counts = *fewest == *most ? fmt::format("{} of {} a layer", *fewest, p.n_expert)
                                              : fmt::format("{} to {} of {} a layer", *fewest, *most, p.n_expert);
  line("routed experts in VRAM", p.experts_vram, fmt::format("{} ({} each)", counts, format_bytes(p.expert_bytes)));
  line("routed experts left in RAM", p.experts_ram, "read in place from the mapped file");
  const bool link = r.bandwidth.with_link() && p.experts_ram > 0;
  s += fmt::format("decode, one sequence: {} a token from VRAM, {} from RAM ({} of the routed expert bytes in VRAM, {})\n",
                   format_bytes(p.token_gpu_bytes), format_bytes(p.token_ram_bytes),
                   fmt::format("{:.1f}%", 100.0 * p.hit_rate),
                   r.hit_rate >= 0 ? "the given hit rate"
                   : r.locality    ? (link ? "routing with the stated locality, the VRAM experts a cache the PCIe "
                                             "experts fill"
                                           : "routing with the stated locality, the VRAM experts an LRU cache")
                                   : "routing spread evenly over the experts");
  if (link) {
    s += fmt::format("PCIe experts at {:.0f} GB/s: at best {} of a token's {} experts a layer over the link ({} a token, "
                     "read from RAM too)\n",
                     r.bandwidth.pcie_gb_s, p.pcie_share, p.n_expert_used, format_bytes(p.token_link_bytes));
  }
  if (p.overlapped_tok_s > 0) {
    s += fmt::format("ceilings at RAM {:.0f} GB/s, GPU {:.0f} GB/s: {:.1f} tok/s with the CPU's experts and the GPU's "
                     "part at once, {:.1f} tok/s one after the other\n",
                     r.bandwidth.ram_gb_s, r.bandwidth.gpu_gb_s, p.overlapped_tok_s, p.serial_tok_s);
  } else if (p.ram_bound_tok_s > 0) {
    s += fmt::format("ceiling: at most {:.1f} tok/s, what RAM at {:.0f} GB/s allows however fast the GPU (its "
                     "bandwidth is unknown here: --gpu-bw)\n",
                     p.ram_bound_tok_s, r.bandwidth.ram_gb_s);
  } else {
    s += "ceilings: unknown (give --ram-bw and --gpu-bw in GB/s)\n";
  }
  return s;
}

}  // namespace moe

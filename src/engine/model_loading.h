#pragma once
// What happens to a model's mapped pages before the first token: residency is measured (cold or
// warm page cache), the pages are advised or populated, optionally locked, and RAM is checked
// against the bytes the CPU must read. One place, so run, bench and perplexity behave alike.
#include <cstdint>
#include <optional>
#include <string>

#include "core/mapped_file.h"
#include "core/system_memory.h"
#include "gguf/reader.h"
#include "models/model.h"

namespace moe {

struct LoadOptions {
  MappedFile::Backing backing = MappedFile::Backing::Mapped;  // --no-mmap: HugePageCopy
  Prefault prefault = Prefault::Advise;
  bool mlock = false;  // lock the mapping in RAM; a failure is a warning, not an error
  int threads = 0;     // threads for Populate; <= 0: one per hardware thread
  bool repack = true;  // --no-repack: off (ModelOptions::repack)
  // --device: "auto" (the first GPU when the model's architecture runs there and its weights
  // fit, else the CPU), "cpu", "cuda" or "cudaN". -ngl N picks "cpu" (0) or the GPU (all layers).
  std::string device = "auto";
  int gpu_layers = -1;  // -ngl as given; -1: not given
  // Hybrid placement (engine/placement.h): a VRAM budget ("16GiB"; empty: none), llama.cpp's
  // --n-cpu-moe N (-1: not given) and --cpu-moe. Any of them puts part of the experts in RAM.
  std::string vram_budget{};
  int n_cpu_moe = -1;
  bool cpu_moe = false;
  int64_t context = 4096;  // KV positions the placement keeps room for
  GgmlType kv_type = GgmlType::F16;  // and the type they are kept in
  int batch = 512;         // tokens of the largest forward pass, whose buffers the placement keeps room for
  bool stream_prefill = true;  // --no-stream-prefill: long prefills leave the CPU its experts
  int pcie_experts = -1;       // --pcie-experts N: decode reads up to N of a token's RAM experts over PCIe (-1: auto)
  bool expert_cache = true;    // --expert-cache on|off: the PCIe experts land in VRAM slots (LRU)
  int64_t weight_prefetch = -1;  // --weight-prefetch BYTES: the CPU's decode products ask this far ahead (-1: default)
  bool hybrid() const { return !vram_budget.empty() || n_cpu_moe >= 0 || cpu_moe; }
};

// A model counts as warm when this much of it was already in the page cache.
constexpr double kWarmFraction = 0.9;

struct LoadReport {
  uint64_t mapped_bytes = 0;       // all shards, whole files
  uint64_t cpu_bytes = 0;          // tensor bytes the CPU reads (all of them until placement)
  double resident_fraction = 0;    // of the mapped pages, measured before prefaulting
  Prefault prefault = Prefault::None;
  bool copied = false;             // read into anonymous huge-page memory (--no-mmap)
  double copy_seconds = 0;
  double prefault_seconds = 0;     // prefault plus mlock
  bool locked = false;             // mlock asked for and done
  std::string lock_error;          // why mlock failed; empty if it worked or was not asked for
  SystemMemory memory;

  bool warm() const { return resident_fraction >= kWarmFraction; }
  // "load: 3.09 GiB mapped, 100% in page cache (warm), populated in 0.41 s (7.5 GB/s)"
  std::string summary() const;
};

// The warning to give when `cpu_bytes` does not fit the RAM in `memory`, else nullopt: above
// the total every token reads from disk; above what is available, other memory gets evicted.
std::optional<std::string> ram_warning(uint64_t cpu_bytes, const SystemMemory& memory);

// Applies `options` to every shard of `reader` and logs the load line, the RAM warning and any
// mlock failure (stderr). Throws only on errors that make the mapping unusable.
LoadReport prepare_model_memory(const gguf::Reader& reader, const LoadOptions& options);

// load_model() with the options' repack setting; logs what was repacked and how fast.
std::unique_ptr<Model> build_model(const gguf::Reader& reader, const LoadOptions& options);

}  // namespace moe

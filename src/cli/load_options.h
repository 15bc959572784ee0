#pragma once
// Model loading options shared by the commands that load a model (run, bench, perplexity):
// --prefault, --mlock, --no-mmap, --no-repack, and where the model runs (--device, -ngl).
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "engine/model_loading.h"

namespace moe {
struct PlacementRequest;
}

namespace moe::cli {

// Adds the options to `cmd`, writing into `options`, which must outlive the parse; its
// prefault value on entry is the command's default.
void add_load_options(CLI::App& cmd, LoadOptions& options);

// The CUDA device index named by "cuda" / "cudaN"; nullopt for "cpu"; "auto" gives 0. Throws
// moe::Error for anything else.
std::optional<int> gpu_index(const std::string& device);

// The model on the device `options` pick (logged): the GPU backend where asked for or, with
// "auto", where it runs the architecture and the weights fit; else the CPU engine. A hybrid
// load (--vram-budget, --n-cpu-moe, --cpu-moe) leaves the request it planned with in `planned`
// where given (for reports of the plan's ceiling), which is left alone otherwise.
std::unique_ptr<Model> open_model(const gguf::Reader& reader, const LoadOptions& options,
                                  PlacementRequest* planned = nullptr);

}  // namespace moe::cli

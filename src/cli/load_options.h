#pragma once
// --mlock and --prefault, shared by the commands that load a model (run, bench, perplexity).
#include <CLI/CLI.hpp>

#include "engine/model_loading.h"

namespace moe::cli {

// Adds the options to `cmd`, writing into `options`, which must outlive the parse; its
// prefault value on entry is the command's default.
void add_load_options(CLI::App& cmd, LoadOptions& options);

}  // namespace moe::cli

#include "cli/commands.h"
#include "core/error.h"

namespace moe::cli {

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Show a model's architecture, tokenizer and tensors");
  cmd->callback([] { fail("inspect: not implemented yet"); });
}

}  // namespace moe::cli

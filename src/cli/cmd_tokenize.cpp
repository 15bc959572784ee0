#include "cli/commands.h"
#include "core/error.h"

namespace moe::cli {

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Split text into token ids with a model's vocabulary");
  cmd->callback([] { fail("tokenize: not implemented yet"); });
}

}  // namespace moe::cli

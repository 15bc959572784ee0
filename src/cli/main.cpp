// moeserve: one program for MoE inference with models larger than the GPU.
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"

int main(int argc, char** argv) {
  CLI::App app{"moeserve: Mixture-of-Experts inference for models larger than the GPU"};
  app.set_version_flag("--version", std::string("moeserve ") + MOE_VERSION);
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Log more (debug level)");
  app.add_flag("-q,--quiet", quiet, "Log only errors");
  moe::cli::add_devices_command(app);
  moe::cli::add_inspect_command(app);
  moe::cli::add_tokenize_command(app);
  app.parse_complete_callback([&] {
    moe::init_logging(verbose ? spdlog::level::debug : quiet ? spdlog::level::err : spdlog::level::info);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const moe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

// moeserve: one program for MoE inference with models larger than the GPU.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

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
  moe::cli::add_bench_command(app);
  moe::cli::add_compare_command(app);
  moe::cli::add_convert_command(app);
  moe::cli::add_devices_command(app);
  moe::cli::add_inspect_command(app);
  moe::cli::add_perplexity_command(app);
  moe::cli::add_synth_command(app);
  moe::cli::add_run_command(app);
  moe::cli::add_tokenize_command(app);
  app.parse_complete_callback([&] {
    moe::init_logging(verbose ? spdlog::level::debug : quiet ? spdlog::level::err : spdlog::level::info);
  });
  // llama.cpp spells some options with one dash and several letters (-ctk q8_0); CLI11 allows
  // one-letter short options only, so those spellings are rewritten to the long forms first.
  std::vector<std::string> args(argv + 1, argv + argc);
  for (auto& a : args) {
    if (a == "-ctk") a = "--cache-type-k";
    else if (a == "-ctv") a = "--cache-type-v";
    else if (a == "-ngl") a = "--n-gpu-layers";
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const moe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

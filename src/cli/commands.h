#pragma once
// Each subcommand lives in its own cmd_*.cpp and registers itself on the CLI11 app.
// The registered callback runs the command; errors are thrown as moe::Error and main()
// turns them into one line on stderr and exit code 1.
#include <CLI/CLI.hpp>

namespace moe::cli {

void add_bench_command(CLI::App& app);
void add_compare_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_devices_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);

}  // namespace moe::cli

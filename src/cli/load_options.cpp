#include "cli/load_options.h"

#include <fmt/format.h>

#include <string>

namespace moe::cli {

void add_load_options(CLI::App& cmd, LoadOptions& options) {
  const auto set_prefault = [&options](const std::string& name) {
    for (Prefault how : {Prefault::None, Prefault::Advise, Prefault::Populate}) {
      if (name == prefault_name(how)) options.prefault = how;
    }
  };
  cmd.add_option_function<std::string>(
         "--prefault", set_prefault,
         fmt::format("Bring the model's pages into RAM before the first token: none, advise (the kernel reads "
                     "ahead in the background) or populate (read everything now); default {}",
                     prefault_name(options.prefault)))
      ->check(CLI::IsMember({"none", "advise", "populate"}));
  cmd.add_flag_callback(
      "--no-mmap", [&options] { options.backing = MappedFile::Backing::HugePageCopy; },
      "Read the model into private memory in 2 MiB huge pages instead of mapping the file: fewer TLB misses "
      "(decode 1.47x faster on a VM, docs/performance.md) for a slower load and private RAM");
  cmd.add_flag_callback(
      "--no-repack", [&options] { options.repack = false; },
      "Use every matrix in place in the model file instead of repacking Q4_K matrices into the faster "
      "interleaved layout (AVX-512 VNNI CPUs; costs a copy at load, the file's pages are released)");
  cmd.add_flag("--mlock", options.mlock,
               "Lock the model in RAM so it is never paged out (a failure, e.g. RLIMIT_MEMLOCK, is a warning)");
}

}  // namespace moe::cli

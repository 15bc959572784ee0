#pragma once
// Logging goes to stderr (stdout carries the program's output: tokens, tables, JSON).
#include <spdlog/spdlog.h>

namespace moe {

// Sets up the stderr logger once; level from --verbose/--quiet or MOE_LOG (trace..off).
void init_logging(spdlog::level::level_enum level);

}  // namespace moe

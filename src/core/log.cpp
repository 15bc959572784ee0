#include "core/log.h"

#include <cstdlib>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace moe {

void init_logging(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("moeserve");
  logger->set_pattern("%^%L%$ %v");
  if (const char* env = std::getenv("MOE_LOG")) level = spdlog::level::from_str(env);
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

}  // namespace moe

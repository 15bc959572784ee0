#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace moe {

void assert_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "moeserve: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace moe

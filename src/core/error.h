#pragma once
// One exception type for every error a user can cause: bad files, bad flags, bad requests.
// The message carries the context the user needs to act ("tensor blk.3.ffn_up_exps: offset
// 812 GiB past end of file (79 GiB)"); programmer errors use MOE_ASSERT instead.
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace moe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void assert_failed(const char* expr, const char* file, int line);

}  // namespace moe

#define MOE_ASSERT(cond) \
  do { \
    if (!(cond)) ::moe::assert_failed(#cond, __FILE__, __LINE__); \
  } while (0)

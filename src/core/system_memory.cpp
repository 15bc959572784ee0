#include "core/system_memory.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

namespace moe {
namespace {

// The file's text, or "" when it does not exist or cannot be read (proc/sys files are optional).
std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// "  24683620 kB" -> bytes; 0 when it does not parse.
uint64_t parse_kib_value(std::string_view s) {
  s = trim(s);
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc()) return 0;
  return trim(std::string_view(end, s.data() + s.size() - end)) == "kB" ? value * 1024 : value;
}

// The cgroup v2 path of this process ("0::/user.slice/..."), "" if not on the unified hierarchy.
std::string cgroup_v2_path() {
  std::istringstream lines(read_small_file("/proc/self/cgroup"));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("0::")) return line.substr(3);
  }
  return {};
}

// The tightest limit among the files that exist. Inside a container the cgroup file system is
// usually mounted at the container's own cgroup, so the root files are checked as well.
uint64_t read_cgroup_limit() {
  const std::string v2 = cgroup_v2_path();
  uint64_t limit = 0;
  for (const std::string& path : {"/sys/fs/cgroup" + v2 + "/memory.max", std::string("/sys/fs/cgroup/memory.max"),
                                  std::string("/sys/fs/cgroup/memory/memory.limit_in_bytes")}) {
    const auto value = parse_cgroup_limit(read_small_file(path));
    if (value && (limit == 0 || *value < limit)) limit = *value;
  }
  return limit;
}

}  // namespace

uint64_t SystemMemory::usable_total() const { return cgroup_limit ? std::min(total, cgroup_limit) : total; }
uint64_t SystemMemory::usable_available() const {
  return cgroup_limit ? std::min(available, cgroup_limit) : available;
}

SystemMemory parse_meminfo(std::string_view text) {
  SystemMemory m;
  uint64_t free = 0;
  bool has_available = false;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon), value = line.substr(colon + 1);
    if (key == "MemTotal") m.total = parse_kib_value(value);
    if (key == "MemFree") free = parse_kib_value(value);
    if (key == "MemAvailable") m.available = parse_kib_value(value), has_available = true;
  }
  if (!has_available) m.available = free;
  return m;
}

std::optional<uint64_t> parse_cgroup_limit(std::string_view text) {
  text = trim(text);
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0) return std::nullopt;
  // cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit value.
  if (value >= (uint64_t(1) << 62)) return std::nullopt;
  return value;
}

SystemMemory read_system_memory() {
  SystemMemory m = parse_meminfo(read_small_file("/proc/meminfo"));
  m.cgroup_limit = read_cgroup_limit();
  return m;
}

}  // namespace moe

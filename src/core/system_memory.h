#pragma once
// How much RAM this process can use: the machine's (/proc/meminfo) and its cgroup's limit.
// Used to warn when a model cannot stay in the page cache, and by placement planning.
#include <cstdint>
#include <optional>
#include <string_view>

namespace moe {

struct SystemMemory {
  uint64_t total = 0;         // MemTotal
  uint64_t available = 0;     // MemAvailable: free plus what the kernel can reclaim (page cache)
  uint64_t cgroup_limit = 0;  // memory.max / memory.limit_in_bytes; 0 when there is none

  // What a container may actually use: the smaller of the machine and the cgroup limit.
  uint64_t usable_total() const;
  uint64_t usable_available() const;
};

// Reads /proc/meminfo and the cgroup limit (v2 or v1). Fields it cannot read stay 0.
SystemMemory read_system_memory();

// MemTotal and MemAvailable from /proc/meminfo text ("MemTotal:  24683620 kB"), in bytes.
// MemAvailable falls back to MemFree on kernels older than 3.14; missing fields are 0.
SystemMemory parse_meminfo(std::string_view text);

// A cgroup memory limit file's text: "max" (v2) or a huge v1 value mean no limit (nullopt).
std::optional<uint64_t> parse_cgroup_limit(std::string_view text);

}  // namespace moe

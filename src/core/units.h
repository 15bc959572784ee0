#pragma once
// Human-readable sizes, and parsing of sizes given on the command line ("16GiB", "512M").
#include <cstdint>
#include <string>
#include <string_view>

namespace moe {

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;
constexpr uint64_t GiB = 1024 * MiB;

// "1.50 GiB", "812 B": three significant digits, binary units.
std::string format_bytes(uint64_t bytes);

// Accepts a plain byte count or a number with K/M/G/T, KB/MB/..., KiB/MiB/... (all binary).
// Throws moe::Error naming the text on anything else.
uint64_t parse_bytes(std::string_view text);

}  // namespace moe

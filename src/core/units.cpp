#include "core/units.h"

#include <cctype>
#include <charconv>
#include <cmath>

#include "core/error.h"

namespace moe {

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 6) {
    value /= 1024.0;
    ++unit;
  }
  const int decimals = value < 10 ? 2 : value < 100 ? 1 : 0;
  return fmt::format("{:.{}f} {}", value, decimals, kUnits[unit]);
}

uint64_t parse_bytes(std::string_view text) {
  const std::string_view original = text;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  double number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || number < 0 || !std::isfinite(number)) {
    fail("invalid size '{}': expected a number with an optional unit such as 16GiB or 512M", original);
  }
  std::string unit(end, text.data() + text.size());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K" || unit == "KB" || unit == "KIB") scale = double(KiB);
  else if (unit == "M" || unit == "MB" || unit == "MIB") scale = double(MiB);
  else if (unit == "G" || unit == "GB" || unit == "GIB") scale = double(GiB);
  else if (unit == "T" || unit == "TB" || unit == "TIB") scale = double(GiB) * 1024.0;
  else fail("invalid size '{}': unknown unit '{}' (use B, KiB, MiB, GiB or TiB)", original, unit);
  const double bytes = number * scale;
  if (bytes >= 1.8e19) fail("invalid size '{}': too large", original);
  return static_cast<uint64_t>(std::llround(bytes));
}

}  // namespace moe

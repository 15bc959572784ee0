#include "formats/json_util.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "core/error.h"

namespace moe::formats::json_util {

Json parse(std::string_view text, const std::string& source, int max_depth, bool reject_duplicate_top_keys) {
  std::unordered_set<std::string> top_keys;
  // The callback sees every event with its nesting depth; throwing from it aborts the parse.
  auto guard = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > max_depth) fail("{}: JSON nested deeper than {} levels", source, max_depth);
    if (reject_duplicate_top_keys && event == Json::parse_event_t::key && depth == 1) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!top_keys.insert(key).second) fail("{}: name '{}' appears twice in the JSON header", source, key);
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), guard);
  } catch (const Json::exception& e) {
    fail("{}: malformed JSON: {}", source, e.what());
  }
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

Json read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open (missing or unreadable)", path);
  std::ostringstream s;
  s << in.rdbuf();
  Json j = parse(s.str(), path);
  if (!j.is_object()) fail("{}: expected a JSON object at the top level", path);
  return j;
}

const Json& require(const Json& obj, std::string_view key, std::string_view what) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) fail("{}: missing key '{}'", what, key);
  return *it;
}

uint64_t get_uint(const Json& obj, std::string_view key, std::string_view what) {
  const Json& v = require(obj, key, what);
  if (!v.is_number_unsigned()) fail("{}: key '{}' must be a non-negative integer, found {}", what, key, v.dump());
  return v.get<uint64_t>();
}

std::optional<uint64_t> get_uint_opt(const Json& obj, std::string_view key, std::string_view what) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  return get_uint(obj, key, what);
}

double get_number(const Json& obj, std::string_view key, std::string_view what) {
  const Json& v = require(obj, key, what);
  if (!v.is_number()) fail("{}: key '{}' must be a number, found {}", what, key, v.dump());
  return v.get<double>();
}

std::optional<double> get_number_opt(const Json& obj, std::string_view key, std::string_view what) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  return get_number(obj, key, what);
}

std::optional<bool> get_bool_opt(const Json& obj, std::string_view key, std::string_view what) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) fail("{}: key '{}' must be true or false, found {}", what, key, it->dump());
  return it->get<bool>();
}

std::string get_string(const Json& obj, std::string_view key, std::string_view what) {
  const Json& v = require(obj, key, what);
  if (!v.is_string()) fail("{}: key '{}' must be a string, found {}", what, key, v.dump());
  return v.get<std::string>();
}

std::optional<std::string> get_string_opt(const Json& obj, std::string_view key, std::string_view what) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  return get_string(obj, key, what);
}

}  // namespace moe::formats::json_util

#pragma once
// Internal helpers for the converters' JSON inputs (config.json, tokenizer.json, ...): reading a
// file into nlohmann::json with errors that name the file, and typed lookups whose errors name
// the file and the key. Not part of the public interface of src/formats (it exposes nlohmann).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace moe::formats::json_util {

using Json = nlohmann::json;

// Parses `text` (from `source`, for messages); rejects nesting deeper than `max_depth` so that
// hostile input cannot exhaust the stack, and duplicate keys in the top-level object when
// `reject_duplicate_top_keys` (nlohmann would silently keep the last one).
Json parse(std::string_view text, const std::string& source, int max_depth = 64, bool reject_duplicate_top_keys = false);
// Reads and parses a whole file; throws naming the path if it is missing or malformed.
Json read_file(const std::string& path);
bool file_exists(const std::string& path);

// Typed getters on an object. `what` names the object ("config.json") in messages.
const Json& require(const Json& obj, std::string_view key, std::string_view what);
uint64_t get_uint(const Json& obj, std::string_view key, std::string_view what);
std::optional<uint64_t> get_uint_opt(const Json& obj, std::string_view key, std::string_view what);
double get_number(const Json& obj, std::string_view key, std::string_view what);
std::optional<double> get_number_opt(const Json& obj, std::string_view key, std::string_view what);
std::optional<bool> get_bool_opt(const Json& obj, std::string_view key, std::string_view what);
std::string get_string(const Json& obj, std::string_view key, std::string_view what);
std::optional<std::string> get_string_opt(const Json& obj, std::string_view key, std::string_view what);

}  // namespace moe::formats::json_util

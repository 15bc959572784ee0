#include "formats/safetensors_checkpoint.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "formats/json_util.h"

namespace moe::formats {
namespace {

constexpr std::string_view kIndexName = "model.safetensors.index.json";
constexpr std::string_view kSingleName = "model.safetensors";

// A shard must be a plain file name inside the checkpoint directory: an index must not be able
// to point us at /etc/passwd or ../../other-model.
bool is_plain_shard_name(std::string_view name) {
  return !name.empty() && name.find('/') == std::string_view::npos && name.find('\\') == std::string_view::npos &&
         name != "." && name != ".." && name.ends_with(".safetensors");
}

}  // namespace

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir) : dir_(dir) {
  const std::string index_path = dir + "/" + std::string(kIndexName);
  const std::string single_path = dir + "/" + std::string(kSingleName);
  if (json_util::file_exists(index_path)) {
    open_index(index_path);
  } else if (json_util::file_exists(single_path)) {
    add_file(single_path);
  } else {
    fail("{}: no {} or {} (not a Hugging Face safetensors checkpoint directory)", dir, kSingleName, kIndexName);
  }
}

void SafetensorsCheckpoint::add_file(const std::string& path) {
  files_.push_back(std::make_unique<SafetensorsFile>(path));
  for (const auto& t : files_.back()->tensors()) {
    const auto [it, inserted] = by_name_.emplace(t.name, &t);
    if (!inserted) fail("{}: tensor '{}' is also in {}", path, t.name, *it->second->file);
  }
}

void SafetensorsCheckpoint::open_index(const std::string& index_path) {
  const auto index = json_util::read_file(index_path);
  const auto& weight_map = json_util::require(index, "weight_map", index_path);
  if (!weight_map.is_object() || weight_map.empty()) fail("{}: 'weight_map' must be a non-empty object", index_path);

  std::map<std::string, std::string> expected;  // tensor -> shard
  for (const auto& [name, shard] : weight_map.items()) {
    if (!shard.is_string()) fail("{}: weight_map['{}'] must be a file name, found {}", index_path, name, shard.dump());
    const auto shard_name = shard.get<std::string>();
    if (!is_plain_shard_name(shard_name)) {
      fail("{}: weight_map['{}'] = '{}' is not a .safetensors file name in the checkpoint directory", index_path,
           name, shard_name);
    }
    expected.emplace(name, shard_name);
  }
  std::vector<std::string> shards;
  for (const auto& [_, shard] : expected) shards.push_back(shard);
  std::sort(shards.begin(), shards.end());
  shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
  for (const auto& shard : shards) {
    const std::string path = dir_ + "/" + shard;
    if (!json_util::file_exists(path)) fail("{}: shard '{}' listed in the index is missing", index_path, shard);
    add_file(path);
  }
  // Index and shards must describe the same set of tensors, each in the shard the index names.
  for (const auto& [name, shard] : expected) {
    const SafeTensor* t = find(name);
    if (!t) fail("{}: tensor '{}' is listed in shard '{}' but that file does not contain it", index_path, name, shard);
    if (*t->file != dir_ + "/" + shard) {
      fail("{}: tensor '{}' is listed in shard '{}' but found in {}", index_path, name, shard, *t->file);
    }
  }
  for (const auto& name : names()) {
    if (!expected.contains(std::string(name))) {
      fail("{}: tensor '{}' in {} is not listed in the index", index_path, name, *by_name_.at(name)->file);
    }
  }
}

const SafeTensor* SafetensorsCheckpoint::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const SafeTensor& SafetensorsCheckpoint::get(std::string_view name) const {
  const SafeTensor* t = find(name);
  if (!t) fail("{}: checkpoint has no tensor '{}'", dir_, name);
  return *t;
}

std::vector<std::string_view> SafetensorsCheckpoint::names() const {
  std::vector<std::string_view> out;
  out.reserve(by_name_.size());
  for (const auto& [name, _] : by_name_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moe::formats

#pragma once
// A Hugging Face checkpoint's weights: either one model.safetensors or the shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file). Every shard is mapped
// and validated; the index and the shards must agree exactly (a name in the index but not in its
// shard, or in a shard but not in the index, or in two shards, is an error naming both files).
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "formats/safetensors.h"

namespace moe::formats {

class SafetensorsCheckpoint {
 public:
  // `dir` is the checkpoint directory. Throws moe::Error.
  explicit SafetensorsCheckpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  size_t n_files() const { return files_.size(); }
  const SafetensorsFile& file(size_t i) const { return *files_[i]; }

  const SafeTensor* find(std::string_view name) const;
  const SafeTensor& get(std::string_view name) const;  // throws naming the tensor and directory
  // Every tensor name, sorted (deterministic error messages and iteration).
  std::vector<std::string_view> names() const;

 private:
  void open_index(const std::string& index_path);
  void add_file(const std::string& path);

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string_view, const SafeTensor*> by_name_;
};

}  // namespace moe::formats

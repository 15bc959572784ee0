#pragma once
// A model as one GGUF file or a split set (name-00001-of-00003.gguf ...), opened from the
// first file's path and presented as one: metadata from the first shard, tensors from all.
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/file.h"

namespace moe::gguf {

class Reader {
 public:
  // Opens and validates the file and, for a split model, every shard. Throws moe::Error.
  explicit Reader(const std::string& path, MappedFile::Backing backing = MappedFile::Backing::Mapped);

  const std::string& path() const { return files_.front()->path(); }
  const Metadata& metadata() const { return files_.front()->metadata(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  size_t n_files() const { return files_.size(); }
  const File& file(size_t i) const { return *files_[i]; }

  const TensorInfo* find_tensor(std::string_view name) const;
  const TensorInfo& tensor(std::string_view name) const;  // throws, naming the tensor
  uint64_t tensor_bytes() const;                          // sum over all tensors

  // "qwen3moe", from general.architecture.
  std::string_view architecture() const { return metadata().get_string("general.architecture"); }

 private:
  std::vector<std::unique_ptr<File>> files_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> by_name_;
};

// If `path` names shard k of n ("...-0000k-of-0000n.gguf"), the path of shard i (0-based).
std::string split_path(std::string_view prefix, uint32_t index, uint32_t count);
// Parses "prefix-00002-of-00005.gguf" into prefix, 0-based index and count; false if not split.
bool parse_split_path(std::string_view path, std::string* prefix, uint32_t* index, uint32_t* count);

}  // namespace moe::gguf

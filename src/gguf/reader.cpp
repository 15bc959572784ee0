#include "gguf/reader.h"

#include <charconv>

#include "core/error.h"

namespace moe::gguf {

std::string split_path(std::string_view prefix, uint32_t index, uint32_t count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, index + 1, count);
}

bool parse_split_path(std::string_view path, std::string* prefix, uint32_t* index, uint32_t* count) {
  // prefix + "-NNNNN-of-MMMMM.gguf" (at least five digits each, as llama.cpp writes them)
  constexpr std::string_view kExt = ".gguf";
  if (!path.ends_with(kExt)) return false;
  std::string_view s = path.substr(0, path.size() - kExt.size());
  auto take_number = [&](uint32_t* out) {
    size_t i = s.size();
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') --i;
    if (s.size() - i < 5) return false;
    const auto r = std::from_chars(s.data() + i, s.data() + s.size(), *out);
    s = s.substr(0, i);
    return r.ec == std::errc();
  };
  uint32_t no = 0, n = 0;
  if (!take_number(&n) || !s.ends_with("-of-")) return false;
  s.remove_suffix(4);
  if (!take_number(&no) || !s.ends_with("-")) return false;
  s.remove_suffix(1);
  if (no == 0 || n == 0 || no > n) return false;
  *prefix = std::string(s);
  *index = no - 1;
  *count = n;
  return true;
}

Reader::Reader(const std::string& path, MappedFile::Backing backing) {
  files_.push_back(std::make_unique<File>(path, 0, backing));
  const Metadata& meta = files_.front()->metadata();
  const uint64_t count = meta.get_uint("split.count", 1);
  if (count > 1) {
    const uint64_t no = meta.get_uint("split.no");
    std::string prefix;
    uint32_t index = 0, name_count = 0;
    if (!parse_split_path(path, &prefix, &index, &name_count)) {
      fail("{}: the file is shard {} of a {}-file split model, but its name does not follow the "
           "'NAME-00001-of-{:05d}.gguf' pattern, so the other shards cannot be found",
           path, no + 1, count, count);
    }
    if (no != 0 || index != 0) {
      fail("{}: this is shard {} of {}; open the first shard instead: {}", path, no + 1, count,
           split_path(prefix, 0, uint32_t(count)));
    }
    if (name_count != count) {
      fail("{}: file name says {} shards but metadata key 'split.count' says {}", path, name_count, count);
    }
    for (uint32_t i = 1; i < count; ++i) {
      const std::string shard = split_path(prefix, i, uint32_t(count));
      files_.push_back(std::make_unique<File>(shard, i, backing));
      const Metadata& m = files_.back()->metadata();
      if (m.get_uint("split.no") != i || m.get_uint("split.count") != count) {
        fail("{}: metadata says shard {} of {}, expected shard {} of {}", shard, m.get_uint("split.no") + 1,
             m.get_uint("split.count"), i + 1, count);
      }
    }
  }

  for (const auto& f : files_) {
    for (const auto& t : f->tensors()) {
      if (!by_name_.emplace(t.name, tensors_.size()).second) {
        fail("{}: tensor {} appears in more than one shard", f->path(), t.name);
      }
      tensors_.push_back(t);
    }
  }
  if (count > 1) {
    const uint64_t expected = meta.get_uint("split.tensors.count");
    if (expected != tensors_.size()) {
      fail("{}: metadata key 'split.tensors.count' says {} tensors, the {} shards hold {}", path, expected, count,
           tensors_.size());
    }
  }
}

const TensorInfo* Reader::find_tensor(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& Reader::tensor(std::string_view name) const {
  const TensorInfo* t = find_tensor(name);
  if (!t) fail("{}: missing tensor '{}'", path(), name);
  return *t;
}

uint64_t Reader::tensor_bytes() const {
  uint64_t total = 0;
  for (const auto& t : tensors_) total += t.nbytes;
  return total;
}

}  // namespace moe::gguf

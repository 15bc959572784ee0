#pragma once
// A read-only memory mapping of a whole file (RAII). Model weights are used in place from it.
#include <cstddef>
#include <span>
#include <string>

namespace moe {

class MappedFile {
 public:
  // Throws moe::Error naming the path if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;

  std::string path_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moe

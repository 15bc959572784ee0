#pragma once
// Anonymous memory aligned to 2 MiB and advised for transparent huge pages (RAII): weights
// copied or repacked out of the model file live here, read with fewer TLB misses than the
// page cache's 4 KiB pages.
#include <cstddef>
#include <span>
#include <string_view>

namespace moe {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // Throws moe::Error naming `what` when the memory cannot be had. Rounded up to 2 MiB.
  HugePageBuffer(size_t bytes, std::string_view what);
  ~HugePageBuffer();
  HugePageBuffer(HugePageBuffer&& other) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  std::span<std::byte> bytes() const { return {data_, size_}; }
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  // The memory becomes read-only (weights never change after loading).
  void seal() const;
  // Gives up ownership: the caller munmap()s [data, data + mapped_size()).
  std::byte* release() noexcept;
  size_t mapped_size() const { return mapped_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;     // as asked
  size_t mapped_ = 0;   // rounded up to whole huge pages
};

}  // namespace moe

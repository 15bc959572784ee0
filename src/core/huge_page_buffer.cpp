#include "core/huge_page_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/units.h"

namespace moe {

namespace {
constexpr size_t kHuge = size_t(2) << 20;
}

HugePageBuffer::HugePageBuffer(size_t bytes, std::string_view what) : size_(bytes) {
  if (bytes == 0) return;
  mapped_ = (bytes + kHuge - 1) / kHuge * kHuge;
  // Map one huge page more than needed, keep the 2 MiB-aligned part, give back the slack.
  void* raw = ::mmap(nullptr, mapped_ + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) fail("{}: cannot allocate {}: {}", what, format_bytes(mapped_), std::strerror(errno));
  auto* const first = static_cast<std::byte*>(raw);
  data_ = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(first) + kHuge - 1) & ~(kHuge - 1));
  if (data_ > first) ::munmap(first, size_t(data_ - first));
  const size_t tail = size_t(first + mapped_ + kHuge - (data_ + mapped_));
  if (tail > 0) ::munmap(data_ + mapped_, tail);
  ::madvise(data_, mapped_, MADV_HUGEPAGE);  // advice: without THP it is plain memory
}

HugePageBuffer::~HugePageBuffer() {
  if (data_) ::munmap(data_, mapped_);
}

HugePageBuffer::HugePageBuffer(HugePageBuffer&& other) noexcept { *this = std::move(other); }

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(data_, mapped_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

void HugePageBuffer::seal() const {
  if (data_) ::mprotect(data_, mapped_, PROT_READ);
}

std::byte* HugePageBuffer::release() noexcept {
  size_ = 0;
  return std::exchange(data_, nullptr);
}

}  // namespace moe

#include "core/mapped_file.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/huge_page_buffer.h"
#include "core/thread_pool.h"
#include "core/units.h"

namespace moe {

MappedFile::MappedFile(const std::string& path, Backing backing) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    // Shared, not private: the CUDA driver pins a registered range (RegisteredModel) as if for
    // writing, which on a private mapping copies every page (a second 79 GiB in RAM, killed for
    // lack of memory on the GPU machine); a shared read-only mapping has nothing to copy.
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot map {} bytes: {}", path, size_, std::strerror(err));
    }
    data_ = p;
    map_bytes_ = size_;
  }
  ::close(fd);  // the mapping keeps the file alive
  if (backing == Backing::HugePageCopy && size_ > 0) copy_to_huge_pages();
}

// Reads the mapped file into a 2 MiB-aligned anonymous region advised MADV_HUGEPAGE, then
// drops the file mapping. The page cache may keep the file's pages, but they are clean and
// the kernel reclaims them under pressure: no second copy is ever pinned.
void MappedFile::copy_to_huge_pages() {
  const auto start = std::chrono::steady_clock::now();
  resident_before_copy_ = resident_fraction(bytes());
  HugePageBuffer copy(size_, fmt::format("{}: reading the model into memory (--no-mmap)", path_));
  std::byte* const aligned = copy.data();
  const unsigned n_threads = std::max(1u, std::thread::hardware_concurrency());
  ThreadPool pool{static_cast<int>(n_threads)};
  const auto* src = static_cast<const std::byte*>(data_);
  constexpr size_t kChunk = size_t(64) << 20;  // several reads in flight on a cold file
  parallel_chunks(pool, (size_ + kChunk - 1) / kChunk, 1, [&](size_t begin, size_t end, int) {
    for (size_t c = begin; c < end; ++c) {
      const size_t off = c * kChunk;
      std::memcpy(aligned + off, src + off, std::min(kChunk, size_ - off));
    }
  });
  copy.seal();  // weights are read-only, as in the mapping
  ::munmap(data_, map_bytes_);
  map_bytes_ = copy.mapped_size();
  data_ = copy.release();
  backing_ = Backing::HugePageCopy;
  copy_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    backing_ = other.backing_;
    resident_before_copy_ = other.resident_before_copy_;
    copy_seconds_ = other.copy_seconds_;
  }
  return *this;
}

void MappedFile::release() noexcept {
  if (data_) ::munmap(data_, map_bytes_);
  data_ = nullptr;
  size_ = map_bytes_ = 0;
}

}  // namespace moe

// ---- load policy: residency, prefaulting, locking ----

namespace moe {
namespace {

#ifndef MADV_POPULATE_READ
constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14; older headers lack it
#endif

size_t page_size() {
  static const size_t size = size_t(::sysconf(_SC_PAGESIZE));
  return size;
}

// The range rounded out to whole pages: what mincore, madvise and mlock accept.
struct PageRange {
  std::byte* begin = nullptr;
  size_t n_pages = 0;
  size_t bytes() const { return n_pages * page_size(); }
};
PageRange page_range(std::span<const std::byte> bytes) {
  if (bytes.empty()) return {};
  const uintptr_t first = reinterpret_cast<uintptr_t>(bytes.data()) & ~(page_size() - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(bytes.data() + bytes.size());
  return {reinterpret_cast<std::byte*>(first), (end - first + page_size() - 1) / page_size()};
}

// Reading one byte faults in the whole page (and the kernel's fault-around neighbours).
void touch_pages(const std::byte* begin, size_t n_pages) {
  unsigned sum = 0;
  const auto* bytes = reinterpret_cast<const volatile unsigned char*>(begin);
  for (size_t i = 0; i < n_pages; ++i) sum += bytes[i * page_size()];
  static std::atomic<unsigned> sink;
  sink.fetch_add(sum, std::memory_order_relaxed);  // keeps the reads from being optimised out
}

void populate_pages(std::byte* begin, size_t n_pages) {
  static std::atomic<bool> kernel_lacks_populate{false};
  if (!kernel_lacks_populate.load(std::memory_order_relaxed)) {
    if (::madvise(begin, n_pages * page_size(), MADV_POPULATE_READ) == 0) return;
    if (errno == EINVAL) kernel_lacks_populate.store(true, std::memory_order_relaxed);
  }
  touch_pages(begin, n_pages);
}

std::string memlock_limit_text() {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
  return limit.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : format_bytes(limit.rlim_cur);
}

}  // namespace

std::string_view prefault_name(Prefault how) {
  switch (how) {
    case Prefault::None: return "none";
    case Prefault::Advise: return "advise";
    case Prefault::Populate: return "populate";
  }
  return "?";
}

double resident_fraction(std::span<const std::byte> bytes) {
  const PageRange range = page_range(bytes);
  if (range.n_pages == 0) return 1.0;
  // In slices, so a 200 GiB model needs a 256 KiB vector rather than 50 MiB.
  constexpr size_t kSlicePages = size_t(1) << 18;
  std::vector<unsigned char> status(std::min(range.n_pages, kSlicePages));
  size_t resident = 0;
  for (size_t first = 0; first < range.n_pages; first += kSlicePages) {
    const size_t n = std::min(kSlicePages, range.n_pages - first);
    if (::mincore(range.begin + first * page_size(), n * page_size(), status.data()) != 0) {
      fail("mincore on a {}-page mapping failed: {}", range.n_pages, std::strerror(errno));
    }
    for (size_t i = 0; i < n; ++i) resident += status[i] & 1;
  }
  return double(resident) / double(range.n_pages);
}

void prefault(std::span<const std::byte> bytes, Prefault how, int n_threads) {
  const PageRange range = page_range(bytes);
  if (range.n_pages == 0 || how == Prefault::None) return;
  if (how == Prefault::Advise) {
    // Advice only: a failure costs speed, never correctness, so it is not an error.
    ::madvise(range.begin, range.bytes(), MADV_WILLNEED);
    return;
  }
  const size_t chunk_pages = std::max<size_t>(1, (size_t(64) << 20) / page_size());  // 64 MiB per task
  ThreadPool pool(std::max(1, n_threads));
  parallel_chunks(pool, range.n_pages, chunk_pages, [&](size_t begin, size_t end, int) {
    populate_pages(range.begin + begin * page_size(), end - begin);
  });
}

std::optional<std::string> lock_in_memory(std::span<const std::byte> bytes) {
  const PageRange range = page_range(bytes);
  if (range.n_pages == 0 || ::mlock(range.begin, range.bytes()) == 0) return std::nullopt;
  const int err = errno;
  if (err == ENOMEM || err == EPERM) {
    return fmt::format("{} (RLIMIT_MEMLOCK is {}; raise it with 'ulimit -l unlimited' or a memlock line in "
                       "/etc/security/limits.conf, or run with CAP_IPC_LOCK)",
                       std::strerror(err), memlock_limit_text());
  }
  return std::string(std::strerror(err));
}

void drop_file_pages(std::span<const std::byte> bytes) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(bytes.data()) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<uintptr_t>(bytes.data()) + bytes.size()) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advice: may fail (mlock)
}

}  // namespace moe

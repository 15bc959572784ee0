#pragma once
// A read-only memory mapping of a whole file (RAII). Model weights are used in place from it.
// Below it, what loading does to mapped pages: residency (mincore), prefaulting and mlock.
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace moe {

class MappedFile {
 public:
  // Where the bytes live.
  enum class Backing {
    Mapped,         // the file's pages in the page cache, shared with other processes
    HugePageCopy,   // read into private anonymous memory advised for 2 MiB transparent huge
                    // pages: fewer TLB misses when decode reads weights all over the model
  };

  // Throws moe::Error naming the path if it cannot be opened, mapped or copied.
  explicit MappedFile(const std::string& path, Backing backing = Backing::Mapped);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  Backing backing() const { return backing_; }
  // For a HugePageCopy: the file's page-cache residency before the copy, and the copy's time.
  double resident_before_copy() const { return resident_before_copy_; }
  double copy_seconds() const { return copy_seconds_; }

 private:
  void copy_to_huge_pages();
  void release() noexcept;

  std::string path_;
  void* data_ = nullptr;
  size_t size_ = 0;
  size_t map_bytes_ = 0;  // what munmap releases (a copy is rounded up to whole huge pages)
  Backing backing_ = Backing::Mapped;
  double resident_before_copy_ = 0, copy_seconds_ = 0;
};

// What to do with a mapping's pages before the first token needs them. The functions below
// take any mapped range (a MappedFile's bytes() or a gguf::File's); they round it out to
// whole pages.
enum class Prefault {
  None,      // pages fault in as the model first touches them: the first tokens read the disk
  Advise,    // MADV_WILLNEED: the kernel reads ahead in the background; returns at once
  Populate,  // every page faulted in now, so the first token is as fast as the others
};
std::string_view prefault_name(Prefault how);  // "none", "advise", "populate"

// The fraction of the range's pages resident in RAM (mincore), in [0, 1]; 1 for an empty range.
double resident_fraction(std::span<const std::byte> bytes);

// Applies `how`. Populate uses MADV_POPULATE_READ (Linux 5.14+) or, on older kernels, reads
// one byte per page; either way split over n_threads, so a cold read keeps several disk
// requests in flight.
void prefault(std::span<const std::byte> bytes, Prefault how, int n_threads);

// Takes the whole pages inside a range of a *file* mapping (MappedFile::Backing::Mapped) out of
// this process (MADV_DONTNEED): the page cache may keep them, clean, and a later read faults
// them in again from the file. Used once tensors have been repacked into other memory. Never on
// a HugePageCopy: private anonymous memory would read back as zeros.
void drop_file_pages(std::span<const std::byte> bytes);

// mlock()s the range so it is never paged out (this also faults it in). Returns nullopt on
// success, else why it failed, with the RLIMIT_MEMLOCK limit and how to raise it: callers
// warn and go on, since the model still works unlocked.
std::optional<std::string> lock_in_memory(std::span<const std::byte> bytes);

}  // namespace moe

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

// mlock()s the range so it is never paged out (this also faults it in). Returns nullopt on
// success, else why it failed, with the RLIMIT_MEMLOCK limit and how to raise it: callers
// warn and go on, since the model still works unlocked.
std::optional<std::string> lock_in_memory(std::span<const std::byte> bytes);

}  // namespace moe

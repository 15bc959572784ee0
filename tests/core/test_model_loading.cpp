// Page residency, prefaulting and mlock on real mappings, and the load report built from them.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "../gguf/gguf_test_util.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mapped_file.h"
#include "core/units.h"
#include "engine/model_loading.h"

namespace moe {
namespace {

// AddressSanitizer replaces mlock() with a no-op that reports success, so under it a lock
// faults nothing in.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// A file of random bytes, synced and then (where the file system honours it) dropped from
// the page cache, so its pages start out partly or wholly cold.
std::string write_cold_file(const test::TempDir& dir, size_t bytes) {
  std::vector<std::byte> data(bytes);
  std::mt19937 rng(7);
  for (auto& b : data) b = std::byte(rng());
  const std::string path = dir.file("data.bin");
  test::write_bytes(path, data);
  const int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  ::fsync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return path;
}

// Sends the default logger's output to a string while alive.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream text_;
};

TEST(MappedPages, HugePageCopyHoldsTheSameBytes) {
  test::TempDir dir;
  const std::string path = write_cold_file(dir, 5 * MiB + 77);  // not a whole number of huge pages
  const MappedFile mapped(path);
  MappedFile copy(path, MappedFile::Backing::HugePageCopy);
  EXPECT_EQ(copy.backing(), MappedFile::Backing::HugePageCopy);
  ASSERT_EQ(copy.size(), mapped.size());
  EXPECT_TRUE(std::equal(mapped.bytes().begin(), mapped.bytes().end(), copy.bytes().begin()));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.bytes().data()) % (2 * MiB), 0u);
  EXPECT_GE(copy.resident_before_copy(), 0.0);
  EXPECT_LE(copy.resident_before_copy(), 1.0);
  EXPECT_DOUBLE_EQ(resident_fraction(copy.bytes()), 1.0);
  const MappedFile moved = std::move(copy);  // the region moves with it, and is released once
  EXPECT_EQ(moved.size(), mapped.size());
  EXPECT_EQ(copy.size(), 0u);
  EXPECT_THROW(MappedFile(dir.file("missing.bin"), MappedFile::Backing::HugePageCopy), Error);
}

// The mapping is shared, not private: pinning a private mapping for the GPU (which the CUDA
// driver does as if for writing, RegisteredModel) copies every page, a second model in RAM.
// /proc/self/maps marks the mapping's permissions "r--s".
TEST(MappedPages, TheFileIsMappedSharedAndReadOnly) {
  test::TempDir dir;
  const MappedFile file(write_cold_file(dir, 3 * MiB));
  const auto start = reinterpret_cast<uintptr_t>(file.bytes().data());
  std::ifstream maps("/proc/self/maps");
  std::string line, permissions;
  while (std::getline(maps, line)) {
    uintptr_t begin = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &begin, &end, perms) == 3 && begin <= start && start < end) {
      permissions = perms;
    }
  }
  EXPECT_EQ(permissions, "r--s");
}

TEST(MappedPages, ResidencyIsAFractionAndPopulateMakesItOne) {
  test::TempDir dir;
  const MappedFile file(write_cold_file(dir, 8 * MiB + 123));
  // DONTNEED may leave pages cached on some file systems: only the range is guaranteed.
  const double before = resident_fraction(file.bytes());
  EXPECT_GE(before, 0.0);
  EXPECT_LE(before, 1.0);
  prefault(file.bytes(), Prefault::None, 2);
  prefault(file.bytes(), Prefault::Advise, 2);
  prefault(file.bytes(), Prefault::Populate, 2);
  EXPECT_EQ(resident_fraction(file.bytes()), 1.0);
}

TEST(MappedPages, PopulateOfASubrangeFaultsThatRange) {
  test::TempDir dir;
  const MappedFile file(write_cold_file(dir, 4 * MiB));
  // An unaligned piece in the middle: the functions round it out to whole pages.
  const auto middle = file.bytes().subspan(MiB + 100, MiB);
  prefault(middle, Prefault::Populate, 1);
  EXPECT_EQ(resident_fraction(middle), 1.0);
}

TEST(MappedPages, EmptyRangesAreNoOps) {
  EXPECT_EQ(resident_fraction({}), 1.0);
  prefault({}, Prefault::Populate, 2);
  EXPECT_EQ(lock_in_memory({}), std::nullopt);
  EXPECT_EQ(prefault_name(Prefault::None), "none");
  EXPECT_EQ(prefault_name(Prefault::Advise), "advise");
  EXPECT_EQ(prefault_name(Prefault::Populate), "populate");
}

TEST(MappedPages, LockingAFewPagesWorksAndFaultsThemIn) {
  test::TempDir dir;
  const MappedFile file(write_cold_file(dir, 16 * KiB));  // under any default RLIMIT_MEMLOCK
  EXPECT_EQ(lock_in_memory(file.bytes()), std::nullopt);
  if (!kAddressSanitizer) {
    EXPECT_EQ(resident_fraction(file.bytes()), 1.0);
  }
}

TEST(ModelLoading, RamWarningNamesTheCase) {
  const SystemMemory mem{.total = 8 * GiB, .available = 4 * GiB};
  const auto too_big = ram_warning(10 * GiB, mem);
  ASSERT_TRUE(too_big);
  EXPECT_NE(too_big->find("exceed the 8.00 GiB of RAM"), std::string::npos) << *too_big;
  EXPECT_NE(too_big->find("limited by the disk"), std::string::npos) << *too_big;
  const auto evicts = ram_warning(6 * GiB, mem);
  ASSERT_TRUE(evicts);
  EXPECT_NE(evicts->find("4.00 GiB of RAM available now"), std::string::npos) << *evicts;
  EXPECT_NE(evicts->find("evicts"), std::string::npos) << *evicts;
  EXPECT_EQ(ram_warning(2 * GiB, mem), std::nullopt);
  EXPECT_EQ(ram_warning(2 * GiB, SystemMemory{}), std::nullopt);  // unknown RAM: no warning
  const auto capped = ram_warning(2 * GiB, {.total = 8 * GiB, .available = 4 * GiB, .cgroup_limit = GiB});
  ASSERT_TRUE(capped);
  EXPECT_NE(capped->find("1.00 GiB of RAM (the cgroup's limit)"), std::string::npos) << *capped;
}

TEST(ModelLoading, PopulateReportsAndLogsTheLoadLine) {
  test::TempDir dir;
  const std::string path = dir.file("model.gguf");
  test::sample_writer().write(path);
  const gguf::Reader reader(path);
  CapturedLog log;
  const LoadReport r = prepare_model_memory(reader, {.prefault = Prefault::Populate, .mlock = false});
  EXPECT_EQ(r.mapped_bytes, reader.file(0).size());
  EXPECT_EQ(r.cpu_bytes, reader.tensor_bytes());
  EXPECT_GE(r.resident_fraction, 0.0);
  EXPECT_LE(r.resident_fraction, 1.0);
  EXPECT_GE(r.prefault_seconds, 0.0);
  EXPECT_FALSE(r.locked);
  EXPECT_EQ(resident_fraction(reader.file(0).bytes()), 1.0);
  EXPECT_NE(log.text().find("load: "), std::string::npos) << log.text();
  EXPECT_NE(log.text().find("in page cache"), std::string::npos) << log.text();
  EXPECT_NE(log.text().find("populated in"), std::string::npos) << log.text();
}

TEST(ModelLoading, SummaryNamesWarmOrColdAndTheRate) {
  LoadReport r;
  r.mapped_bytes = 3 * GiB;
  r.resident_fraction = 0.999;
  r.prefault = Prefault::Populate;
  r.prefault_seconds = 0.5;
  EXPECT_EQ(r.summary(), "load: 3.00 GiB mapped, 99% in page cache (warm), populated in 0.50 s (6.4 GB/s)");
  r.resident_fraction = 0.2;
  r.prefault = Prefault::Advise;
  r.locked = true;
  EXPECT_EQ(r.summary(), "load: 3.00 GiB mapped, 20% in page cache (cold), read-ahead advised and locked in 0.50 s "
                         "(6.4 GB/s)");
  r.locked = false;
  r.lock_error = "no";
  r.prefault = Prefault::None;
  EXPECT_EQ(r.summary(), "load: 3.00 GiB mapped, 20% in page cache (cold), not prefaulted, not locked (mlock failed)");
}

// mlock beyond RLIMIT_MEMLOCK must warn and go on. Run in a child: it lowers its own limit and,
// when root, drops to an unprivileged user (CAP_IPC_LOCK ignores the limit).
TEST(ModelLoading, MlockFailureWarnsAndDoesNotThrow) {
  test::TempDir dir;
  const std::string path = dir.file("model.gguf");
  test::sample_writer().write(path);
  constexpr int kSkip = 77;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const gguf::Reader reader(path);
    struct rlimit limit {};
    ::getrlimit(RLIMIT_MEMLOCK, &limit);
    limit.rlim_cur = 0;
    if (::setrlimit(RLIMIT_MEMLOCK, &limit) != 0) ::_exit(kSkip);
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(kSkip);
    CapturedLog log;
    LoadReport r;
    try {
      r = prepare_model_memory(reader, {.prefault = Prefault::Advise, .mlock = true});
    } catch (...) {
      ::_exit(1);
    }
    if (r.locked) ::_exit(kSkip);  // still privileged somehow: nothing to test
    if (r.lock_error.find("RLIMIT_MEMLOCK") == std::string::npos) ::_exit(2);
    if (log.text().find("cannot mlock") == std::string::npos) ::_exit(3);
    if (log.text().find("continuing without locking") == std::string::npos) ::_exit(4);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == kSkip) GTEST_SKIP() << "cannot make mlock fail here (privileged, no setuid)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: threw, 2: no limit in the reason, 3/4: no warning logged";
}

}  // namespace
}  // namespace moe

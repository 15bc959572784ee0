// Weight memory: does decode GEMV read weights faster from an anonymous copy in transparent
// huge pages than from the file mapping the engine uses (4 KiB pages)? If it did by enough,
// loading could repack tensors into such memory (docs/performance.md, "Weight memory").
//
// A model-sized set of Q8_0 matrices (random blocks) is written to a file, which stays in the
// page cache, and read through four kinds of memory, all populated before timing:
//   file          the file mapping as MappedFile makes it (the engine's path)
//   file+thp      a 2 MiB-aligned mapping of the file with MADV_HUGEPAGE, then MADV_COLLAPSE
//   anon          an anonymous copy with MADV_NOHUGEPAGE (separates "a copy" from "huge pages")
//   anon+thp      an anonymous 2 MiB-aligned copy with MADV_HUGEPAGE
// One pass is a 1-token matmul over every matrix; passes of the variants are interleaved so
// drift in the machine's load hits them alike. Prints the median GB/s (1e9 B/s) per variant
// and thread count, and the huge-page counters of /proc/self/smaps_rollup.
//
// Usage: bench_weight_memory [--matrices 64] [--reps 11] [--dir /tmp] [--variants file,anon,...]
// (--variants times only those, e.g. one alone, to see whether alternating regions matters).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "ops/cpu/matmul.h"

namespace moe {
namespace {

#ifndef MADV_COLLAPSE
constexpr int MADV_COLLAPSE = 25;  // Linux 6.1
#endif

constexpr int64_t kRows = 2048, kCols = 4096;  // Qwen3-30B-A3B-like expert/attention shapes
constexpr size_t kHugePage = size_t(2) << 20;

struct Args {
  int matrices = 64;  // 64 x 8.5 MiB = 544 MiB
  int reps = 11;
  std::string dir = std::filesystem::temp_directory_path().string();
  std::string variants = "file,file+thp,anon,anon+thp";
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--matrices") a.matrices = std::stoi(value);
    else if (key == "--reps") a.reps = std::stoi(value);
    else if (key == "--dir") a.dir = value;
    else if (key == "--variants") a.variants = value;
    else fail("unknown option {} (use --matrices N, --reps N, --dir DIR, --variants A,B)", key);
  }
  if (argc % 2 == 0) fail("{}: expected a value", argv[argc - 1]);
  return a;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A field of /proc/self/smaps_rollup in KiB ("AnonHugePages", "FilePmdMapped").
uint64_t smaps_kib(const std::string& field) {
  std::istringstream lines(read_file("/proc/self/smaps_rollup"));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(field + ":")) return std::stoull(line.substr(field.size() + 1));
  }
  return 0;
}

// Random Q8_0 blocks with a fixed small scale: the kernel's speed does not depend on values.
void write_weights(const std::string& path, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  std::mt19937 rng(42);
  std::vector<std::byte> chunk(size_t(34) << 16);  // whole blocks
  for (size_t done = 0; done < bytes; done += chunk.size()) {
    for (size_t b = 0; b < chunk.size(); b += 34) {
      const f16 d{0x2000};
      std::memcpy(&chunk[b], &d, 2);
      for (size_t i = 2; i < 34; ++i) chunk[b + i] = std::byte(rng());
    }
    out.write(reinterpret_cast<const char*>(chunk.data()), std::streamsize(std::min(chunk.size(), bytes - done)));
  }
  if (!out) fail("{}: write failed", path);
}

// An mmap'ed region (RAII) starting on a 2 MiB boundary, so huge pages can map all of it.
class AlignedRegion {
 public:
  // fd < 0: anonymous read-write memory; else a read-only private mapping of the file.
  AlignedRegion(size_t bytes, int fd) : bytes_(bytes) {
    void* reserve = ::mmap(nullptr, bytes + kHugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (reserve == MAP_FAILED) fail("mmap of {} bytes failed: {}", bytes, std::strerror(errno));
    auto* base = static_cast<std::byte*>(reserve);
    auto* aligned = base + (kHugePage - reinterpret_cast<uintptr_t>(base) % kHugePage) % kHugePage;
    // Give back the slack on both sides, then map over the aligned part.
    if (aligned > base) ::munmap(base, size_t(aligned - base));
    ::munmap(aligned + bytes, size_t(base + bytes + kHugePage - (aligned + bytes)));
    const int prot = fd < 0 ? PROT_READ | PROT_WRITE : PROT_READ;
    const int flags = MAP_PRIVATE | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0);
    if (::mmap(aligned, bytes, prot, flags, fd, 0) == MAP_FAILED) {
      fail("mmap of {} bytes failed: {}", bytes, std::strerror(errno));
    }
    data_ = aligned;
  }
  ~AlignedRegion() { ::munmap(data_, bytes_); }
  AlignedRegion(const AlignedRegion&) = delete;
  AlignedRegion& operator=(const AlignedRegion&) = delete;

  std::byte* data() const { return data_; }
  std::span<const std::byte> bytes() const { return {data_, bytes_}; }

 private:
  std::byte* data_ = nullptr;
  size_t bytes_;
};

std::string advise(std::byte* p, size_t n, int advice) {
  return ::madvise(p, n, advice) == 0 ? "ok" : std::strerror(errno);
}

struct Variant {
  std::string name;
  const std::byte* data;
  std::vector<double> gb_s[2];  // per thread count (1, 2)
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int run(const Args& args) {
  const size_t matrix_bytes = row_bytes(GgmlType::Q8_0, kCols) * kRows;
  const size_t total = matrix_bytes * size_t(args.matrices);
  const std::string path = (std::filesystem::path(args.dir) / "moe-bench-weight-memory.bin").string();
  struct utsname uts {};
  ::uname(&uts);
  fmt::print("cpu: {} ({} threads, SIMD {}), kernel {}\n", cpu_features().brand,
             std::thread::hardware_concurrency(), simd_level_name(active_simd_level()), uts.release);
  fmt::print("THP enabled: {}THP defrag: {}", read_file("/sys/kernel/mm/transparent_hugepage/enabled"),
             read_file("/sys/kernel/mm/transparent_hugepage/defrag"));
  fmt::print("weights: {} Q8_0 matrices of {}x{}, {:.0f} MiB, in {}\n", args.matrices, kRows, kCols,
             double(total) / double(1 << 20), path);
  write_weights(path, total);

  // (a) the engine's mapping.
  const MappedFile file(path);
  prefault(file.bytes(), Prefault::Populate, 2);
  fmt::print("file mapping: {:.0f}% resident in the page cache\n", resident_fraction(file.bytes()) * 100);

  // (b) the same file, 2 MiB aligned, asked for huge pages (read-only file THP needs
  // CONFIG_READ_ONLY_THP_FOR_FS or a file system with large folios).
  const uint64_t file_pmd_before = smaps_kib("FilePmdMapped");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  const AlignedRegion file_thp(total, fd);
  ::close(fd);
  std::filesystem::remove(path);  // the mappings keep it (and its page cache) until they go
  const std::string file_hugepage = advise(file_thp.data(), total, MADV_HUGEPAGE);
  prefault(file_thp.bytes(), Prefault::Populate, 2);
  const std::string file_collapse = advise(file_thp.data(), total, MADV_COLLAPSE);
  fmt::print("file+thp: MADV_HUGEPAGE {}, MADV_COLLAPSE {}, FilePmdMapped +{} MiB\n", file_hugepage, file_collapse,
             (smaps_kib("FilePmdMapped") - file_pmd_before) / 1024);

  // (c) and (d): anonymous copies without and with huge pages.
  const uint64_t anon_huge_before = smaps_kib("AnonHugePages");
  const AlignedRegion anon(total, -1);
  const std::string anon_nohuge = advise(anon.data(), total, MADV_NOHUGEPAGE);
  std::memcpy(anon.data(), file.bytes().data(), total);
  const AlignedRegion anon_thp(total, -1);
  const std::string anon_huge = advise(anon_thp.data(), total, MADV_HUGEPAGE);
  std::memcpy(anon_thp.data(), file.bytes().data(), total);
  fmt::print("anon: MADV_NOHUGEPAGE {}; anon+thp: MADV_HUGEPAGE {}, AnonHugePages +{} MiB of {} MiB\n", anon_nohuge,
             anon_huge, (smaps_kib("AnonHugePages") - anon_huge_before) / 1024, total >> 20);

  std::vector<Variant> variants = {{"file", file.bytes().data(), {}},
                                   {"file+thp", file_thp.data(), {}},
                                   {"anon", anon.data(), {}},
                                   {"anon+thp", anon_thp.data(), {}}};
  std::erase_if(variants, [&](const Variant& v) {
    return ("," + args.variants + ",").find("," + v.name + ",") == std::string::npos;
  });
  if (variants.empty()) fail("--variants {}: none of file, file+thp, anon, anon+thp", args.variants);
  std::vector<float> x(kCols), y(kRows);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (auto& v : x) v = dist(rng);
  ThreadPool pools[2] = {ThreadPool(1), ThreadPool(2)};
  auto pass = [&](const Variant& v, ThreadPool& pool) {
    const auto start = std::chrono::steady_clock::now();
    for (int m = 0; m < args.matrices; ++m) {
      matmul(WeightView::packed(GgmlType::Q8_0, kRows, kCols, v.data + size_t(m) * matrix_bytes), x, 1, y, pool);
    }
    return double(total) / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 1e9;
  };
  for (auto& v : variants) {
    for (auto& pool : pools) pass(v, pool);  // warm-up
  }
  // Page faults while timing: all memory is populated, so any here means pages were unmapped
  // behind our back (reclaim, migration), which would make a variant slow for reasons other
  // than its page size.
  const auto faults = [] {
    struct rusage u {};
    ::getrusage(RUSAGE_SELF, &u);
    return std::pair<long, long>(u.ru_minflt, u.ru_majflt);
  };
  const auto faults_before = faults();
  for (int rep = 0; rep < args.reps; ++rep) {
    for (int t = 0; t < 2; ++t) {
      for (auto& v : variants) v.gb_s[t].push_back(pass(v, pools[t]));
    }
  }
  const auto faults_after = faults();

  fmt::print("\n| variant  | threads | median GB/s | min   | max   | vs 1st  |\n");
  fmt::print("|----------|--------:|------------:|------:|------:|--------:|\n");
  for (int t = 0; t < 2; ++t) {
    const double base = median(variants[0].gb_s[t]);
    for (const auto& v : variants) {
      const auto [lo, hi] = std::minmax_element(v.gb_s[t].begin(), v.gb_s[t].end());
      fmt::print("| {:<8} | {:>7} | {:>11.2f} | {:>5.2f} | {:>5.2f} | {:>+6.1f}% |\n", v.name, t + 1,
                 median(v.gb_s[t]), *lo, *hi, (median(v.gb_s[t]) / base - 1) * 100);
    }
  }
  fmt::print("({} repetitions per cell, interleaved; page faults while timing: {} minor, {} major)\n", args.reps,
             faults_after.first - faults_before.first, faults_after.second - faults_before.second);
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  try {
    return moe::run(moe::parse_args(argc, argv));
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}

#include "engine/model_loading.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "core/log.h"
#include "core/units.h"

namespace moe {

std::string LoadReport::summary() const {
  if (copied) {
    std::string line = fmt::format("load: {} read into anonymous huge-page memory in {:.2f} s ({:.1f} GB/s), file "
                                   "{:.0f}% in page cache ({})",
                                   format_bytes(mapped_bytes), copy_seconds,
                                   copy_seconds > 0 ? double(mapped_bytes) / copy_seconds / 1e9 : 0.0,
                                   std::floor(resident_fraction * 100.0), warm() ? "warm" : "cold");
    if (locked) line += ", locked";
    if (!lock_error.empty()) line += ", not locked (mlock failed)";
    return line;
  }
  std::string line = fmt::format("load: {} mapped, {:.0f}% in page cache ({})", format_bytes(mapped_bytes),
                                 std::floor(resident_fraction * 100.0), warm() ? "warm" : "cold");
  const double gb_per_s = prefault_seconds > 0 ? double(mapped_bytes) / prefault_seconds / 1e9 : 0.0;
  switch (prefault) {
    case Prefault::None: line += ", not prefaulted"; break;
    case Prefault::Advise: line += ", read-ahead advised"; break;
    case Prefault::Populate: line += ", populated"; break;
  }
  if (locked) line += prefault == Prefault::None ? ", locked" : " and locked";
  if (prefault == Prefault::Populate || locked) {
    line += fmt::format(" in {:.2f} s", prefault_seconds);
    // A warm populate only fills page tables: its "rate" would be hundreds of GB/s of noise.
    if (prefault_seconds >= 0.01) line += fmt::format(" ({:.1f} GB/s)", gb_per_s);
  }
  if (!lock_error.empty()) line += ", not locked (mlock failed)";
  return line;
}

std::optional<std::string> ram_warning(uint64_t cpu_bytes, const SystemMemory& memory) {
  const uint64_t total = memory.usable_total(), available = memory.usable_available();
  if (total == 0) return std::nullopt;  // unknown: nothing to compare with
  const std::string limit =
      memory.cgroup_limit && memory.cgroup_limit < memory.total ? " (the cgroup's limit)" : "";
  if (cpu_bytes > total) {
    return fmt::format("the model's {} of weights exceed the {} of RAM{}: the page cache cannot hold them, so every "
                       "token reads weights from disk and speed is limited by the disk",
                       format_bytes(cpu_bytes), format_bytes(total), limit);
  }
  if (cpu_bytes > available) {
    return fmt::format("the model's {} of weights exceed the {} of RAM available now (of {}{}): loading them "
                       "evicts other processes' memory or page cache, and tokens may read from disk",
                       format_bytes(cpu_bytes), format_bytes(available), format_bytes(total), limit);
  }
  return std::nullopt;
}

LoadReport prepare_model_memory(const gguf::Reader& reader, const LoadOptions& options) {
  LoadReport report;
  report.prefault = options.prefault;
  report.cpu_bytes = reader.tensor_bytes();
  report.memory = read_system_memory();
  if (const auto warning = ram_warning(report.cpu_bytes, report.memory)) spdlog::warn("load: {}", *warning);

  double resident_bytes = 0;
  for (size_t i = 0; i < reader.n_files(); ++i) {
    const auto bytes = reader.file(i).bytes();
    const MappedFile* mapping = reader.file(i).mapping();
    report.mapped_bytes += bytes.size();
    if (mapping && mapping->backing() == MappedFile::Backing::HugePageCopy) {
      // The copy is resident by construction: what mattered was the file before it.
      report.copied = true;
      report.copy_seconds += mapping->copy_seconds();
      resident_bytes += mapping->resident_before_copy() * double(bytes.size());
    } else {
      resident_bytes += resident_fraction(bytes) * double(bytes.size());
    }
  }
  report.resident_fraction = report.mapped_bytes ? resident_bytes / double(report.mapped_bytes) : 1.0;

  const int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const auto start = std::chrono::steady_clock::now();
  if (!report.copied) {
    for (size_t i = 0; i < reader.n_files(); ++i) prefault(reader.file(i).bytes(), options.prefault, threads);
  }
  if (options.mlock) {
    report.locked = true;
    for (size_t i = 0; i < reader.n_files() && report.locked; ++i) {
      const gguf::File& file = reader.file(i);
      if (auto error = lock_in_memory(file.bytes())) {
        // As llama.cpp: the model works unlocked, only slower when the kernel pages it out.
        spdlog::warn("load: cannot mlock {} ({}): {}; continuing without locking", file.path(),
                     format_bytes(file.size()), *error);
        report.locked = false;
        report.lock_error = std::move(*error);
      }
    }
  }
  report.prefault_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("{}", report.summary());
  return report;
}

std::unique_ptr<Model> build_model(const gguf::Reader& reader, const LoadOptions& options) {
  auto model = load_model(reader, ModelOptions{.repack = options.repack});
  const RepackedWeights& r = model->repacked();
  if (r.n_tensors() > 0) {
    spdlog::info("load: repacked {} tensors ({}) into interleaved layouts in {:.2f} s ({:.1f} GB/s); --no-repack "
                 "uses them in place",
                 r.n_tensors(), format_bytes(r.bytes()), r.seconds(), double(r.bytes()) / 1e9 / std::max(r.seconds(), 1e-9));
  }
  return model;
}

}  // namespace moe

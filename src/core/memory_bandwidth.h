#pragma once
// How fast this machine's cores read RAM: the ceiling of every product that streams its
// weights from RAM (CPU decode, the experts a hybrid placement leaves in RAM).
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/thread_pool.h"

namespace moe {

// The 64-bit sum of `bytes` at p (a multiple of 128, p 32-byte aligned), read with wide loads
// and independent accumulators so that the loop is bound by memory, not by the core (AVX2
// where the CPU has it).
uint64_t sum_words(const std::byte* p, size_t bytes);

// GB/s (1e9 B/s) at which all of `pool`'s threads read a fresh buffer of `bytes` (far larger
// than any cache; its pages touched first), in 1 MiB tasks: the best of `passes`.
double measure_ram_read_gb_s(ThreadPool& pool, size_t bytes = size_t(1) << 30, int passes = 3);

}  // namespace moe

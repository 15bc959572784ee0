#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <immintrin.h>
#include <mutex>

namespace moe {
namespace {

inline void cpu_relax() { _mm_pause(); }

uint64_t now_us() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  workers_.reserve(n_threads - 1);
  for (int t = 1; t < n_threads; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_tasks(int thread) {
  // Guided self-scheduling: each claim takes a share of what is left (at least one task), so
  // thousands of small tasks cost a few dozen contended atomics, and the end stays balanced.
  const size_t n = n_tasks_;
  const size_t divisor = 2 * size_t(n_threads_);
  for (;;) {
    size_t begin = next_task_.load(std::memory_order_relaxed);
    size_t batch = 0;
    do {
      if (begin >= n) return;
      batch = std::max<size_t>(1, (n - begin) / divisor);
    } while (!next_task_.compare_exchange_weak(begin, begin + batch, std::memory_order_relaxed));
    for (size_t task = begin; task < begin + batch; ++task) {
      if (failed_.load(std::memory_order_relaxed)) return;  // stop early after an error
      try {
        (*job_)(task, thread);
      } catch (...) {
        static std::mutex m;
        std::lock_guard lock(m);
        if (!failed_.exchange(true)) error_ = std::current_exception();
      }
    }
  }
}

void ThreadPool::worker_main(int thread) {
  uint64_t seen = 0;
  for (;;) {
    // Wait for a new generation: spin first, then sleep.
    uint64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) {
      if (spin_us_.load(std::memory_order_relaxed) > 0) {
        const uint64_t start = now_us();
        for (uint32_t i = 1; (gen = generation_.load(std::memory_order_acquire)) == seen; ++i) {
          cpu_relax();
          if ((i & 255) == 0 && now_us() - start >= spin_us_.load(std::memory_order_relaxed)) break;
        }
      }
      while (gen == seen) {
        // The seq_cst increment pairs with the seq_cst bump in parallel_for: either the caller
        // sees a sleeper and notifies, or this thread sees the new generation and never blocks.
        sleepers_.fetch_add(1);
        generation_.wait(seen);
        sleepers_.fetch_sub(1);
        gen = generation_.load(std::memory_order_acquire);
      }
    }
    seen = gen;
    if (stop_.load()) return;
    run_tasks(thread);
    busy_workers_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::parallel_for(size_t n_tasks, FunctionRef<void(size_t, int)> fn) {
  if (n_tasks == 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (size_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  job_ = &fn;
  n_tasks_ = n_tasks;
  failed_.store(false, std::memory_order_relaxed);
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job
  if (sleepers_.load() > 0) generation_.notify_all();

  run_tasks(0);
  for (uint32_t i = 1; busy_workers_.load(std::memory_order_acquire) != 0; ++i) {
    cpu_relax();
    if ((i & 1023) == 0) std::this_thread::yield();  // a worker may have been descheduled
  }
  job_ = nullptr;
  if (failed_.load()) {
    std::exception_ptr e = std::exchange(error_, nullptr);
    std::rethrow_exception(e);
  }
}

void parallel_chunks(ThreadPool& pool, size_t n, size_t grain,
                     FunctionRef<void(size_t begin, size_t end, int thread)> fn) {
  if (grain == 0) grain = 1;
  const size_t n_chunks = (n + grain - 1) / grain;
  pool.parallel_for(n_chunks, [&](size_t chunk, int thread) {
    const size_t begin = chunk * grain;
    fn(begin, std::min(n, begin + grain), thread);
  });
}

}  // namespace moe

#pragma once
// Persistent worker threads for the many small parallel jobs of a decode step.
//
// parallel_for() publishes a job by bumping a generation counter; workers spin briefly on it
// (a job usually follows within microseconds) and then sleep on it (std::atomic::wait), so an
// idle server burns no CPU. The calling thread takes tasks too. Threads claim runs of tasks
// from one atomic counter (guided scheduling), so uneven tasks balance themselves; a task's
// result must never depend on which thread ran it (that keeps outputs independent of the
// thread count).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/function_ref.h"

namespace moe {

class ThreadPool {
 public:
  // n_threads counts the caller: ThreadPool(1) runs everything on the calling thread.
  // n_threads <= 0 means one per hardware thread.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(task, thread) for every task in [0, n_tasks) and returns when all have finished.
  // `thread` is in [0, size()) and identifies per-thread scratch space. Not reentrant: call it
  // from one thread at a time, never from inside a task. An exception thrown by a task is
  // rethrown here after all tasks have stopped.
  void parallel_for(size_t n_tasks, FunctionRef<void(size_t task, int thread)> fn);

  // How long an idle worker spins before it sleeps (microseconds). 0 sleeps at once. Workers
  // already spinning follow a change at once (a shorter spin puts them to sleep).
  void set_spin_us(uint32_t us) { spin_us_.store(us, std::memory_order_relaxed); }
  uint32_t spin_us() const { return spin_us_.load(std::memory_order_relaxed); }
  // Workers asleep now (waiting for a job without spinning).
  int sleeping_workers() const { return sleepers_.load(); }

 private:
  void worker_main(int thread);
  void run_tasks(int thread);

  int n_threads_;
  std::vector<std::thread> workers_;

  // The published job. Written by the caller before generation_ is bumped.
  FunctionRef<void(size_t, int)>* job_ = nullptr;
  size_t n_tasks_ = 0;
  alignas(64) std::atomic<size_t> next_task_{0};
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> busy_workers_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<uint32_t> spin_us_{200};
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

// Splits [0, n) into chunks of `grain` (the last one shorter) as tasks; fn(begin, end, thread).
void parallel_chunks(ThreadPool& pool, size_t n, size_t grain,
                     FunctionRef<void(size_t begin, size_t end, int thread)> fn);

}  // namespace moe

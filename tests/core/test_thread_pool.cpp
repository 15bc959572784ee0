#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <set>
#include <thread>
#include <stdexcept>
#include <vector>

#include "core/thread_pool.h"

namespace moe {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(7), size_t(1000)}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](size_t task, int thread) {
        ASSERT_GE(thread, 0);
        ASSERT_LT(thread, threads);
        hits[task].fetch_add(1);
      });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "threads=" << threads << " task=" << i;
    }
  }
}

TEST(ThreadPool, ManyBackToBackJobsSeeTheirOwnTasks) {
  ThreadPool pool(3);
  std::vector<int> out(64);
  for (int round = 0; round < 2000; ++round) {
    pool.parallel_for(out.size(), [&](size_t task, int) { out[task] = round + int(task); });
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], round + int(i)) << "round " << round;
  }
}

TEST(ThreadPool, UsesMoreThanOneThreadWhenAvailable) {
  ThreadPool pool(2);
  std::set<int> seen;
  std::mutex m;
  // The first task waits (up to 10 s) until another thread has taken a task, so the test does
  // not depend on the worker waking before the caller runs out of work on a loaded machine.
  std::atomic<bool> other{false};
  pool.parallel_for(64, [&](size_t task, int thread) {
    if (task != 0) other = true;
    if (task == 0) {
      for (int i = 0; i < 10000 && !other; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::lock_guard lock(m);
    seen.insert(thread);
  });
  EXPECT_EQ(seen.size(), 2u);
}

TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(3);
  pool.set_spin_us(0);  // workers go to sleep at once between jobs
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> count{0};
    pool.parallel_for(10, [&](size_t, int) { count.fetch_add(1); });
    ASSERT_EQ(count.load(), 10);
  }
}

// A long spin keeps idle workers awake (the hybrid engine's CPU side between two layers); a
// shorter one set while they spin puts them to sleep at once, not when the long one ends.
TEST(ThreadPool, WorkersFollowAChangeOfTheSpinWhileSpinning) {
  ThreadPool pool(3);
  pool.set_spin_us(60'000'000);
  EXPECT_EQ(pool.spin_us(), 60'000'000u);
  pool.parallel_for(10, [](size_t, int) {});
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(pool.sleeping_workers(), 0);
  pool.set_spin_us(0);
  for (int i = 0; i < 2000 && pool.sleeping_workers() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(pool.sleeping_workers(), 2);
  std::atomic<int> count{0};
  pool.parallel_for(10, [&](size_t, int) { count.fetch_add(1); });
  EXPECT_EQ(count.load(), 10);
}

TEST(ThreadPool, RethrowsTaskExceptionsAndStaysUsable) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(100,
                                 [](size_t task, int) {
                                   if (task == 37) throw std::runtime_error("task 37 failed");
                                 }),
               std::runtime_error);
  std::atomic<int> count{0};
  pool.parallel_for(100, [&](size_t, int) { count.fetch_add(1); });
  EXPECT_EQ(count.load(), 100);
}

TEST(ThreadPool, ParallelChunksCoversTheRange) {
  ThreadPool pool(2);
  std::vector<int> v(1001, 0);
  parallel_chunks(pool, v.size(), 64, [&](size_t begin, size_t end, int) {
    for (size_t i = begin; i < end; ++i) v[i] += 1;
  });
  EXPECT_EQ(std::accumulate(v.begin(), v.end(), 0), 1001);
  for (int x : v) EXPECT_EQ(x, 1);
}

}  // namespace
}  // namespace moe

// ThreadPool::ParallelFor: every index exactly once in blocks of at most `grain`,
// worker ids in range and stable within a block, inline with one thread, reusable.
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include "base/thread_pool.h"
#include "gtest/gtest.h"

namespace flexgs {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceInBlocksOfAtMostGrain) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, size_t{100003}}) {
      for (size_t grain : {size_t{1}, size_t{3}, size_t{64}, size_t{1} << 20}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<bool> bad_block{false}, bad_worker{false};
        pool.ParallelFor(n, grain, [&](size_t begin, size_t end, int worker) {
          if (begin >= end || end > n || end - begin > grain) bad_block = true;
          if (worker < 0 || worker >= pool.size()) bad_worker = true;
          for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        EXPECT_FALSE(bad_block) << threads << " threads, n " << n << ", grain " << grain;
        EXPECT_FALSE(bad_worker);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i << " of " << n;
      }
    }
  }
}

TEST(ThreadPoolTest, OneThreadRunsInlineOnTheCaller) {
  ThreadPool pool(1);
  const auto caller = std::this_thread::get_id();
  bool elsewhere = false;
  pool.ParallelFor(
      100, 7, [&](size_t, size_t, int worker) { elsewhere |= std::this_thread::get_id() != caller || worker != 0; });
  EXPECT_FALSE(elsewhere);
}

TEST(ThreadPoolTest, WorkerScratchIsNotShared) {
  // Per-worker scratch indexed by `worker` must never be used by two blocks at once:
  // each block marks its slot busy and checks nobody else holds it.
  ThreadPool pool(4);
  std::vector<std::atomic<int>> busy(pool.size());
  std::atomic<bool> shared{false};
  std::atomic<size_t> sum{0};
  for (int round = 0; round < 20; ++round) {
    pool.ParallelFor(20000, 17, [&](size_t begin, size_t end, int worker) {
      if (busy[worker].fetch_add(1) != 0) shared = true;
      size_t s = 0;
      for (size_t i = begin; i < end; ++i) s += i;
      sum += s;
      busy[worker].fetch_sub(1);
    });
  }
  EXPECT_FALSE(shared);
  EXPECT_EQ(sum.load(), size_t{20} * (size_t{20000} * 19999 / 2));
}

}  // namespace
}  // namespace flexgs

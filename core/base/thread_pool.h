// ThreadPool: a fixed set of worker threads for data-parallel loops.
//
// ParallelFor hands out index blocks dynamically; callers make results
// deterministic by writing to disjoint outputs (never by reduction order).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flexgs {

class ThreadPool {
 public:
  // `threads` = 0 uses std::thread::hardware_concurrency(); 1 runs inline.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end, worker) for blocks of at most `grain` indices covering [0, n).
  // `worker` is in [0, size()) and is stable for the duration of one block, so it can
  // index per-worker scratch. Blocks until all blocks are done. Not reentrant.
  void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn);

 private:
  void WorkerLoop(int id);
  void RunBlocks(int worker);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(size_t, size_t, int)>* job_ = nullptr;
  size_t job_n_ = 0, job_grain_ = 1;
  std::atomic<size_t> next_{0};
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace flexgs

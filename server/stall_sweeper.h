// One thread that finds writes which have not completed in time, for every stream of
// a server.
//
// Why not a grpc::Alarm per write: with the callback API each alarm costs an
// allocation, a timer-heap insert and cancel, and -- cancelled or fired -- a hop
// through gRPC's executor (a futex wake-up) for its callback. A stream of ten messages
// paid ten of them; this sweeper pays one scan every `period` for all streams.
#ifndef FLEXGS_SERVER_STALL_SWEEPER_H_
#define FLEXGS_SERVER_STALL_SWEEPER_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace flexgs::server {

// What the sweeper watches: one stream.
class StallWatch {
 public:
  virtual ~StallWatch() = default;
  // Under the sweeper's lock. True when a write has been in flight too long at `now`:
  // the watch then holds itself alive (it cannot finish) until OnStalled has run.
  virtual bool MarkIfStalled(std::chrono::steady_clock::time_point now) = 0;
  // Outside the sweeper's lock, once after MarkIfStalled returned true: cancel, then
  // release the hold (after which the watch may be deleted at any moment).
  virtual void OnStalled() = 0;
};

class StallSweeper {
 public:
  // Scans every `period` (> 0): a stall is noticed between the watch's limit and the
  // limit plus one period.
  explicit StallSweeper(std::chrono::milliseconds period);
  ~StallSweeper();  // stops and joins the thread
  StallSweeper(const StallSweeper&) = delete;
  StallSweeper& operator=(const StallSweeper&) = delete;

  void Add(StallWatch* watch);
  // After Remove returns the sweeper does not call `watch` again (a watch that is
  // between MarkIfStalled and OnStalled cannot be removed: it holds itself alive).
  void Remove(StallWatch* watch);

 private:
  void Run();

  const std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::unordered_set<StallWatch*> watches_;
  std::thread thread_;
};

}  // namespace flexgs::server

#endif  // FLEXGS_SERVER_STALL_SWEEPER_H_

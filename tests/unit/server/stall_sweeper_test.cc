#include "server/stall_sweeper.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "gtest/gtest.h"

namespace flexgs::server {
namespace {

using namespace std::chrono_literals;

// A watch whose write "started" at `start` and is stalled once older than `limit`.
class FakeWatch : public StallWatch {
 public:
  FakeWatch(std::chrono::steady_clock::time_point start, std::chrono::milliseconds limit)
      : start_(start), limit_(limit) {}
  bool MarkIfStalled(std::chrono::steady_clock::time_point now) override {
    ++scans;
    if (marked || now - start_ < limit_) return false;
    marked = true;
    return true;
  }
  void OnStalled() override {
    stalled_after = std::chrono::steady_clock::now() - start_;
    ++calls;
  }
  std::atomic<int> scans{0};
  std::atomic<int> calls{0};
  bool marked = false;  // under the sweeper's lock
  std::chrono::steady_clock::duration stalled_after{};

 private:
  const std::chrono::steady_clock::time_point start_;
  const std::chrono::milliseconds limit_;
};

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(StallSweeperTest, CallsOnStalledOnceAfterTheLimit) {
  StallSweeper sweeper(10ms);
  FakeWatch stalled(std::chrono::steady_clock::now(), 50ms);
  FakeWatch healthy(std::chrono::steady_clock::now(), 3600'000ms);
  sweeper.Add(&stalled);
  sweeper.Add(&healthy);
  ASSERT_TRUE(WaitFor([&] { return stalled.calls.load() == 1; }));
  EXPECT_GE(stalled.stalled_after, 50ms);
  // Generous upper bound: one period late plus scheduling on a loaded CI machine.
  EXPECT_LT(stalled.stalled_after, 2000ms);
  ASSERT_TRUE(WaitFor([&] { return healthy.scans.load() >= 8; }));
  EXPECT_EQ(stalled.calls.load(), 1);  // marked once: never called again
  EXPECT_EQ(healthy.calls.load(), 0);
  sweeper.Remove(&stalled);
  sweeper.Remove(&healthy);
}

TEST(StallSweeperTest, ARemovedWatchIsNeverScannedAgain) {
  FakeWatch watch(std::chrono::steady_clock::now(), 3600'000ms);
  StallSweeper sweeper(1ms);
  sweeper.Add(&watch);
  ASSERT_TRUE(WaitFor([&] { return watch.scans.load() >= 3; }));
  sweeper.Remove(&watch);
  const int scans = watch.scans.load();
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(watch.scans.load(), scans);
}

}  // namespace
}  // namespace flexgs::server

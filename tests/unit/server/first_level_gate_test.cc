#include "server/first_level_gate.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "gtest/gtest.h"

namespace flexgs::server {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class FakeWaiter : public FirstLevelGate::Waiter {
 public:
  void Parked() { parked_at = Clock::now(); }
  void OnGateOpen() override {
    waited = Clock::now() - parked_at;
    ++opened;
  }
  std::atomic<int> opened{0};
  Clock::time_point parked_at;
  Clock::duration waited{};
};

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(FirstLevelGateTest, OpenWithoutYoungStreamsInTheirFirstLevel) {
  FirstLevelGate gate(1000ms);
  FakeWaiter w;
  EXPECT_FALSE(gate.Park(&w));  // nobody entered
  FirstLevelGate::Entry e;
  gate.Enter(&e);
  gate.Leave(&e);
  gate.Leave(&e);               // idempotent
  EXPECT_FALSE(gate.Park(&w));  // left again
  EXPECT_EQ(gate.parked_total(), 0u);
  EXPECT_EQ(w.opened.load(), 0);
}

TEST(FirstLevelGateTest, TheLastFirstLevelOutReleasesEveryWaiter) {
  FirstLevelGate gate(60'000ms);  // only Leave can open it within the test
  FirstLevelGate::Entry a, b;
  gate.Enter(&a);
  gate.Enter(&b);
  FakeWaiter w1, w2;
  w1.Parked();
  ASSERT_TRUE(gate.Park(&w1));
  w2.Parked();
  ASSERT_TRUE(gate.Park(&w2));
  gate.Leave(&a);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(w1.opened.load() + w2.opened.load(), 0);  // b is still in its first level
  gate.Leave(&b);
  ASSERT_TRUE(WaitFor([&] { return w1.opened.load() == 1 && w2.opened.load() == 1; }));
  EXPECT_EQ(gate.parked_total(), 2u);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(w1.opened.load(), 1);  // once per park
  EXPECT_EQ(w2.opened.load(), 1);
}

TEST(FirstLevelGateTest, AWaiterWaitsAtMostTheLimitAndOldEntriesStopCounting) {
  FirstLevelGate gate(100ms);
  FakeWaiter w;
  w.Parked();                  // before the entry: it holds the gate 100 ms from its own start
  FirstLevelGate::Entry slow;  // never leaves
  gate.Enter(&slow);
  ASSERT_TRUE(gate.Park(&w));
  ASSERT_TRUE(WaitFor([&] { return w.opened.load() == 1; }));
  EXPECT_GE(w.waited, 100ms);  // not before the entry ages out
  EXPECT_LT(w.waited, 3000ms);
  // The entry is now older than the limit: it no longer holds anyone back.
  EXPECT_FALSE(gate.Park(&w));
  gate.Leave(&slow);
}

TEST(FirstLevelGateTest, ASteadyArrivalOfNewStreamsCannotStarveAWaiter) {
  FirstLevelGate gate(200ms);
  std::atomic<bool> stop{false};
  // A new stream every 5 ms, each entering before the last one leaves: never empty.
  FirstLevelGate::Entry entries[2];
  gate.Enter(&entries[0]);
  gate.Enter(&entries[0]);  // idempotent
  std::thread arrivals([&] {
    for (int cur = 0; !stop.load(); cur = 1 - cur) {
      std::this_thread::sleep_for(5ms);
      gate.Enter(&entries[1 - cur]);
      gate.Leave(&entries[cur]);
    }
  });
  for (int i = 0; i < 5; ++i) {
    FakeWaiter w;
    w.Parked();
    ASSERT_TRUE(WaitFor([&] { return gate.Park(&w); })) << i;  // once the arrivals run
    // Always busy, so only its limit releases it (unless the arrivals thread is
    // descheduled for over 100 ms: the lower bound allows for that much).
    ASSERT_TRUE(WaitFor([&] { return w.opened.load() == 1; }, 3000ms)) << i;
    EXPECT_GE(w.waited, 100ms) << i;
    EXPECT_LT(w.waited, 3000ms) << i;
  }
  stop = true;
  arrivals.join();
  gate.Leave(&entries[0]);
  gate.Leave(&entries[1]);
}

TEST(FirstLevelGateTest, DestroyingTheGateReleasesWaiters) {
  FakeWaiter w;
  {
    FirstLevelGate gate(60'000ms);
    FirstLevelGate::Entry e;
    gate.Enter(&e);
    ASSERT_TRUE(gate.Park(&w));
  }
  EXPECT_EQ(w.opened.load(), 1);
}

}  // namespace
}  // namespace flexgs::server

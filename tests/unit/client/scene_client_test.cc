// SceneClient against an in-process flexgs server: stopping a stream from another
// thread (StreamCancel), the way a viewer does when its window closes.
#include "client/scene_client.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "client/resident_store.h"
#include "gtest/gtest.h"
#include "tests/support/local_server.h"

namespace flexgs::client {
namespace {

using Clock = std::chrono::steady_clock;
using flexgs::testing::LocalServer;

// The whole scene over two rungs: long enough to be cut in the middle.
StreamRequest WholeScene() { return flexgs::testing::LosslessRequest(1.0, {0.05, 0.5}); }

// Counts completed levels, and cancels once the first one is held.
class CancelAfterFirstLevel : public StreamObserver {
 public:
  explicit CancelAfterFirstLevel(StreamCancel* cancel) : cancel_(cancel) {}
  void OnLevelComplete(const LevelStats& /*stats*/, const ResidentStore& store) override {
    ++levels;
    held = store.size();
    if (levels == 1) {
      // From another thread, as a window's event loop would.
      std::thread([c = cancel_] { c->Cancel(); }).join();
    }
  }
  int levels = 0;
  uint64_t held = 0;

 private:
  StreamCancel* cancel_;
};

TEST(StreamCancelTest, StopsAStreamInFlightAndKeepsWhatIsHeld) {
  LocalServer server;
  auto client = SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  StreamCancel cancel;
  StreamOptions options;
  options.cancel = &cancel;
  options.max_bandwidth_bytes_per_s = 1 << 20;  // the whole stream would take several seconds
  HostResidentStore store;
  CancelAfterFirstLevel observer(&cancel);
  const auto t0 = Clock::now();
  auto summary = (*client)->Stream(WholeScene(), options, &store, &observer);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kCancelled) << summary.status();
  EXPECT_EQ(observer.levels, 1);
  EXPECT_EQ(observer.held, 2000u) << "5% of 40,000";
  EXPECT_LT(secs, 5.0);
  EXPECT_TRUE(cancel.cancelled());
}

TEST(StreamCancelTest, CancelledBeforehandReceivesNothing) {
  LocalServer server;
  auto client = SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  StreamCancel cancel;
  cancel.Cancel();
  StreamOptions options;
  options.cancel = &cancel;
  HostResidentStore store;
  auto summary = (*client)->Stream(WholeScene(), options, &store, nullptr);
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(store.size(), 0u);
}

TEST(StreamCancelTest, CutsABackoffWaitShort) {
  // Nothing listens on this port: every attempt fails UNAVAILABLE and the client backs
  // off between attempts; a Cancel() during the wait ends Stream() at once.
  ConnectOptions nowhere;
  nowhere.address = "127.0.0.1:1";
  auto client = SceneClient::Connect(nowhere);
  ASSERT_TRUE(client.ok()) << client.status();
  StreamCancel cancel;
  StreamOptions options;
  options.cancel = &cancel;
  options.retry.initial_backoff = std::chrono::milliseconds(30'000);
  options.retry.max_backoff = std::chrono::milliseconds(30'000);
  options.retry.give_up_after = std::chrono::milliseconds(120'000);
  HostResidentStore store;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel.Cancel();
  });
  const auto t0 = Clock::now();
  auto summary = (*client)->Stream(WholeScene(), options, &store, nullptr);
  canceller.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kCancelled) << summary.status();
  EXPECT_LT(secs, 10.0) << "the 30 s backoff was not cut short";
}

TEST(StreamCancelTest, UncancelledStreamCompletes) {
  LocalServer server;
  auto client = SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  StreamCancel cancel;
  StreamOptions options;
  options.cancel = &cancel;
  HostResidentStore store;
  StreamRequest request = WholeScene();
  request.ratio = 0.1;
  auto summary = (*client)->Stream(request, options, &store, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(store.size(), 4000u);
  EXPECT_FALSE(cancel.cancelled());
}

TEST(FramingBoundsTest, ViewBoundsFirstThenFullBoundsElseDataLoss) {
  v1::SceneInfo info;
  for (double v : {-4.0, -4.0, -4.0}) info.mutable_bounds()->add_min(v);
  for (double v : {4.0, 4.0, 4.0}) info.mutable_bounds()->add_max(v);
  auto full = FramingBounds(info);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->hi.x(), 4.0);
  for (double v : {-1.0, -2.0, -3.0}) info.mutable_view_bounds()->add_min(v);
  for (double v : {1.0, 2.0, 3.0}) info.mutable_view_bounds()->add_max(v);
  auto view = FramingBounds(info);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->lo.y(), -2.0);
  EXPECT_EQ(view->hi.z(), 3.0);
  EXPECT_EQ(FramingBounds(v1::SceneInfo{}).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace flexgs::client

// LevelFeed: snapshots of complete levels handed from the stream thread, and a prompt
// stop while the stream is still running.
#include "viewer/level_feed.h"

#include <chrono>

#include "gtest/gtest.h"
#include "tests/support/local_server.h"

namespace flexgs::viewer {
namespace {

using Clock = std::chrono::steady_clock;

using flexgs::testing::LosslessRequest;

TEST(LevelFeedTest, PublishesEachCompleteLevelAndThePreviousOne) {
  flexgs::testing::LocalServer server;
  auto client = client::SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  LevelFeed feed;
  EXPECT_EQ(feed.state().current, nullptr);
  feed.Start(client->get(), LosslessRequest(0.2), {}, /*keep_history=*/true);
  const FeedState first = feed.WaitForLevel(0, 30);
  ASSERT_GE(first.level, 0) << first.status;
  ASSERT_NE(first.current, nullptr);
  const FeedState end = feed.WaitForLevel(-1, 30);
  ASSERT_TRUE(end.done);
  ASSERT_TRUE(end.status.ok()) << end.status;
  // Rungs 5, 10 and 20 % with three stops of 2^(1/4) between each two.
  EXPECT_EQ(end.levels, 9);
  EXPECT_EQ(end.level, 8);
  ASSERT_NE(end.current, nullptr);
  ASSERT_NE(end.previous, nullptr);
  EXPECT_EQ(end.current->size(), 8000u);
  EXPECT_EQ(end.previous->size(), 6727u);  // floor(40,000 x 0.1 x 2^(3/4))
  EXPECT_GT(end.bytes, 0u);
  EXPECT_GT(end.version, first.version);
  // Snapshots do not change under their holder: the level seen first (0, or a later one
  // when the stream outran the wait) still holds that level's count.
  ASSERT_LT(first.level, static_cast<int>(end.history.size()));
  EXPECT_EQ(first.current->size(), end.history[first.level]->size());
  ASSERT_EQ(end.history.size(), 9u);
  EXPECT_EQ(end.history[0]->size(), 2000u);
  EXPECT_EQ(end.history[4]->size(), 4000u);
  EXPECT_EQ(end.history[7], end.previous);
  EXPECT_EQ(end.history[8], end.current);
}

TEST(LevelFeedTest, StopEndsAStreamInFlightPromptly) {
  flexgs::testing::LocalServer server;
  auto client = client::SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  LevelFeed feed;
  client::StreamOptions options;
  options.max_bandwidth_bytes_per_s = 1 << 20;  // about ten seconds for the whole scene
  feed.Start(client->get(), LosslessRequest(1.0), options);
  ASSERT_GE(feed.WaitForLevel(0, 30).level, 0);
  const auto t0 = Clock::now();
  feed.Stop();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0);
  const FeedState s = feed.state();
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.status.code(), absl::StatusCode::kCancelled) << s.status;
  EXPECT_NE(s.current, nullptr) << "what arrived before the stop stays";
  EXPECT_TRUE(s.history.empty()) << "kept only when asked";
}

TEST(LevelFeedTest, AnUnknownSceneEndsWithNotFound) {
  flexgs::testing::LocalServer server;
  auto client = client::SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  LevelFeed feed;
  client::StreamRequest r = LosslessRequest(0.1);
  r.scene_id = "nope";
  feed.Start(client->get(), r, {});
  const FeedState s = feed.WaitForLevel(0, 30);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.status.code(), absl::StatusCode::kNotFound) << s.status;
  EXPECT_EQ(s.current, nullptr);
}

}  // namespace
}  // namespace flexgs::viewer

// BudgetStreams: a larger budget extends the stream held in place; a smaller one streams
// again, and the picture switches only once that stream ends.
#include "viewer/budget_streams.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/support/cloud_equality.h"
#include "tests/support/local_server.h"

namespace flexgs::viewer {
namespace {

using ::flexgs::testing::BitEqual;
using flexgs::testing::LosslessRequest;

// Polls State() (as the window's frame loop does) until `done` holds or 30 s pass.
template <typename Pred>
FeedState Poll(BudgetStreams& s, Pred done) {
  FeedState st;
  for (int i = 0; i < 3000; ++i) {
    st = s.State();
    if (done(st)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return st;
}

TEST(NextBudgetStepTest, WalksTheSteps) {
  EXPECT_EQ(NextBudgetStep(15, true), 25);
  EXPECT_EQ(NextBudgetStep(15, false), 10);
  EXPECT_EQ(NextBudgetStep(12, true), 15);
  EXPECT_EQ(NextBudgetStep(12, false), 10);
  EXPECT_EQ(NextBudgetStep(100, true), 100);
  EXPECT_EQ(NextBudgetStep(1, false), 1);
}

TEST(BudgetStreamsTest, ARaisedBudgetIsShownOnceItHoldsMore) {
  flexgs::testing::LocalServer server;
  auto client = client::SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  BudgetStreams streams(client->get(), LosslessRequest(0.1), {});
  FeedState s = Poll(streams, [](const FeedState& f) { return f.done; });
  ASSERT_TRUE(s.status.ok()) << s.status;
  ASSERT_EQ(s.current->size(), 4000u);
  const uint64_t bytes_at_10 = s.bytes;
  // A larger budget extends the stream held: nothing to catch up, the 4,000 stay on
  // screen until the next level lands, and only what the 10 % stream lacked is sent.
  streams.Restart(0.2);
  EXPECT_FALSE(streams.restarting());
  s = Poll(streams, [](const FeedState& f) { return f.done && f.current && f.current->size() != 4000u; });
  ASSERT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.current->size(), 8000u) << "the 20% stream's last level";
  LevelFeed fresh;
  fresh.Start(client->get(), LosslessRequest(0.2), {});
  const FeedState f = fresh.WaitForLevel(-1, 30);
  ASSERT_TRUE(f.status.ok()) << f.status;
  EXPECT_EQ(f.current->size(), 8000u);
  // Everything once, plus the 20 % stream's header and the 10 % stream's own header and trailer.
  EXPECT_GT(s.bytes, f.bytes);
  EXPECT_LT(s.bytes, f.bytes + 4096) << "the extension re-sent what was held (" << bytes_at_10 << " bytes at 10%)";
  EXPECT_TRUE(BitEqual(*s.current, *f.current));
}

TEST(BudgetStreamsTest, ALoweredBudgetIsShownWhenItsStreamEnds) {
  flexgs::testing::LocalServer server;
  auto client = client::SceneClient::Connect(server.connect_options());
  ASSERT_TRUE(client.ok()) << client.status();
  BudgetStreams streams(client->get(), LosslessRequest(0.1), {});
  ASSERT_TRUE(Poll(streams, [](const FeedState& f) { return f.done; }).status.ok());
  streams.Restart(0.05);
  const FeedState s = Poll(streams, [&](const FeedState&) { return !streams.restarting(); });
  EXPECT_FALSE(streams.restarting());
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.current->size(), 2000u);
}

}  // namespace
}  // namespace flexgs::viewer

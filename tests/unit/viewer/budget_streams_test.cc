// BudgetStreams: a new budget streams again, and the picture switches only once the new
// stream holds more than the old one (or ends).
#include "viewer/budget_streams.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/support/local_server.h"

namespace flexgs::viewer {
namespace {

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
  streams.Restart(0.2);
  EXPECT_TRUE(streams.restarting());
  // Until the new stream holds more than 4,000 the old picture stays.
  s = Poll(streams, [](const FeedState& f) { return f.current && f.current->size() != 4000u; });
  EXPECT_EQ(s.current->size(), 8000u) << "the first level above 4,000 of the 20% stream";
  EXPECT_FALSE(streams.restarting());
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

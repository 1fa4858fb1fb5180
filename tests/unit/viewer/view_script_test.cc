// View scripts: what `flexgs-view --headless --script` accepts and what it refuses.
#include "viewer/view_script.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flexgs::viewer {
namespace {

using ::testing::HasSubstr;

TEST(ViewScriptTest, ParsesEveryCommand) {
  auto steps = ParseViewScript(
      "# a path\n"
      "wait-level 0\n"
      "frame first.png   # the first level\n"
      "\n"
      "orbit 30 -10 0.5\n"
      "drag 120 -4\n"
      "pan 3 4\n"
      "zoom -2\n"
      "fly 1 0 -0.5 0.25\n"
      "compare on\n"
      "reset\n"
      "wait-level last\n");
  ASSERT_TRUE(steps.ok()) << steps.status();
  ASSERT_EQ(steps->size(), 10u);
  using K = ScriptStep::Kind;
  EXPECT_EQ((*steps)[0].kind, K::kWaitLevel);
  EXPECT_EQ((*steps)[0].args, std::vector<double>{0});
  EXPECT_EQ((*steps)[1].kind, K::kFrame);
  EXPECT_EQ((*steps)[1].name, "first.png");
  EXPECT_EQ((*steps)[1].line, 3);
  EXPECT_EQ((*steps)[2].args, (std::vector<double>{30, -10, 0.5}));
  EXPECT_EQ((*steps)[5].args, std::vector<double>{-2});
  EXPECT_EQ((*steps)[6].args, (std::vector<double>{1, 0, -0.5, 0.25}));
  EXPECT_TRUE((*steps)[7].on);
  EXPECT_EQ((*steps)[8].kind, K::kReset);
  EXPECT_EQ((*steps)[9].args, std::vector<double>{-1}) << "'last' waits for the end";
}

TEST(ViewScriptTest, RejectsBadLinesNamingThem) {
  const struct {
    const char* text;
    const char* message;
  } cases[] = {
      {"jump 1", "line 1: unknown command 'jump'"},
      {"wait-level 0\norbit 1 2", "line 2: 'orbit' takes 3 arguments, got 2"},
      {"zoom fast", "'fast' is not a finite number"},
      {"zoom nan", "'nan' is not a finite number"},
      {"wait-level -1", "level index >= 0 or 'last'"},
      {"wait-level 1.5", "level index >= 0 or 'last'"},
      {"fly 2 0 0 1", "within [-1, 1]"},
      {"fly 0 0 0 -1", "SECONDS must be >= 0"},
      {"frame ../x.png", "plain file name"},
      {"frame shot.jpg", "plain file name"},
      {"compare maybe", "'on' or 'off'"},
      {"reset now", "'reset' takes 0 arguments"},
  };
  for (const auto& c : cases) {
    auto steps = ParseViewScript(c.text);
    ASSERT_FALSE(steps.ok()) << c.text;
    EXPECT_EQ(steps.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(steps.status().message()), HasSubstr(c.message)) << c.text;
  }
  EXPECT_TRUE(ParseViewScript("").ok());
}

}  // namespace
}  // namespace flexgs::viewer

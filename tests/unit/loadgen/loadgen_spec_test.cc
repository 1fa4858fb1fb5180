// flexgs-loadgen's pure parts: the --budgets mix, the weighted order, scene lists,
// per-stream seeds, nearest-rank percentiles and the report's exit code.
#include <algorithm>
#include <set>

#include <gtest/gtest.h>

#include "loadgen/load_report.h"
#include "loadgen/load_spec.h"

namespace flexgs::loadgen {
namespace {

TEST(LoadgenBudgetMix, ParsesEveryKindAndWeights) {
  auto mix = ParseBudgetMix("ratio:0.05, ratio:0.15@3,bytes:2MiB,gaussians:20000");
  ASSERT_TRUE(mix.ok()) << mix.status();
  ASSERT_EQ(mix->size(), 4u);
  EXPECT_EQ((*mix)[0].kind, Budget::Kind::kRatio);
  EXPECT_DOUBLE_EQ((*mix)[0].ratio, 0.05);
  EXPECT_EQ((*mix)[0].weight, 1);
  EXPECT_EQ((*mix)[0].label, "ratio:0.05");
  EXPECT_DOUBLE_EQ((*mix)[1].ratio, 0.15);
  EXPECT_EQ((*mix)[1].weight, 3);
  EXPECT_EQ((*mix)[1].label, "ratio:0.15");
  EXPECT_EQ((*mix)[2].kind, Budget::Kind::kBytes);
  EXPECT_EQ((*mix)[2].bytes, 2u << 20);
  EXPECT_EQ((*mix)[3].kind, Budget::Kind::kGaussians);
  EXPECT_EQ((*mix)[3].gaussians, 20000u);
}

TEST(LoadgenBudgetMix, RejectsBadEntriesNamingThem) {
  for (const char* bad : {"", "ratio:0", "ratio:1.5", "ratio:nan", "ratio:-0.1", "ratio:x", "bytes:0", "bytes:lots",
                          "gaussians:0", "gaussians:1.5", "gaussians:-3", "pixels:3", "0.15", "ratio:0.1@0",
                          "ratio:0.1@1001", "ratio:0.1@two", "ratio:0.1,,ratio:0.2"}) {
    auto mix = ParseBudgetMix(bad);
    EXPECT_FALSE(mix.ok()) << "'" << bad << "' accepted";
    if (!mix.ok()) {
      EXPECT_EQ(mix.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(mix.status().message().find("--budgets"), absl::string_view::npos) << mix.status();
    }
  }
  EXPECT_TRUE(ParseBudgetMix("ratio:1").ok());
}

TEST(LoadgenWeightedCycle, EqualWeightsIsRoundRobin) {
  auto mix = ParseBudgetMix("ratio:0.1,ratio:0.2,ratio:0.3");
  ASSERT_TRUE(mix.ok());
  EXPECT_EQ(WeightedCycle(*mix), (std::vector<int>{0, 1, 2}));
}

TEST(LoadgenWeightedCycle, WeightsAreExactAndInterleaved) {
  auto mix = ParseBudgetMix("ratio:0.1@5,ratio:0.2,ratio:0.3");
  ASSERT_TRUE(mix.ok());
  // nginx's smooth weighted round robin for 5,1,1.
  EXPECT_EQ(WeightedCycle(*mix), (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
  auto mix2 = ParseBudgetMix("ratio:0.1@3,ratio:0.2@2");
  ASSERT_TRUE(mix2.ok());
  const auto cycle = WeightedCycle(*mix2);
  ASSERT_EQ(cycle.size(), 5u);
  EXPECT_EQ(std::count(cycle.begin(), cycle.end(), 0), 3);
  EXPECT_EQ(std::count(cycle.begin(), cycle.end(), 1), 2);
}

TEST(LoadgenSceneList, CommaListsAndRepeats) {
  auto s = ParseSceneList({"a,b", " c "});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_FALSE(ParseSceneList({}).ok());
  EXPECT_FALSE(ParseSceneList({"a,,b"}).ok());
}

TEST(LoadgenStreamSeed, DistinctPerIndexAndSeed) {
  std::set<uint64_t> seen;
  for (uint64_t seed : {1, 2}) {
    for (uint64_t i = 0; i < 1000; ++i) seen.insert(StreamSeed(seed, i));
  }
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_EQ(StreamSeed(7, 3), StreamSeed(7, 3));
}

TEST(LoadgenPercentile, NearestRank) {
  std::vector<double> v;
  for (int i = 1; i <= 64; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 0.50), 32);
  EXPECT_EQ(Percentile(v, 0.90), 58);  // ceil(57.6)
  EXPECT_EQ(Percentile(v, 0.99), 64);
  EXPECT_EQ(Percentile({5.0}, 0.5), 5);
  EXPECT_EQ(Percentile({}, 0.5), 0);
}

TEST(LoadgenReport, ExitCodeAndJsonShape) {
  RunStats a, b;
  a.started = a.completed = 2;
  a.fast.first_chunk_s = {0.001, 0.003};
  a.fast.level_end_s = {{0.002, 0.004}};
  a.fast.completion_s = {0.01, 0.02};
  b.started = 2;
  b.cancelled = 1;
  b.failed_by_code["UNAVAILABLE"] = 1;
  b.example_error["UNAVAILABLE"] = "connection refused";
  b.fast.level_end_s = {{0.001}, {0.005}};
  a.Merge(std::move(b));
  EXPECT_EQ(a.started, 4u);
  EXPECT_EQ(a.failed(), 1u);
  EXPECT_EQ(ExitCode(a), 2);
  LoadConfig config;
  config.target = "127.0.0.1:1";
  config.scenes = {"s"};
  config.total = 4;
  RunInfo info;
  info.wall_s = 2;
  const auto j = ReportJson(config, a, info);
  EXPECT_EQ(j["counts"]["failed_by_code"]["UNAVAILABLE"], 1);
  EXPECT_EQ(j["latency_ms"]["level_end"].size(), 2u);
  EXPECT_EQ(j["latency_ms"]["level_end"][0]["n"], 3);
  EXPECT_DOUBLE_EQ(j["latency_ms"]["level_end"][0]["max"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(j["throughput"]["streams_per_s"].get<double>(), 1.0);
  EXPECT_TRUE(j["duration_s"].is_null());
  EXPECT_FALSE(j.contains("latency_ms_slow_readers"));
  const std::string text = ReportText(config, a, info);
  EXPECT_NE(text.find("UNAVAILABLE: 1"), std::string::npos) << text;
  EXPECT_NE(text.find("level 1 LEVEL_END"), std::string::npos) << text;

  RunStats ok;
  ok.started = ok.cancelled = ok.interrupted = 1;
  EXPECT_EQ(ExitCode(ok), 0);
  ok.verification_failures = 1;
  EXPECT_EQ(ExitCode(ok), 2);
}

}  // namespace
}  // namespace flexgs::loadgen

// Client budgets (memory, ratio, Gaussians) to the top ratio a stream serves.
#include <cstdint>
#include <limits>
#include <vector>

#include "elastic/elastic_selection.h"  // ElasticCount
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stream/stream_budget.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

const std::vector<double> kLadder = {0.01, 0.05, 0.10, 0.15};

TEST(StreamBudgetTest, ResidentBytesPerGaussian) {
  EXPECT_EQ(ResidentBytesPerGaussian(0), 56u + kRenderOverheadBytesPerGaussian);
  EXPECT_EQ(ResidentBytesPerGaussian(3), 236u + kRenderOverheadBytesPerGaussian);
  EXPECT_EQ(ResidentBytesPerGaussian(0), 128u);
}

TEST(StreamBudgetTest, MemoryBudgetAtTheExactBoundary) {
  const uint64_t n = 1'000'000;
  const uint64_t per = ResidentBytesPerGaussian(0);
  const uint64_t min_bytes = 10'000 * per;  // 1% of 1M
  auto ok = DecideBudget({Budget::Kind::kMemoryBytes, static_cast<double>(min_bytes)}, n, 0, kLadder);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->gaussians, 10'000u);
  EXPECT_EQ(ok->resident_bytes, min_bytes);
  EXPECT_EQ(ElasticCount(n, ok->top_ratio), 10'000u);
  EXPECT_DOUBLE_EQ(ok->top_ratio, 0.01);

  auto low = DecideBudget({Budget::Kind::kMemoryBytes, static_cast<double>(min_bytes - 1)}, n, 0, kLadder);
  EXPECT_EQ(low.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(low.status().message()), HasSubstr("1280000 bytes"));
  EXPECT_THAT(std::string(low.status().message()), HasSubstr("1279999 bytes holds 9999 Gaussians"));
  EXPECT_THAT(std::string(low.status().message()), HasSubstr("1% = 10000 Gaussians"));

  // SH 3 costs more per Gaussian, so the same bytes hold fewer.
  const uint64_t per3 = ResidentBytesPerGaussian(3);
  EXPECT_TRUE(DecideBudget({Budget::Kind::kMemoryBytes, 10'000.0 * per3}, n, 3, kLadder).ok());
  EXPECT_EQ(DecideBudget({Budget::Kind::kMemoryBytes, 10'000.0 * per3 - 1}, n, 3, kLadder).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(StreamBudgetTest, MemoryBudgetInTheMiddleAndCapped) {
  const uint64_t n = 1'000'000;
  const uint64_t per = ResidentBytesPerGaussian(1);
  auto mid = DecideBudget({Budget::Kind::kMemoryBytes, 123'457.0 * per + per - 1}, n, 1, kLadder);
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->gaussians, 123'457u);
  EXPECT_EQ(ElasticCount(n, mid->top_ratio), 123'457u);
  EXPECT_EQ(mid->resident_bytes, 123'457u * per);

  auto big = DecideBudget({Budget::Kind::kMemoryBytes, 1e12}, n, 1, kLadder);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->top_ratio, 1.0);
  EXPECT_EQ(big->gaussians, n);
  EXPECT_EQ(big->resident_bytes, n * per);
  auto max = DecideBudget({Budget::Kind::kMemoryBytes, std::ldexp(1.0, 50)}, n, 1, kLadder);
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->top_ratio, 1.0);

  // Empty ladder: one Gaussian is the smallest level.
  auto one = DecideBudget({Budget::Kind::kMemoryBytes, 128.0}, n, 0, {});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->gaussians, 1u);
  auto none = DecideBudget({Budget::Kind::kMemoryBytes, 127.0}, n, 0, {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("at least 128 bytes"));
}

// The ratio handed to the planner must hold exactly the budget's count, although
// count / n can be one ulp short of it in floating point.
TEST(StreamBudgetTest, RatioHoldsExactlyTheBudgetedCount) {
  for (uint64_t n : {1u, 7u, 49u, 98u, 100u, 197u, 1000u, 99991u}) {
    for (uint64_t count = 1; count <= std::min<uint64_t>(n, 400); ++count) {
      auto d = DecideBudget({Budget::Kind::kGaussians, static_cast<double>(count)}, n, 0, {});
      ASSERT_TRUE(d.ok()) << d.status();
      ASSERT_EQ(d->gaussians, count) << n;
      ASSERT_EQ(ElasticCount(n, d->top_ratio), count) << n;
      ASSERT_GT(d->top_ratio, 0.0);
      ASSERT_LE(d->top_ratio, 1.0);
    }
  }
}

TEST(StreamBudgetTest, RatioAndGaussianBudgets) {
  const uint64_t n = 1'000'000;
  auto r = DecideBudget({Budget::Kind::kRatio, 0.2}, n, 2, kLadder);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->top_ratio, 0.2);
  EXPECT_EQ(r->gaussians, 200'000u);
  EXPECT_EQ(r->resident_bytes, 200'000u * ResidentBytesPerGaussian(2));
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 1.0}, n, 2, kLadder)->gaussians, n);
  EXPECT_TRUE(DecideBudget({Budget::Kind::kRatio, 0.01}, n, 2, kLadder).ok());
  auto small = DecideBudget({Budget::Kind::kRatio, 0.005}, n, 2, kLadder);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(small.status().message()), HasSubstr("10000 Gaussians"));
  EXPECT_TRUE(DecideBudget({Budget::Kind::kRatio, 0.005}, n, 2, {}).ok());

  auto g = DecideBudget({Budget::Kind::kGaussians, 10'000}, n, 0, kLadder);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->gaussians, 10'000u);
  auto g_low = DecideBudget({Budget::Kind::kGaussians, 9'999}, n, 0, kLadder);
  EXPECT_EQ(g_low.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(g_low.status().message()), HasSubstr("at least 10000 Gaussians"));
  auto g_all = DecideBudget({Budget::Kind::kGaussians, 5e6}, n, 0, kLadder);
  ASSERT_TRUE(g_all.ok());
  EXPECT_EQ(g_all->top_ratio, 1.0);  // e_max is capped at 1
  EXPECT_EQ(g_all->gaussians, n);
}

TEST(StreamBudgetTest, InvalidValuesAreRejectedByName) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const uint64_t n = 1000;
  for (double v : {0.0, -1.0, -5e9, nan, inf, -inf, std::ldexp(1.0, 50) + 1024, 1e300}) {
    auto st = DecideBudget({Budget::Kind::kMemoryBytes, v}, n, 0, kLadder).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << v;
    EXPECT_THAT(std::string(st.message()), HasSubstr("memory budget")) << v;
  }
  EXPECT_THAT(std::string(DecideBudget({Budget::Kind::kMemoryBytes, -5}, n, 0, kLadder).status().message()),
              HasSubstr("-5"));
  for (double v : {0.0, -0.1, 1.0000001, nan, inf, -inf}) {
    EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, v}, n, 0, kLadder).status().code(),
              absl::StatusCode::kInvalidArgument)
        << v;
  }
  for (double v : {0.0, -1.0, 0.5, 10.5, nan, inf, std::ldexp(1.0, 40) + 1, 1e20}) {
    EXPECT_EQ(DecideBudget({Budget::Kind::kGaussians, v}, n, 0, kLadder).status().code(),
              absl::StatusCode::kInvalidArgument)
        << v;
  }
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 0.5}, 0, 0, kLadder).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 0.5}, n, 4, kLadder).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 0.5}, n, 0, {nan}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flexgs

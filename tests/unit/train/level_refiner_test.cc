// LevelRefiner: refined rungs render the input better than the merge from views it did
// not train on, keep nesting (only what a rung sends changes), are deterministic, and
// bad input is refused.
#include "train/level_refiner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "render/cpu_rasterizer.h"
#include "render/image_metrics.h"
#include "scene/orbit.h"
#include "stream/level_planner.h"
#include "tests/support/cloud_equality.h"
#include "tests/support/test_models.h"

namespace flexgs {
namespace {

using testing::ExpectSameCloud;
using testing::HeuristicTestModel;

ElasticModel MergedModel() {
  ElasticModel m = HeuristicTestModel(3000, 21, /*sh_degree=*/1);
  m.merged_levels = true;
  m.coverage_share = 1.0;
  m.ladder = {0.02, 0.05, 0.10};
  return m;
}

LevelRefineOptions SmallOptions() {
  LevelRefineOptions o;
  o.iterations = 60;
  o.teacher_views = 12;
  o.views.width = o.views.height = 64;
  o.seed = 3;
  return o;
}

absl::StatusOr<std::vector<RefinedRung>> Refine(const ElasticModel& m, const std::vector<MergedRung>& rungs,
                                                const LevelRefineOptions& o, int threads) {
  CpuRasterizer teacher(threads);
  DifferentiableRasterizer student(threads);
  ThreadPool pool(threads);
  return RefineRungs(m.gaussians, rungs, o, teacher, student, &pool);
}

// A rung's held Gaussians in ascending model-index order, as RefinedRung stores them.
GaussianCloud ByModelIndex(const MergedRung& rung) {
  std::vector<uint32_t> order(rung.held.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return rung.held[a] < rung.held[b]; });
  return rung.merged.Gather(order);
}

double MeanPsnr(const GaussianCloud& cloud, const GaussianCloud& input, const std::vector<Camera>& views) {
  CpuRasterizer r(2);
  double sum = 0;
  for (const Camera& c : views) {
    auto a = r.Render(cloud, c, {});
    auto b = r.Render(input, c, {});
    EXPECT_TRUE(a.ok() && b.ok());
    sum += *Psnr(a->color, b->color);
  }
  return sum / views.size();
}

TEST(LevelRefinerTest, RefinedRungsRenderTheInputBetterFromViewsTheyDidNotTrainOn) {
  ThreadPool pool(2);
  const ElasticModel m = MergedModel();
  auto rungs = MergedRungs(m, &pool);
  ASSERT_TRUE(rungs.ok()) << rungs.status();
  ASSERT_EQ(rungs->size(), 3u);
  auto refined = Refine(m, *rungs, SmallOptions(), 2);
  ASSERT_TRUE(refined.ok()) << refined.status();
  ASSERT_EQ(refined->size(), 3u);
  ViewDistribution held_out = SmallOptions().views;
  const std::vector<Camera> views = SampleViews(RobustBounds(m.gaussians), held_out, /*seed=*/777, 6);
  for (size_t k = 0; k < rungs->size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "rung " << k);
    const RefinedRung& r = (*refined)[k];
    EXPECT_EQ(r.ratio, (*rungs)[k].ratio);
    ASSERT_EQ(r.held.size(), (*rungs)[k].held.size());
    std::vector<uint32_t> sorted = (*rungs)[k].held;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(r.held_digest, HeldIndexDigest(sorted));
    const double merged = MeanPsnr(ByModelIndex((*rungs)[k]), m.gaussians, views);
    const double trained = MeanPsnr(r.held, m.gaussians, views);
    EXPECT_GT(trained, merged + 0.5) << "merge " << merged << " dB, refined " << trained << " dB";
  }
}

// Rung k changes only what it sends: its new Gaussians and the replacement share of the
// earlier ones its merge replaced; every other earlier Gaussian is the previous rung's.
TEST(LevelRefinerTest, EachRungTrainsOnlyWhatItSends) {
  ThreadPool pool(2);
  const ElasticModel m = MergedModel();
  auto rungs = MergedRungs(m, &pool);
  ASSERT_TRUE(rungs.ok()) << rungs.status();
  for (double share : {1.0, 0.5, 0.0}) {
    SCOPED_TRACE(::testing::Message() << "replacement share " << share);
    LevelRefineOptions o = SmallOptions();
    o.iterations = 10;
    o.replacement_share = share;
    auto refined = Refine(m, *rungs, o, 2);
    ASSERT_TRUE(refined.ok()) << refined.status();
    for (size_t k = 1; k < rungs->size(); ++k) {
      const MergedRung& rung = (*rungs)[k];
      const auto client_order = [&](size_t level) {  // refined rung `level` in rung k's client order
        std::vector<uint32_t> ids = (*rungs)[level].held, order(ids.size());
        std::vector<uint32_t> sorted = ids;
        std::sort(sorted.begin(), sorted.end());
        for (size_t i = 0; i < ids.size(); ++i) {
          order[i] = static_cast<uint32_t>(std::lower_bound(sorted.begin(), sorted.end(), ids[i]) - sorted.begin());
        }
        return (*refined)[level].held.Gather(order);
      };
      const GaussianCloud now = client_order(k), before = client_order(k - 1);
      size_t kept = 0, changed = 0;
      for (uint32_t i = 0; i < before.size(); ++i) {
        const bool sent = share > 0 && std::binary_search(rung.replaced.begin(), rung.replaced.end(), i);
        const GaussianCloud a = now.Gather(std::vector<uint32_t>{i}), b = before.Gather(std::vector<uint32_t>{i});
        const bool same = a.positions == b.positions && a.log_scales == b.log_scales && a.rotations == b.rotations &&
                          a.opacity_logits == b.opacity_logits && a.sh_dc == b.sh_dc && a.sh_rest == b.sh_rest;
        if (!sent) {
          EXPECT_TRUE(same) << "Gaussian " << i << " of rung " << k << " changed without being sent";
          ++kept;
        } else {
          changed += !same;
        }
      }
      EXPECT_GT(kept, 0u);
      // The share of the replacements, rounded up, is trained (a trained one may land
      // where it started only by chance).
      const size_t share_count = static_cast<size_t>(std::ceil(share * rung.replaced.size() - 1e-9));
      EXPECT_LE(changed, share_count) << "rung " << k;
      EXPECT_GE(changed + 2, share_count) << "rung " << k << " trained fewer than its share of replacements";
    }
  }
}

// With the planner's replacement tolerance as the refiner's `visible`, the stored rungs
// are exactly what a client holds: a plan of the refined model reproduces each of them
// in client order, and re-sends only trained replacements.
TEST(LevelRefinerTest, RefinedRungsAreWhatTheStreamDeliversAtTheModelsTolerance) {
  ThreadPool pool(2);
  ElasticModel m = MergedModel();
  m.replacement_tolerance = 2.0;
  auto rungs = MergedRungs(m, &pool);
  ASSERT_TRUE(rungs.ok()) << rungs.status();
  LevelRefineOptions o = SmallOptions();
  o.iterations = 20;
  o.visible = [](const GaussianCloud& now, size_t i, const GaussianCloud& held, size_t j) {
    return ReplacementIsVisible(now, i, held, j, 2.0);
  };
  std::vector<RungReport> reports;
  CpuRasterizer teacher(2);
  DifferentiableRasterizer student(2);
  auto refined =
      RefineRungs(m.gaussians, *rungs, o, teacher, student, &pool, [&](const RungReport& r) { reports.push_back(r); });
  ASSERT_TRUE(refined.ok()) << refined.status();
  ASSERT_EQ(reports.size(), rungs->size());
  m.refined_rungs = *refined;
  auto plan = PlanLevels(m, {.top_ratio = m.ladder.back(), .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), rungs->size());
  size_t not_resent = 0;
  for (size_t k = 0; k < rungs->size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "rung " << k);
    auto cloud = LevelCloud(*plan, k);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    const std::vector<uint32_t>& held = (*rungs)[k].held;
    std::vector<uint32_t> sorted = held, rank(held.size());
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < held.size(); ++i) {
      rank[i] = static_cast<uint32_t>(std::lower_bound(sorted.begin(), sorted.end(), held[i]) - sorted.begin());
    }
    ExpectSameCloud(*cloud, (*refined)[k].held.Gather(rank));
    // The rung sends its additions and the replacements it trained and kept.
    const PlanLevel& level = plan->levels[k];
    EXPECT_EQ(level.added.size() + level.replaced.size(), reports[k].optimized);
    for (uint32_t j : level.replaced) {
      EXPECT_TRUE(std::binary_search((*rungs)[k].replaced.begin(), (*rungs)[k].replaced.end(), j));
    }
    not_resent += (*rungs)[k].replaced.size() - level.replaced.size();
  }
  EXPECT_GT(not_resent, 0u) << "no trained replacement fell under the tolerance: the case is not exercised";
}

TEST(LevelRefinerTest, SameInputsSameRungsForAnyThreadCount) {
  ThreadPool pool(2);
  const ElasticModel m = MergedModel();
  auto rungs = MergedRungs(m, &pool);
  ASSERT_TRUE(rungs.ok()) << rungs.status();
  LevelRefineOptions o = SmallOptions();
  o.iterations = 15;
  auto one = Refine(m, *rungs, o, 1);
  auto two = Refine(m, *rungs, o, 2);
  ASSERT_TRUE(one.ok() && two.ok());
  for (size_t k = 0; k < one->size(); ++k) ExpectSameCloud((*one)[k].held, (*two)[k].held);
  o.seed = 4;  // other views: another result
  auto other = Refine(m, *rungs, o, 2);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[0].held.positions, (*two)[0].held.positions);
}

TEST(LevelRefinerTest, BadInputIsRefusedNamingTheProblem) {
  ThreadPool pool(2);
  const ElasticModel m = MergedModel();
  auto rungs = MergedRungs(m, &pool);
  ASSERT_TRUE(rungs.ok()) << rungs.status();
  auto expect_error = [&](const std::vector<MergedRung>& r, const LevelRefineOptions& o, const std::string& text) {
    auto got = Refine(m, r, o, 2);
    ASSERT_FALSE(got.ok()) << text;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find(text), std::string::npos) << got.status();
  };
  LevelRefineOptions o = SmallOptions();
  o.iterations = 0;
  expect_error(*rungs, o, "refine iterations 0");
  o = SmallOptions();
  o.teacher_views = 0;
  expect_error(*rungs, o, "refine views 0");
  o = SmallOptions();
  o.replacement_share = 1.5;
  expect_error(*rungs, o, "replacement share 1.5");
  o = SmallOptions();
  o.teacher_views = 100000;
  o.views.width = o.views.height = 1024;
  expect_error(*rungs, o, "MiB of teacher images");
  o = SmallOptions();
  o.views.max_fov_deg = 200;
  expect_error(*rungs, o, "field of view");
  std::vector<MergedRung> reordered = *rungs;
  std::swap(reordered[1].held.front(), reordered[1].held.back());
  expect_error(reordered, SmallOptions(), "rung 1 (ratio 0.05): does not extend the rung before it");
  std::vector<MergedRung> same_size = {(*rungs)[0], (*rungs)[0]};
  expect_error(same_size, SmallOptions(), "no more than the rung before it");
  std::vector<MergedRung> out_of_range = *rungs;
  out_of_range[0].held[0] = static_cast<uint32_t>(m.gaussians.size());
  expect_error({out_of_range[0]}, SmallOptions(), "out of range");
  std::vector<MergedRung> short_cloud = {(*rungs)[0]};
  short_cloud[0].merged = short_cloud[0].merged.Gather(std::vector<uint32_t>{0});
  expect_error(short_cloud, SmallOptions(), "indices for 1 Gaussians");
  std::vector<MergedRung> bad_replacement = *rungs;
  bad_replacement[1].replaced = {static_cast<uint32_t>(bad_replacement[0].held.size())};
  expect_error(bad_replacement, SmallOptions(), "not held before");
  // Not a merged model: nothing to refine.
  ElasticModel selected = m;
  selected.merged_levels = false;
  EXPECT_EQ(MergedRungs(selected, &pool).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace flexgs

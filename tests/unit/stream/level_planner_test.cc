#include "stream/level_planner.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "elastic/elastic_selection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scene/cluster_merge.h"
#include "scene/synthetic_scene.h"
#include "tests/support/cloud_equality.h"
#include "tests/support/test_models.h"

namespace flexgs {
namespace {

using ::flexgs::testing::HeuristicTestModel;
using ::flexgs::testing::TrainedLikeTestModel;

TEST(ElasticSelectionTest, TopKIsExactWithIndexTieBreak) {
  const std::vector<float> scores = {0.5f, 2.0f, 0.5f, 3.0f, 0.5f, -1.0f};
  EXPECT_THAT(TopK(scores, 3), ::testing::ElementsAre(3, 1, 0));
  EXPECT_THAT(TopK(scores, 4), ::testing::ElementsAre(3, 1, 0, 2));
  EXPECT_THAT(TopK(scores, 10), ::testing::ElementsAre(3, 1, 0, 2, 4, 5));
  std::vector<uint8_t> exclude = {1, 0, 0, 1, 0, 0};
  EXPECT_THAT(TopK(scores, 2, &exclude), ::testing::ElementsAre(1, 2));
}

// With a GI prior, the score is GsNet's margin + w log GI: a zeroed GsNet head ranks
// exactly like GI (so an untrained selector is GI top-k), and NestedAdditions is the
// planner's nested selection.
TEST(ElasticSelectionTest, GiPriorRanksLikeGiUntilGsNetLearns) {
  ThreadPool pool(2);
  ElasticModel m = TrainedLikeTestModel(2000, 5);
  const std::vector<float> prior = GiLogPrior(m.global_importance);
  for (float p : prior) {
    EXPECT_TRUE(std::isfinite(p));
    EXPECT_LE(p, 1e-5f);
    EXPECT_GE(p, std::log(1e-6f) - 1e-4f);
  }
  const std::vector<float> margin = RankingScores(m, 0.05, &pool);
  m.gi_prior_weight = 2.0;
  const std::vector<float> with_prior = RankingScores(m, 0.05, &pool);
  for (size_t i = 0; i < margin.size(); ++i) EXPECT_FLOAT_EQ(with_prior[i], margin[i] + 2.0f * prior[i]);

  std::fill(m.gsnet->head.weight.begin(), m.gsnet->head.weight.end(), 0.0f);
  std::fill(m.gsnet->head.bias.begin(), m.gsnet->head.bias.end(), 0.0f);
  for (double e : {0.01, 0.05, 0.2}) {
    const size_t k = ElasticCount(m.gaussians.size(), e);
    EXPECT_EQ(TopK(RankingScores(m, e, &pool), k), TopK(m.global_importance, k)) << e;
  }
  EXPECT_EQ(GiLogPrior(std::vector<float>(5, 0.0f)), std::vector<float>(5, 0.0f));

  m = TrainedLikeTestModel(2000, 6);
  const std::vector<double> ratios = {0.01, 0.05, 0.10};
  auto plan = PlanLevels(m, {.top_ratio = 0.10, .ladder = ratios}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const auto nested = NestedAdditions(m, ratios, &pool);
  ASSERT_EQ(nested.size(), plan->levels.size());
  for (size_t k = 0; k < nested.size(); ++k) {
    std::vector<uint32_t> a = nested[k], b = plan->levels[k].added;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b) << "level " << k;
  }
}

// Coverage: each octree cell's representative is its highest-GI Gaussian, its level the
// coarsest cell it represents; the cut-off is the finest level whose cells fit the share.
TEST(ElasticSelectionTest, CoverageRepresentativesSpreadOverSpace) {
  ElasticModel m = HeuristicTestModel(4000, 7);
  const std::vector<uint8_t> levels = CoverageLevels(m);
  ASSERT_EQ(levels.size(), m.gaussians.size());
  // Exactly one Gaussian represents the root: the best GI overall.
  const uint32_t best = TopK(m.global_importance, 1)[0];
  EXPECT_EQ(levels[best], 0);
  EXPECT_EQ(std::count(levels.begin(), levels.end(), 0), 1);
  // Brute force at level 2 (64 cells): the representatives are each cell's best.
  std::map<uint64_t, uint32_t> best_in_cell;
  for (uint32_t i = 0; i < m.gaussians.size(); ++i) {
    const uint64_t cell =
        MortonCode(&m.gaussians.positions[3 * i], m.normalization.aabb_min, m.normalization.aabb_max) >> (3 * 19);
    auto [it, fresh] = best_in_cell.emplace(cell, i);
    const float a = m.global_importance[i], b = m.global_importance[it->second];
    if (!fresh && (a > b || (a == b && i < it->second))) it->second = i;
  }
  std::set<uint32_t> reps;
  for (uint32_t i = 0; i < levels.size(); ++i) {
    if (levels[i] <= 2) reps.insert(i);
  }
  std::set<uint32_t> expected;
  for (const auto& [cell, i] : best_in_cell) expected.insert(i);
  EXPECT_EQ(reps, expected);
  // Cut-off: the cells up to it fit share * count, one level more does not.
  const uint32_t count = 200;
  const int cutoff = CoverageCutoff(levels, count, 0.5);
  auto cells = [&](int l) { return std::count_if(levels.begin(), levels.end(), [l](uint8_t v) { return v <= l; }); };
  ASSERT_GE(cutoff, 0);
  EXPECT_LE(cells(cutoff), 100);
  EXPECT_GT(cells(cutoff + 1), 100);
  EXPECT_EQ(CoverageCutoff(levels, count, 0.0), -1);

  // With a share, every representative up to the cut-off is selected, ahead of GI order;
  // the rest of the slots still go by GI.
  ThreadPool pool(2);
  m.coverage_share = 0.5;
  auto subset_ids = TopK(RankingScores(m, 0.05, &pool), count);
  std::set<uint32_t> chosen(subset_ids.begin(), subset_ids.end());
  for (uint32_t i = 0; i < levels.size(); ++i) {
    if (levels[i] <= cutoff) {
      EXPECT_TRUE(chosen.count(i)) << i;
    }
  }
  m.coverage_share = 0.0;
  EXPECT_EQ(RankingScores(m, 0.05, &pool), m.global_importance);  // unchanged without a share
}

TEST(ElasticSelectionTest, RatioEdgesAndInvalidRatios) {
  ThreadPool pool(2);
  const ElasticModel m = HeuristicTestModel(1000, 3);
  auto zero = ElasticSubset(m, 0.0, &pool);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->size(), 1u);
  auto all = ElasticSubset(m, 1.0, &pool);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1000u);
  EXPECT_EQ(all->positions, m.gaussians.positions);  // heuristic: no transform
  auto tenth = ElasticSubset(m, 0.1, &pool);
  ASSERT_TRUE(tenth.ok());
  EXPECT_EQ(tenth->size(), 100u);
  EXPECT_EQ(ElasticCount(1000, 0.0159), 15u);
  for (double bad : std::vector<double>{-0.01, 1.0001, std::nan(""), INFINITY}) {
    auto st = ElasticSubset(m, bad, &pool).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("outside [0, 1]"));
  }
}

TEST(LevelPlannerTest, RatiosFollowTheLadderUpToTheTop) {
  const ElasticModel m = HeuristicTestModel(100, 1);
  auto r = PlanRatios(m, {.top_ratio = 0.12, .ladder = {}});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(*r, ::testing::ElementsAre(0.01, 0.05, 0.10, 0.12));
  r = PlanRatios(m, {.top_ratio = 0.15, .ladder = {}});
  EXPECT_THAT(*r, ::testing::ElementsAre(0.01, 0.05, 0.10, 0.15));
  r = PlanRatios(m, {.top_ratio = 1.0, .ladder = {}});
  EXPECT_THAT(*r, ::testing::ElementsAre(0.01, 0.05, 0.10, 0.15, 1.0));
  r = PlanRatios(m, {.top_ratio = 0.005, .ladder = {}});
  EXPECT_THAT(*r, ::testing::ElementsAre(0.005));
  EXPECT_FALSE(PlanRatios(m, {.top_ratio = 0.5, .ladder = {0.1, 0.05}}).ok());
  EXPECT_FALSE(PlanRatios(m, {.top_ratio = 0.5, .ladder = {0.0, 0.05}}).ok());
  EXPECT_FALSE(PlanRatios(m, {.top_ratio = std::nan(""), .ladder = {}}).ok());
}

// Every attribute of Gaussian i as one row, to compare clouds up to ordering.
std::vector<std::vector<float>> Rows(const GaussianCloud& c) {
  const size_t k = static_cast<size_t>(c.rest_coeffs()) * 3;
  std::vector<std::vector<float>> rows(c.size());
  for (size_t i = 0; i < c.size(); ++i) {
    std::vector<float>& r = rows[i];
    r.insert(r.end(), c.positions.begin() + i * 3, c.positions.begin() + i * 3 + 3);
    r.insert(r.end(), c.log_scales.begin() + i * 3, c.log_scales.begin() + i * 3 + 3);
    r.insert(r.end(), c.rotations.begin() + i * 4, c.rotations.begin() + i * 4 + 4);
    r.push_back(c.opacity_logits[i]);
    r.insert(r.end(), c.sh_dc.begin() + i * 3, c.sh_dc.begin() + i * 3 + 3);
    r.insert(r.end(), c.sh_rest.begin() + i * k, c.sh_rest.begin() + (i + 1) * k);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Replays a plan the way a client does and checks each level against the planner's
// definition: nested, exact counts, and geometry equal to the model transformed at e_k.
void CheckPlanReplay(const ElasticModel& m, const Plan& plan, ThreadPool* pool) {
  std::vector<uint32_t> held;
  GaussianCloud state;
  state.sh_degree = m.gaussians.sh_degree;
  for (size_t k = 0; k < plan.levels.size(); ++k) {
    const PlanLevel& level = plan.levels[k];
    SCOPED_TRACE(::testing::Message() << "level " << k << " ratio " << level.ratio);
    // Patches first (they address Gaussians already held), then additions.
    if (!level.patches.empty()) {
      ASSERT_EQ(level.patches.size(), held.size() * kPatchStride);
      for (size_t i = 0; i < held.size(); ++i) {
        const float* p = &level.patches[i * kPatchStride];
        std::copy(p, p + 3, &state.positions[i * 3]);
        std::copy(p + 3, p + 6, &state.log_scales[i * 3]);
        std::copy(p + 6, p + 10, &state.rotations[i * 4]);
      }
    }
    const std::set<uint32_t> before(held.begin(), held.end());
    for (uint32_t id : level.added) EXPECT_EQ(before.count(id), 0u) << "re-sent " << id;
    held.insert(held.end(), level.added.begin(), level.added.end());
    const size_t old = state.size();
    state.Resize(old + level.added.size());
    const GaussianCloud& a = level.added_gaussians;
    std::copy(a.positions.begin(), a.positions.end(), state.positions.begin() + old * 3);
    std::copy(a.log_scales.begin(), a.log_scales.end(), state.log_scales.begin() + old * 3);
    std::copy(a.rotations.begin(), a.rotations.end(), state.rotations.begin() + old * 4);
    std::copy(a.opacity_logits.begin(), a.opacity_logits.end(), state.opacity_logits.begin() + old);
    std::copy(a.sh_dc.begin(), a.sh_dc.end(), state.sh_dc.begin() + old * 3);
    std::copy(a.sh_rest.begin(), a.sh_rest.end(), state.sh_rest.begin() + old * a.rest_coeffs() * 3);
    EXPECT_EQ(held.size(), ElasticCount(m.gaussians.size(), level.ratio));
    EXPECT_EQ(level.count, held.size());
    // Below a rung's last sub-level the pose is the rung's, computed with the whole rung
    // (the field batches its work, so a subset's own evaluation may differ in the last
    // bits); elsewhere the level's own, bit for bit.
    const GaussianCloud expected = TransformedSubset(m, held, level.pose_ratio, pool);
    if (level.pose_ratio == level.ratio) {
      EXPECT_EQ(state.positions, expected.positions);
      EXPECT_EQ(state.log_scales, expected.log_scales);
      EXPECT_EQ(state.rotations, expected.rotations);
    } else {
      for (auto [got, want] : {std::pair{&state.positions, &expected.positions},
                               {&state.log_scales, &expected.log_scales},
                               {&state.rotations, &expected.rotations}}) {
        ASSERT_EQ(got->size(), want->size());
        for (size_t i = 0; i < got->size(); ++i) ASSERT_NEAR((*got)[i], (*want)[i], 1e-5) << i;
      }
    }
    EXPECT_EQ(state.sh_rest, expected.sh_rest);
  }
}

TEST(LevelPlannerTest, HeuristicPlansAreNestedTopKWithoutPatches) {
  ThreadPool pool(2);
  const ElasticModel m = HeuristicTestModel(5000, 5);
  auto plan = PlanLevels(m, {.top_ratio = 0.2, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 5u);
  for (const PlanLevel& l : plan->levels) {
    EXPECT_TRUE(l.patches.empty());
    EXPECT_DOUBLE_EQ(l.overlap_with_independent, 1.0);  // GI ranking is the same at every e
  }
  CheckPlanReplay(m, *plan, &pool);
}

TEST(LevelPlannerTest, TrainedPlansStayNestedAndPatchesReproduceEachLevel) {
  ThreadPool pool(2);
  for (uint64_t seed : {1, 2, 3}) {
    const ElasticModel m = TrainedLikeTestModel(3000, seed);
    SplitMix64 rng(seed * 77);
    std::vector<double> ladder;
    double r = 0;
    for (int i = 0; i < 4; ++i) ladder.push_back(r += rng.Uniform(0.01, 0.08));
    auto plan = PlanLevels(m, {.top_ratio = std::min(1.0, r + 0.05), .ladder = ladder}, &pool);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->levels.size(), 5u);
    EXPECT_FALSE(plan->levels[1].patches.empty());
    CheckPlanReplay(m, *plan, &pool);
    for (const PlanLevel& l : plan->levels) {
      EXPECT_GT(l.overlap_with_independent, 0.0);
      EXPECT_LE(l.overlap_with_independent, 1.0);
    }
  }
}

// Stops between rungs (the canonical stream's): each rung is cut into sub-levels whose
// additions are rank-order prefixes of the rung's, patches ride on a rung's first
// sub-level and replacements on its last, and a rung's last sub-level holds what the
// plan without stops holds at that rung (up to the order within it).
TEST(LevelPlannerTest, StopsBetweenRungsCutEachRungIntoRankOrderPrefixes) {
  ThreadPool pool(2);
  const std::vector<double> ladder = {0.01, 0.05, 0.10, 0.15};
  for (const char* kind : {"heuristic", "field", "merged"}) {
    SCOPED_TRACE(kind);
    ElasticModel m = std::string(kind) == "field" ? ::flexgs::testing::RatioDependentTestModel(3000, 11, 1)
                                                  : HeuristicTestModel(3000, 12, 1);
    if (std::string(kind) == "merged") m.merged_levels = true;
    const PlanRequest plain{.top_ratio = 1.0, .ladder = ladder};
    const PlanRequest stops = CanonicalPlanRequest(ladder);
    EXPECT_EQ(stops.stops_per_doubling, kCanonicalStopsPerDoubling);
    auto a = PlanLevels(m, plain, &pool);
    auto b = PlanLevels(m, stops, &pool);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->levels.size(), 5u);
    // 1 % is a rung of its own; then 0.05 / 0.01 = 5 = 2^2.3: 9 sub-levels of 2^(1/4);
    // 2, 2.5 and 1/0.15 = 2^2.7 give 4, 2 and 11.
    EXPECT_EQ(b->levels.size(), 1u + 9 + 4 + 2 + 11);
    if (std::string(kind) != "merged") CheckPlanReplay(m, *b, &pool);
    const std::vector<float> gi = RankingScores(m, 0.05, &pool);
    size_t j = 0;
    for (size_t k = 0; k < a->levels.size(); ++k) {
      SCOPED_TRACE(::testing::Message() << "rung " << k);
      std::vector<size_t> subs;
      while (j < b->levels.size() && b->levels[j].pose_ratio == a->levels[k].ratio) subs.push_back(j++);
      ASSERT_FALSE(subs.empty());
      std::vector<uint32_t> added;
      float worst_before = INFINITY;
      for (size_t i = 0; i < subs.size(); ++i) {
        const PlanLevel& l = b->levels[subs[i]];
        if (i > 0) {
          EXPECT_TRUE(l.patches.empty());
          EXPECT_GT(l.count, b->levels[subs[i - 1]].count);
          // Steps of 2^(1/4), the one before a rung up to one and a half.
          EXPECT_LE(l.ratio / b->levels[subs[i - 1]].ratio, std::exp2(0.375) * (1 + 1e-12));
        }
        if (i + 1 < subs.size()) EXPECT_TRUE(l.replaced.empty());
        EXPECT_EQ(l.count, ElasticCount(3000, l.ratio));
        added.insert(added.end(), l.added.begin(), l.added.end());
        if (std::string(kind) == "heuristic") {  // the GI ranking is the same at every ratio
          float best = -INFINITY, worst = INFINITY;
          for (uint32_t id : l.added) best = std::max(best, gi[id]), worst = std::min(worst, gi[id]);
          EXPECT_LE(best, worst_before) << "a later sub-level holds a better-ranked Gaussian";
          worst_before = worst;
        }
      }
      const PlanLevel& last = b->levels[subs.back()];
      EXPECT_EQ(last.ratio, a->levels[k].ratio);
      EXPECT_EQ(last.count, a->levels[k].count);
      std::vector<uint32_t> expected = a->levels[k].added;
      std::sort(added.begin(), added.end());
      std::sort(expected.begin(), expected.end());
      EXPECT_EQ(added, expected);
      auto with_stops = LevelCloud(*b, subs.back());
      auto without = LevelCloud(*a, k);
      ASSERT_TRUE(with_stops.ok() && without.ok());
      if (std::string(kind) == "field") {
        // The field batches its work by client order, which the stops change: the same
        // poses up to the last bits (a SIMD lane's rounding), not bit for bit.
        const auto got = Rows(*with_stops), want = Rows(*without);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_EQ(got[i].size(), want[i].size());
          for (size_t c = 0; c < got[i].size(); ++c) ASSERT_NEAR(got[i][c], want[i][c], 1e-5) << i << "," << c;
        }
      } else {
        EXPECT_EQ(Rows(*with_stops), Rows(*without));
      }
    }
    EXPECT_EQ(j, b->levels.size());
  }
  EXPECT_EQ(PlanLevels(HeuristicTestModel(100, 1), {.top_ratio = 1, .ladder = {}, .stops_per_doubling = -1}, &pool)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Planning the canonical stream only as far as a budget reaches gives its first levels.
TEST(LevelPlannerTest, ACanonicalPlanUpToABudgetIsTheWholePlansPrefix) {
  ThreadPool pool(2);
  for (const char* kind : {"heuristic", "field", "merged"}) {
    SCOPED_TRACE(kind);
    ElasticModel m = std::string(kind) == "field" ? ::flexgs::testing::RatioDependentTestModel(3000, 11, 1)
                                                  : HeuristicTestModel(3000, 12, 1);
    m.merged_levels = std::string(kind) == "merged";
    auto whole = PlanLevels(m, CanonicalPlanRequest({}), &pool);
    ASSERT_TRUE(whole.ok());
    for (double ratio : {0.01, 0.03, 0.05, 0.12, 0.4, 1.0}) {
      SCOPED_TRACE(ratio);
      auto part = PlanCanonicalUpTo(m, {}, ratio, &pool);
      ASSERT_TRUE(part.ok()) << part.status();
      ASSERT_LE(part->levels.size(), whole->levels.size());
      EXPECT_GE(part->levels.back().count, ElasticCount(3000, ratio));  // reaches the budget
      Plan prefix = *whole;
      prefix.levels.resize(part->levels.size());
      EXPECT_EQ(SerializePlan(*part), SerializePlan(prefix));
    }
  }
  EXPECT_EQ(PlanCanonicalUpTo(HeuristicTestModel(100, 1), {}, 0.0, &pool).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LevelPlannerTest, LastLevelWithinIsTheLargestThatFits) {
  const std::vector<uint64_t> counts = {10, 12, 15, 30};
  EXPECT_EQ(LastLevelWithin(counts, 9), -1);
  EXPECT_EQ(LastLevelWithin(counts, 10), 0);
  EXPECT_EQ(LastLevelWithin(counts, 14), 1);
  EXPECT_EQ(LastLevelWithin(counts, 15), 2);
  EXPECT_EQ(LastLevelWithin(counts, 1000), 3);
  EXPECT_EQ(LastLevelWithin({}, 5), -1);
}

TEST(LevelPlannerTest, PlansAreByteIdenticalAcrossRunsAndThreadCounts) {
  const ElasticModel m = TrainedLikeTestModel(4000, 9);
  ThreadPool one(1), three(3);
  const PlanRequest req{.top_ratio = 0.3, .ladder = {}};
  auto a = PlanLevels(m, req, &one);
  auto b = PlanLevels(m, req, &three);
  auto c = PlanLevels(m, req, &three);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  const std::string sa = SerializePlan(*a);
  EXPECT_EQ(sa, SerializePlan(*b));
  EXPECT_EQ(sa, SerializePlan(*c));
  EXPECT_GT(sa.size(), 4000u * 0.3 * 56);
}

TEST(LevelPlannerTest, RawBytesCountAdditionsAndPatches) {
  ThreadPool pool(1);
  const ElasticModel m = TrainedLikeTestModel(1000, 4);
  auto plan = PlanLevels(m, {.top_ratio = 0.1, .ladder = {0.05}}, &pool);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(RawBytesPerGaussian(0), 56u);
  EXPECT_EQ(RawBytesPerGaussian(3), 236u);
  EXPECT_EQ(plan->RawLevelBytes(0), 50u * RawBytesPerGaussian(1));
  EXPECT_EQ(plan->RawLevelBytes(1), 50u * RawBytesPerGaussian(1) + 50u * kPatchStride * 4);
}

using ::flexgs::testing::ExpectSameCloud;

TEST(LevelCloudTest, EachLevelIsTheModelTransformedAtItsRatioInClientOrder) {
  ThreadPool pool(2);
  const ElasticModel m = ::flexgs::testing::RatioDependentTestModel(3000, 11, /*sh_degree=*/2);
  auto plan = PlanLevels(m, {.top_ratio = 0.15, .ladder = {0.01, 0.05, 0.10, 0.15}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 4u);
  ASSERT_FALSE(plan->levels[2].patches.empty());  // the field really moves earlier Gaussians
  std::vector<uint32_t> sent;
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "level " << k);
    const PlanLevel& l = plan->levels[k];
    sent.insert(sent.end(), l.added.begin(), l.added.end());
    auto cloud = LevelCloud(*plan, k);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    ASSERT_TRUE(cloud->Validate().ok());
    EXPECT_EQ(cloud->size(), l.count);
    EXPECT_EQ(cloud->size(), ElasticCount(m.gaussians.size(), l.ratio));
    ExpectSameCloud(*cloud, TransformedSubset(m, sent, l.ratio, &pool));
  }
  // The last level differs from the one before in its patched geometry, not only by its
  // additions; colours are never patched.
  auto before = LevelCloud(*plan, 2);
  auto last = LevelCloud(*plan, 3);
  ASSERT_TRUE(before.ok() && last.ok());
  const size_t n2 = before->size();
  EXPECT_NE(std::vector<float>(last->positions.begin(), last->positions.begin() + n2 * 3), before->positions);
  EXPECT_EQ(std::vector<float>(last->sh_dc.begin(), last->sh_dc.begin() + n2 * 3), before->sh_dc);
}

// Poses fixed at insertion: levels below 1 carry no patches, each addition is posed at
// its own level's ratio, and a ratio of 1 restores every Gaussian to the model's own.
TEST(LevelCloudTest, PosesFixedAtInsertionOnlyAddUntilTheFullScene) {
  ThreadPool pool(2);
  ElasticModel m = ::flexgs::testing::RatioDependentTestModel(3000, 11, /*sh_degree=*/1);
  m.pose_at_insertion = true;
  m.coverage_share = 0.3;
  auto plan = PlanLevels(m, {.top_ratio = 1.0, .ladder = {0.01, 0.05, 0.10, 0.15}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 5u);
  std::vector<uint32_t> sent;
  GaussianCloud expected;
  expected.sh_degree = 1;
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "level " << k);
    const PlanLevel& l = plan->levels[k];
    sent.insert(sent.end(), l.added.begin(), l.added.end());
    auto cloud = LevelCloud(*plan, k);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    if (l.ratio < 1.0) {
      EXPECT_TRUE(l.patches.empty());
      const GaussianCloud posed = TransformedSubset(m, l.added, l.ratio, &pool);
      for (auto [dst, src] :
           {std::pair{&expected.positions, &posed.positions}, std::pair{&expected.log_scales, &posed.log_scales},
            std::pair{&expected.rotations, &posed.rotations},
            std::pair{&expected.opacity_logits, &posed.opacity_logits}, std::pair{&expected.sh_dc, &posed.sh_dc},
            std::pair{&expected.sh_rest, &posed.sh_rest}}) {
        dst->insert(dst->end(), src->begin(), src->end());
      }
      ExpectSameCloud(*cloud, expected);
      EXPECT_NE(posed.log_scales, m.gaussians.Gather(l.added).log_scales);  // really moved
    } else {
      EXPECT_EQ(l.patches.size(), (sent.size() - l.added.size()) * kPatchStride);
      ExpectSameCloud(*cloud, m.gaussians.Gather(sent));  // the model's own Gaussians
    }
  }
}

// Merged levels: each level is the merge of everything sent so far onto itself, the
// replacements name exactly the earlier Gaussians that changed (none re-sent needlessly),
// and the full scene is the model's own Gaussians again.
TEST(LevelCloudTest, MergedLevelsAreTheMergeOfTheHeldSetAndEndAtTheInput) {
  ThreadPool pool(2);
  ElasticModel m = HeuristicTestModel(3000, 12, /*sh_degree=*/2);
  m.merged_levels = true;
  m.coverage_share = 1.0;
  auto plan = PlanLevels(m, {.top_ratio = 1.0, .ladder = {0.01, 0.05, 0.10, 0.15}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 5u);
  std::vector<uint32_t> sent;
  GaussianCloud before;
  size_t replaced = 0;
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "level " << k);
    const PlanLevel& l = plan->levels[k];
    EXPECT_TRUE(l.patches.empty());
    sent.insert(sent.end(), l.added.begin(), l.added.end());
    auto cloud = LevelCloud(*plan, k);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    auto merged = MergeIntoRepresentatives(m.gaussians, sent, MergeOptions{}, nullptr);
    ASSERT_TRUE(merged.ok());
    ExpectSameCloud(*cloud, *merged);
    // Replaced exactly where the held Gaussian changed.
    std::vector<uint32_t> changed;
    for (uint32_t i = 0; i < before.size(); ++i) {
      const GaussianCloud a = before.Gather(std::vector<uint32_t>{i}), b = merged->Gather(std::vector<uint32_t>{i});
      if (a.positions != b.positions || a.log_scales != b.log_scales || a.rotations != b.rotations ||
          a.opacity_logits != b.opacity_logits || a.sh_dc != b.sh_dc || a.sh_rest != b.sh_rest) {
        changed.push_back(i);
      }
    }
    EXPECT_EQ(l.replaced, changed);
    replaced += l.replaced.size();
    before = *merged;
  }
  EXPECT_GT(replaced, 0u);
  ExpectSameCloud(before, m.gaussians.Gather(sent));  // 100 %: the input, bit for bit
  // Merged Gaussians are not the selected ones: the merge really happened below 100 %.
  auto first = LevelCloud(*plan, 0);
  ASSERT_TRUE(first.ok());
  EXPECT_NE(first->log_scales, m.gaussians.Gather(plan->levels[0].added).log_scales);
  // A plan whose replacements leave the held set is refused, not replayed.
  Plan bad = *plan;
  bad.levels[1].replaced.back() = bad.levels[0].count;
  EXPECT_EQ(LevelCloud(bad, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

// Refined rungs stand in for the merge exactly where the held set is the one they were
// trained for: the model's ladder, with or without stops (the canonical stream); a plan
// whose rungs hold other Gaussians is the merge's plan, bit for bit; 100 % is the input.
TEST(LevelCloudTest, RefinedRungsReplaceTheMergeOnlyForTheGaussiansTheyWereTrainedFor) {
  ThreadPool pool(2);
  ElasticModel m = HeuristicTestModel(3000, 12, /*sh_degree=*/1);
  m.merged_levels = true;
  m.coverage_share = 1.0;
  m.ladder = {0.02, 0.05, 0.10};
  auto rungs = MergedRungs(m, &pool);
  ASSERT_TRUE(rungs.ok()) << rungs.status();
  ASSERT_EQ(rungs->size(), 3u);
  // Stand-ins for trained rungs: what a rung sends gets a brighter opacity, the rest
  // stays what the rung before holds (as RefineRungs keeps it).
  std::vector<GaussianCloud> client;  // per rung, client order
  for (size_t k = 0; k < rungs->size(); ++k) {
    const MergedRung& r = (*rungs)[k];
    GaussianCloud c = r.merged;
    const size_t before = k ? client[k - 1].size() : 0;
    for (size_t i = 0; i < c.size(); ++i) {
      const bool sent = i >= before || std::binary_search(r.replaced.begin(), r.replaced.end(), i);
      if (sent) {
        c.opacity_logits[i] += 0.75f;
      } else {
        c.Scatter(std::vector<uint32_t>{static_cast<uint32_t>(i)},
                  client[k - 1].Gather(std::vector<uint32_t>{static_cast<uint32_t>(i)}));
      }
    }
    std::vector<uint32_t> order(r.held.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return r.held[a] < r.held[b]; });
    std::vector<uint32_t> sorted;
    for (uint32_t i : order) sorted.push_back(r.held[i]);
    m.refined_rungs.push_back({r.ratio, HeldIndexDigest(sorted), c.Gather(order)});
    client.push_back(std::move(c));
  }

  auto plan = PlanLevels(m, {.top_ratio = 1.0, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 4u);
  for (size_t k = 0; k < 3; ++k) {
    SCOPED_TRACE(::testing::Message() << "rung " << k);
    auto cloud = LevelCloud(*plan, k);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    ExpectSameCloud(*cloud, client[k]);
    EXPECT_EQ(plan->levels[k].replaced, (*rungs)[k].replaced);  // what the rung trained is what it sends
  }
  std::vector<uint32_t> sent;
  for (const PlanLevel& l : plan->levels) sent.insert(sent.end(), l.added.begin(), l.added.end());
  auto full = LevelCloud(*plan, 3);
  ASSERT_TRUE(full.ok());
  ExpectSameCloud(*full, m.gaussians.Gather(sent));

  // The canonical stream (stops between rungs): each rung's last sub-level holds the
  // trained Gaussians, whatever order the stops send them in.
  auto canonical = PlanLevels(m, CanonicalPlanRequest({}), &pool);
  ASSERT_TRUE(canonical.ok()) << canonical.status();
  std::vector<uint32_t> held;
  size_t rung = 0;
  for (size_t k = 0; k < canonical->levels.size() && rung < 3; ++k) {
    const PlanLevel& l = canonical->levels[k];
    held.insert(held.end(), l.added.begin(), l.added.end());
    if (l.ratio != m.ladder[rung]) continue;
    auto cloud = LevelCloud(*canonical, k);
    ASSERT_TRUE(cloud.ok());
    std::vector<uint32_t> order(held.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return held[a] < held[b]; });
    ExpectSameCloud(cloud->Gather(order), m.refined_rungs[rung].held);
    ++rung;
  }
  EXPECT_EQ(rung, 3u);

  // Other rungs hold other Gaussians: the merge's plan, bit for bit.
  ElasticModel unrefined = m;
  unrefined.refined_rungs.clear();
  const PlanRequest other{.top_ratio = 0.12, .ladder = {0.03, 0.07}};
  auto with = PlanLevels(m, other, &pool);
  auto without = PlanLevels(unrefined, other, &pool);
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_EQ(SerializePlan(*with), SerializePlan(*without));
  // A rung whose held set is not the one it was trained for (here: its digest) is not
  // used: that level is the merge again, and the rung before keeps its refinement.
  ElasticModel stale = m;
  stale.refined_rungs[1].held_digest ^= 1;
  auto fallback = PlanLevels(stale, {.top_ratio = m.ladder.back(), .ladder = {}}, &pool);
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  auto first = LevelCloud(*fallback, 0), second = LevelCloud(*fallback, 1);
  ASSERT_TRUE(first.ok() && second.ok());
  ExpectSameCloud(*first, client[0]);
  ExpectSameCloud(*second, (*rungs)[1].merged);
  // And the refiner's own view of the merge ignores the refined rungs.
  auto again = MergedRungs(m, &pool);
  ASSERT_TRUE(again.ok());
  for (size_t k = 0; k < 3; ++k) ExpectSameCloud((*again)[k].merged, (*rungs)[k].merged);
}

// With a replacement tolerance the client skips invisible changes: fewer replacements,
// every held Gaussian within the tolerance of the exact merge, and still the input at 100%.
TEST(LevelCloudTest, ReplacementToleranceSkipsInvisibleChangesButNotAtTheFullScene) {
  ThreadPool pool(2);
  ElasticModel m = HeuristicTestModel(4000, 13, /*sh_degree=*/1);
  m.merged_levels = true;
  m.coverage_share = 1.0;
  const PlanRequest request{.top_ratio = 1.0, .ladder = {0.01, 0.05, 0.10, 0.15}};
  auto exact = PlanLevels(m, request, &pool);
  m.replacement_tolerance = 4.0;
  auto loose = PlanLevels(m, request, &pool);
  ASSERT_TRUE(exact.ok() && loose.ok());
  ASSERT_EQ(loose->levels.size(), 5u);
  size_t exact_replaced = 0, loose_replaced = 0;
  for (size_t k = 0; k < 4; ++k) {
    SCOPED_TRACE(::testing::Message() << "level " << k);
    exact_replaced += exact->levels[k].replaced.size();
    loose_replaced += loose->levels[k].replaced.size();
    auto want = LevelCloud(*exact, k);
    auto got = LevelCloud(*loose, k);
    ASSERT_TRUE(want.ok() && got.ok());
    ASSERT_EQ(got->size(), want->size());
    for (size_t i = 0; i < got->size(); ++i) {
      ASSERT_FALSE(ReplacementIsVisible(*want, i, *got, i, 4.0)) << "Gaussian " << i;
    }
  }
  EXPECT_LT(loose_replaced, exact_replaced);
  auto full = LevelCloud(*loose, 4);
  ASSERT_TRUE(full.ok());
  std::vector<uint32_t> sent;
  for (const PlanLevel& l : loose->levels) sent.insert(sent.end(), l.added.begin(), l.added.end());
  ExpectSameCloud(*full, m.gaussians.Gather(sent));
}

TEST(LevelPlannerTest, ReplacementVisibilityFollowsEachAttributesStep) {
  GaussianCloud a;
  a.sh_degree = 1;
  a.Resize(1);
  for (int k = 0; k < 3; ++k) a.log_scales[k] = std::log(0.1f);
  a.rotations[0] = 1;
  const auto changed = [&](const std::function<void(GaussianCloud&)>& edit) {
    GaussianCloud b = a;
    edit(b);
    return std::pair{ReplacementIsVisible(b, 0, a, 0, 1.0), ReplacementIsVisible(b, 0, a, 0, 0.0)};
  };
  EXPECT_FALSE(ReplacementIsVisible(a, 0, a, 0, 0.0));
  // Below one step: invisible at tolerance 1, but still a change at tolerance 0.
  EXPECT_EQ(changed([](GaussianCloud& b) { b.sh_dc[1] += 0.04f; }), std::pair(false, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.sh_dc[1] += 0.06f; }), std::pair(true, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.opacity_logits[0] += 0.02f; }), std::pair(false, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.opacity_logits[0] += 0.05f; }), std::pair(true, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.sh_rest[4] += 0.05f; }), std::pair(false, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.sh_rest[4] += 0.07f; }), std::pair(true, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.positions[2] += 0.009f; }), std::pair(false, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.positions[2] += 0.011f; }), std::pair(true, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.log_scales[0] += 0.05f; }), std::pair(false, true));
  EXPECT_EQ(changed([](GaussianCloud& b) { b.log_scales[0] += 0.3f; }), std::pair(true, true));
}

TEST(LevelCloudTest, HeuristicTopLevelIsTheIndependentSubsetUpToOrdering) {
  ThreadPool pool(2);
  const ElasticModel m = HeuristicTestModel(4000, 12, /*sh_degree=*/1);
  auto plan = PlanLevels(m, {.top_ratio = 0.15, .ladder = {0.01, 0.05, 0.10, 0.15}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::vector<uint32_t> counts = {40, 200, 400, 600};
  ASSERT_EQ(plan->levels.size(), counts.size());
  for (size_t k = 0; k < counts.size(); ++k) {
    auto cloud = LevelCloud(*plan, k);
    ASSERT_TRUE(cloud.ok());
    EXPECT_EQ(cloud->size(), counts[k]) << k;
  }
  auto top = LevelCloud(*plan, plan->levels.size() - 1);
  auto independent = ElasticSubset(m, 0.15, &pool);
  ASSERT_TRUE(top.ok() && independent.ok());
  EXPECT_EQ(top->size(), independent->size());
  EXPECT_TRUE(Rows(*top) == Rows(*independent));
  // Client order is not the ranking order (each level is sent in Morton order).
  EXPECT_NE(top->positions, independent->positions);
}

TEST(LevelCloudTest, LevelOutsideThePlanIsOutOfRange) {
  ThreadPool pool(1);
  const ElasticModel m = HeuristicTestModel(500, 13);
  auto plan = PlanLevels(m, {.top_ratio = 0.1, .ladder = {0.05}}, &pool);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->levels.size(), 2u);
  EXPECT_TRUE(LevelCloud(*plan, 1).ok());
  EXPECT_EQ(LevelCloud(*plan, 2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(LevelCloud(*plan, SIZE_MAX).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(LevelCloud(Plan{}, 0).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(LevelCloudTest, InconsistentPlansAreRefusedNotReplayed) {
  ThreadPool pool(1);
  const ElasticModel m = TrainedLikeTestModel(1000, 14);
  auto plan = PlanLevels(m, {.top_ratio = 0.1, .ladder = {0.05}}, &pool);
  ASSERT_TRUE(plan.ok());
  ASSERT_FALSE(plan->levels[1].patches.empty());
  Plan short_patches = *plan;
  short_patches.levels[1].patches.resize(short_patches.levels[1].patches.size() - kPatchStride);
  EXPECT_TRUE(LevelCloud(short_patches, 0).ok());  // level 0 does not read level 1
  EXPECT_EQ(LevelCloud(short_patches, 1).status().code(), absl::StatusCode::kInvalidArgument);
  Plan wrong_count = *plan;
  wrong_count.levels[0].count += 1;
  EXPECT_EQ(LevelCloud(wrong_count, 0).status().code(), absl::StatusCode::kInvalidArgument);
  Plan missing_addition = *plan;
  missing_addition.levels[0].added.pop_back();
  EXPECT_EQ(LevelCloud(missing_addition, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flexgs

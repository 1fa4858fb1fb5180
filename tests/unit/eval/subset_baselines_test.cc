#include "eval/subset_baselines.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "elastic/elastic_selection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "render/cpu_rasterizer.h"
#include "render/global_importance.h"
#include "stream/level_planner.h"
#include "stream/stream_script.h"
#include "tests/support/cloud_equality.h"
#include "tests/support/test_models.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

const std::vector<SubsetMethod> kSubsetMethods = {
    SubsetMethod::kElasticIndependent, SubsetMethod::kElasticNested, SubsetMethod::kGiTopK,
    SubsetMethod::kLightGaussian,      SubsetMethod::kOpacityTopK,   SubsetMethod::kRandom,
};

bool SameCloud(const GaussianCloud& a, const GaussianCloud& b) {
  return a.sh_degree == b.sh_degree && a.positions == b.positions && a.log_scales == b.log_scales &&
         a.rotations == b.rotations && a.opacity_logits == b.opacity_logits && a.sh_dc == b.sh_dc &&
         a.sh_rest == b.sh_rest;
}

TEST(SubsetBaselinesTest, NamesRoundTripAndUnknownIsRejected) {
  for (SubsetMethod m : AllSubsetMethods()) {
    auto parsed = ParseSubsetMethod(SubsetMethodName(m));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_EQ(SubsetMethodName(AllSubsetMethods().front()), "full");
  auto bad = ParseSubsetMethod("gi-top");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("gi-top"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("opacity-topk"));
}

TEST(SubsetBaselinesTest, RatioListsAreCheckedAndSorted) {
  auto ok = NormalizeEvalRatios({0.15, 0.01, 0.1});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, (std::vector<double>{0.01, 0.1, 0.15}));
  EXPECT_FALSE(NormalizeEvalRatios({}).ok());
  EXPECT_FALSE(NormalizeEvalRatios({0.0}).ok());
  EXPECT_FALSE(NormalizeEvalRatios({1.5}).ok());
  EXPECT_FALSE(NormalizeEvalRatios({std::nan("")}).ok());
  auto dup = NormalizeEvalRatios({0.05, 0.05});
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("repeated"));
}

TEST(SubsetBaselinesTest, EveryMethodKeepsExactlyFloorEN) {
  for (const ElasticModel& model : {testing::HeuristicTestModel(1000, 3), testing::TrainedLikeTestModel(1000, 4)}) {
    const std::vector<double> ratios = {0.001, 0.01, 0.05, 0.1, 0.15, 0.333, 1.0};
    ThreadPool pool(2);
    for (SubsetMethod m : kSubsetMethods) {
      auto clouds = SubsetClouds(model, m, ratios, 11, &pool);
      ASSERT_TRUE(clouds.ok()) << SubsetMethodName(m) << ": " << clouds.status();
      ASSERT_EQ(clouds->size(), ratios.size());
      for (size_t k = 0; k < ratios.size(); ++k) {
        const size_t expected = std::max<size_t>(1, static_cast<size_t>(std::floor(ratios[k] * 1000)));
        EXPECT_EQ((*clouds)[k].size(), expected) << SubsetMethodName(m) << " at " << ratios[k];
        EXPECT_TRUE((*clouds)[k].Validate().ok());
      }
    }
  }
  auto full = SubsetClouds(testing::HeuristicTestModel(10, 1), SubsetMethod::kFull, {0.5}, 0, nullptr);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SubsetBaselinesTest, SelectionsAreDeterministicAndSeeded) {
  const ElasticModel model = testing::TrainedLikeTestModel(2000, 5);
  const std::vector<double> ratios = {0.05, 0.15};
  ThreadPool one(1), four(4);
  for (SubsetMethod m : kSubsetMethods) {
    auto a = SubsetClouds(model, m, ratios, 42, &one);
    auto b = SubsetClouds(model, m, ratios, 42, &four);
    ASSERT_TRUE(a.ok() && b.ok());
    for (size_t k = 0; k < ratios.size(); ++k) EXPECT_TRUE(SameCloud((*a)[k], (*b)[k])) << SubsetMethodName(m);
  }
  const std::vector<uint32_t> r1 = RandomSubsetIndices(2000, 0.1, 42);
  EXPECT_EQ(r1, RandomSubsetIndices(2000, 0.1, 42));
  EXPECT_NE(r1, RandomSubsetIndices(2000, 0.1, 43));
  EXPECT_TRUE(std::is_sorted(r1.begin(), r1.end()));
  EXPECT_EQ(std::set<uint32_t>(r1.begin(), r1.end()).size(), r1.size()) << "no repeats";
  // One seed's subsets are nested across ratios, and spread over the whole index range.
  const std::vector<uint32_t> r2 = RandomSubsetIndices(2000, 0.3, 42);
  EXPECT_TRUE(std::includes(r2.begin(), r2.end(), r1.begin(), r1.end()));
  EXPECT_LT(r2.front(), 100u);
  EXPECT_GT(r2.back(), 1900u);
}

TEST(SubsetBaselinesTest, OpacityTopKKeepsTheMostOpaque) {
  const ElasticModel model = testing::HeuristicTestModel(3000, 6);
  const std::vector<uint32_t> keep = OpacityTopKIndices(model.gaussians, 0.1);
  ASSERT_EQ(keep.size(), 300u);
  std::vector<uint8_t> kept(3000, 0);
  for (uint32_t i : keep) kept[i] = 1;
  float min_kept = INFINITY, max_dropped = -INFINITY;
  for (uint32_t i = 0; i < 3000; ++i) {
    const float o = model.gaussians.opacity_logits[i];
    if (kept[i]) {
      min_kept = std::min(min_kept, o);
    } else {
      max_dropped = std::max(max_dropped, o);
    }
  }
  EXPECT_GE(min_kept, max_dropped);
}

TEST(SubsetBaselinesTest, GiTopKAndLightGaussianMatchTopKOfTheirScores) {
  const ElasticModel model = testing::HeuristicTestModel(3000, 7);
  for (double e : {0.01, 0.05, 0.2}) {
    std::vector<uint32_t> gi = TopK(model.global_importance, ElasticCount(3000, e));
    std::sort(gi.begin(), gi.end());
    EXPECT_EQ(GiTopKIndices(model, e), gi);
    std::vector<uint32_t> lg =
        TopK(ApplyVolumeWeighting(model.gaussians, model.global_importance, 0.1), ElasticCount(3000, e));
    std::sort(lg.begin(), lg.end());
    EXPECT_EQ(LightGaussianTopKIndices(model, e), lg);
  }
  // The volume weighting changes the ranking (the synthetic scene's scales vary).
  EXPECT_NE(GiTopKIndices(model, 0.1), LightGaussianTopKIndices(model, 0.1));
}

TEST(SubsetBaselinesTest, ElasticMethodsMatchSelectionAndPlanner) {
  ThreadPool pool(2);
  const std::vector<double> ratios = {0.01, 0.05, 0.1, 0.15};
  // Heuristic: both elastic methods are GI top-k without transform (same sets).
  const ElasticModel h = testing::HeuristicTestModel(4000, 8);
  auto gi = SubsetClouds(h, SubsetMethod::kGiTopK, ratios, 0, &pool);
  auto ind = SubsetClouds(h, SubsetMethod::kElasticIndependent, ratios, 0, &pool);
  auto nested = SubsetClouds(h, SubsetMethod::kElasticNested, ratios, 0, &pool);
  ASSERT_TRUE(gi.ok() && ind.ok() && nested.ok());
  for (size_t k = 0; k < ratios.size(); ++k) {
    EXPECT_TRUE(SameCloud((*gi)[k], (*ind)[k]));
    std::multiset<float> a((*gi)[k].opacity_logits.begin(), (*gi)[k].opacity_logits.end());
    std::multiset<float> b((*nested)[k].opacity_logits.begin(), (*nested)[k].opacity_logits.end());
    EXPECT_EQ(a, b) << "same Gaussians, in stream order";
  }
  // Trained: independent is ElasticSubset; nested is the planner's client-side levels.
  const ElasticModel t = testing::RatioDependentTestModel(4000, 9);
  auto t_ind = SubsetClouds(t, SubsetMethod::kElasticIndependent, ratios, 0, &pool);
  auto t_nested = SubsetClouds(t, SubsetMethod::kElasticNested, ratios, 0, &pool);
  ASSERT_TRUE(t_ind.ok() && t_nested.ok());
  PlanRequest req;
  req.ladder = ratios;
  req.top_ratio = 0.15;
  auto plan = PlanLevels(t, req, &pool);
  ASSERT_TRUE(plan.ok());
  for (size_t k = 0; k < ratios.size(); ++k) {
    auto subset = ElasticSubset(t, ratios[k], &pool);
    ASSERT_TRUE(subset.ok());
    EXPECT_TRUE(SameCloud((*t_ind)[k], *subset));
    auto level = LevelCloud(*plan, k);
    ASSERT_TRUE(level.ok());
    EXPECT_TRUE(SameCloud((*t_nested)[k], *level));
  }
  // Nested: each level starts with every Gaussian of the one before (client order); the
  // transform re-poses them, but opacity and colour are never transformed.
  for (size_t k = 1; k < ratios.size(); ++k) {
    const GaussianCloud& prev = (*t_nested)[k - 1];
    const GaussianCloud& cur = (*t_nested)[k];
    ASSERT_GT(cur.size(), prev.size());
    EXPECT_TRUE(std::equal(prev.opacity_logits.begin(), prev.opacity_logits.end(), cur.opacity_logits.begin()));
    EXPECT_TRUE(std::equal(prev.sh_dc.begin(), prev.sh_dc.end(), cur.sh_dc.begin()));
  }
}

TEST(SubsetBaselinesTest, HeldOutOrbitAvoidsGiViews) {
  const OrbitOptions o = HeldOutOrbitOptions(24, 20.0, 4, 128, 96);
  EXPECT_EQ(o.count, 4);
  EXPECT_EQ(o.width, 128);
  EXPECT_EQ(o.height, 96);
  EXPECT_DOUBLE_EQ(o.azimuth_offset_deg, 7.5);
  EXPECT_DOUBLE_EQ(o.elevation_deg, 35.0);
  EXPECT_DOUBLE_EQ(HeldOutOrbitOptions(8, 75.0, 2, 8, 8).elevation_deg, 60.0);
  // No evaluation camera sits where a GI camera was.
  SceneBounds b;
  b.lo = Eigen::Vector3d(-1, -2, -1);
  b.hi = Eigen::Vector3d(1, 0, 1);
  OrbitOptions gi_opt;
  gi_opt.count = 24;
  const auto gi = OrbitCameras(b, gi_opt);
  for (const Camera& e : OrbitCameras(b, HeldOutOrbitOptions(24, 20.0, 24, 64, 64))) {
    for (const Camera& g : gi) EXPECT_GT((e.Centre() - g.Centre()).norm(), 0.05 * (g.Centre() - b.centre()).norm());
  }
}

std::vector<Camera> TestCameras(const GaussianCloud& cloud, int count, int size) {
  OrbitOptions o;
  o.count = count;
  o.width = o.height = size;
  return OrbitCameras(RobustBounds(cloud), o);
}

TEST(SubsetBaselinesTest, FullAgainstItselfIsIdentical) {
  const ElasticModel model = testing::HeuristicTestModel(3000, 10);
  const std::vector<Camera> cams = TestCameras(model.gaussians, 2, 48);
  CpuRasterizer raster(2);
  EvalOptions opt;
  auto targets = RenderTargets(model.gaussians, cams, opt, raster);
  ASSERT_TRUE(targets.ok());
  auto score = ScoreCloud(model.gaussians, cams, *targets, opt, raster);
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_EQ(score->count, 3000u);
  EXPECT_EQ(score->raw_bytes, 3000u * RawBytesPerGaussian(1));
  for (double p : score->psnr) EXPECT_TRUE(std::isinf(p) && p > 0);
  for (double s : score->ssim) EXPECT_DOUBLE_EQ(s, 1.0);
  EXPECT_TRUE(std::isinf(score->mean_psnr));
  EXPECT_DOUBLE_EQ(score->mean_ssim, 1.0);
  ASSERT_EQ(score->contacts.size(), 1u);
  EXPECT_EQ(score->contacts[0].pixels, (*targets)[0].pixels);
}

TEST(SubsetBaselinesTest, EvaluateMethodsScoresEveryCell) {
  const ElasticModel model = testing::HeuristicTestModel(6000, 12);
  const std::vector<Camera> cams = TestCameras(model.gaussians, 2, 48);
  CpuRasterizer raster(2);
  ThreadPool pool(2);
  const std::vector<double> ratios = {0.02, 0.3};
  std::vector<EvalMethod> methods = {BuiltinEvalMethod(model, SubsetMethod::kOpacityTopK, 0, &pool),
                                     BuiltinEvalMethod(model, SubsetMethod::kRandom, 1, &pool)};
  // An external method is any function of the ratios (here: the first floor(eN) Gaussians).
  methods.push_back({"prefix", [&model](absl::Span<const double> r) {
                       std::vector<GaussianCloud> out;
                       for (double e : r) {
                         std::vector<uint32_t> idx(ElasticCount(model.gaussians.size(), e));
                         for (uint32_t i = 0; i < idx.size(); ++i) idx[i] = i;
                         out.push_back(model.gaussians.Gather(idx));
                       }
                       return absl::StatusOr<std::vector<GaussianCloud>>(std::move(out));
                     }});
  EvalOptions opt;
  opt.contact_views = {1, 0};
  auto result = EvaluateMethods(model, cams, {}, ratios, /*include_full=*/true, methods, opt, raster);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows.size(), 4u);
  EXPECT_EQ(result->rows[0].method, "full");
  EXPECT_TRUE(std::isinf(result->rows[0].cells[0].mean_psnr));
  EXPECT_EQ(result->rows[3].method, "prefix");
  for (size_t r = 1; r < result->rows.size(); ++r) {
    const EvalRow& row = result->rows[r];
    ASSERT_EQ(row.cells.size(), 2u);
    for (const CloudScore& c : row.cells) {
      EXPECT_TRUE(std::isfinite(c.mean_psnr)) << row.method;
      ASSERT_EQ(c.contacts.size(), 2u);
      EXPECT_EQ(c.contacts[0].width, 48);
      EXPECT_NE(c.contacts[0].pixels, c.contacts[1].pixels) << "views 1 and 0, in the order asked for";
      EXPECT_EQ(c.psnr.size(), 2u);
    }
    EXPECT_LT(row.cells[0].mean_psnr, row.cells[1].mean_psnr) << row.method << ": more Gaussians, closer";
  }
  // A failing method names itself.
  methods = {{"broken", [](absl::Span<const double>) {
                return absl::StatusOr<std::vector<GaussianCloud>>(absl::InternalError("tool crashed"));
              }}};
  auto bad = EvaluateMethods(model, cams, {}, ratios, false, methods, opt, raster);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("broken: tool crashed"));
  // Targets of the wrong size are an error, not a crash.
  std::vector<Image> wrong(2, Image(10, 10, 3));
  methods = {BuiltinEvalMethod(model, SubsetMethod::kGiTopK, 0, &pool)};
  EXPECT_FALSE(EvaluateMethods(model, cams, wrong, ratios, false, methods, opt, raster).ok());
  // A contact view outside the views is refused before any work.
  opt.contact_views = {0, 2};
  EXPECT_EQ(EvaluateMethods(model, cams, {}, ratios, false, methods, opt, raster).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(SubsetBaselinesTest, StreamBytesAreWhatTheScriptSends) {
  for (const ElasticModel& model : {testing::HeuristicTestModel(4000, 5, 3), testing::TrainedLikeTestModel(4000, 6)}) {
    ThreadPool pool(2);
    const std::vector<double> ratios = {0.02, 0.1, 0.3};
    auto nested = NestedStreamLevelBytes(model, ratios, &pool);
    ASSERT_TRUE(nested.ok()) << nested.status();
    ASSERT_EQ(nested->size(), 3u);
    // The same numbers `flexgs plan` reports: the script of PlanLevels(ladder = ratios).
    PlanRequest request;
    request.ladder = ratios;
    request.top_ratio = 0.3;
    auto plan = PlanLevels(model, request, &pool);
    ASSERT_TRUE(plan.ok());
    ScriptOptions script_options;
    script_options.sh_degree = plan->sh_degree;
    auto script = BuildStreamScript(*plan, script_options);
    ASSERT_TRUE(script.ok());
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ((*nested)[k], script->levels[k].payload_bytes);
      EXPECT_GT((*nested)[k], 0u);
    }
    auto single = SingleLevelStreamBytes(model, ratios, &pool);
    ASSERT_TRUE(single.ok()) << single.status();
    ASSERT_EQ(single->size(), 3u);
    // The first level of a nested stream is the one-level stream of that ratio.
    EXPECT_EQ((*single)[0], (*nested)[0]);
    EXPECT_LT((*single)[0], (*single)[1]);
    EXPECT_LT((*single)[1], (*single)[2]);
    // A later one-level stream holds at least as many Gaussians as the nested levels
    // that reach it add (less their patches): the whole stream is no smaller than it.
    EXPECT_GE((*nested)[0] + (*nested)[1] + (*nested)[2], (*single)[2] * 9 / 10);
  }
  auto none = NestedStreamLevelBytes(testing::HeuristicTestModel(100, 1), {}, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// elastic-stream is the server's canonical stream cut at each budget: at a rung of the
// model's ladder it holds what a plan for that rung holds, between rungs the last stop
// within the budget; its bytes add up to the cut's share of the script.
TEST(SubsetBaselinesTest, ElasticStreamIsTheCanonicalStreamCutAtEachBudget) {
  ThreadPool pool(2);
  const ElasticModel model = testing::HeuristicTestModel(4000, 5, 1);  // ladder 1/5/10/15 %
  const std::vector<double> ratios = {0.05, 0.07, 0.15, 0.5};
  auto clouds = SubsetClouds(model, SubsetMethod::kElasticStream, ratios, 0, &pool);
  ASSERT_TRUE(clouds.ok()) << clouds.status();
  ASSERT_EQ(clouds->size(), 4u);
  auto plan = PlanLevels(model, CanonicalPlanRequest({}), &pool);
  ASSERT_TRUE(plan.ok());
  std::vector<size_t> want_last;
  for (double e : ratios) {
    size_t last = 0;
    while (last + 1 < plan->levels.size() && plan->levels[last + 1].count <= ElasticCount(4000, e)) ++last;
    want_last.push_back(last);
  }
  for (size_t k = 0; k < ratios.size(); ++k) {
    SCOPED_TRACE(ratios[k]);
    auto held = LevelCloud(*plan, want_last[k]);
    ASSERT_TRUE(held.ok());
    EXPECT_TRUE(testing::BitEqual((*clouds)[k], *held));
    EXPECT_LE((*clouds)[k].size(), ElasticCount(4000, ratios[k]));
    EXPECT_GT((*clouds)[k].size() * std::exp2(0.375), ElasticCount(4000, ratios[k]));
  }
  EXPECT_EQ((*clouds)[0].size(), 200u);  // a rung: exactly 5 %
  EXPECT_EQ((*clouds)[2].size(), 600u);
  auto bytes = CanonicalStreamCutBytes(model, ratios, &pool);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ScriptOptions options;
  options.sh_degree = plan->sh_degree;
  auto script = BuildStreamScript(*plan, options);
  ASSERT_TRUE(script.ok());
  uint64_t cumulative = 0, total = 0;
  for (size_t k = 0; k < ratios.size(); ++k) {
    total += (*bytes)[k];
    cumulative = 0;
    for (size_t l = 0; l <= want_last[k]; ++l) cumulative += script->levels[l].payload_bytes;
    EXPECT_EQ(total, cumulative) << ratios[k];
  }
  // A budget below the first level holds nothing the stream can give.
  EXPECT_EQ(SubsetClouds(model, SubsetMethod::kElasticStream, {0.005}, 0, &pool).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(SubsetBaselinesTest, ResizeAreaAveragesAndToRgbOverComposites) {
  Image img(4, 2, 3);
  for (int x = 0; x < 4; ++x)
    for (int y = 0; y < 2; ++y)
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = static_cast<float>(x) / 4.0f;
  const Image half = ResizeArea(img, 2, 1);
  EXPECT_FLOAT_EQ(half.at(0, 0, 0), 0.125f);
  EXPECT_FLOAT_EQ(half.at(1, 0, 2), 0.625f);
  const Image same = ResizeArea(img, 4, 2);
  EXPECT_EQ(same.pixels, img.pixels);
  Image rgba(1, 1, 4);
  rgba.pixels = {1.0f, 0.0f, 0.0f, 0.25f};
  const Image over = ToRgbOver(rgba, {0.0f, 0.0f, 1.0f});
  ASSERT_EQ(over.channels, 3);
  EXPECT_FLOAT_EQ(over.at(0, 0, 0), 0.25f);
  EXPECT_FLOAT_EQ(over.at(0, 0, 2), 0.75f);
}

}  // namespace
}  // namespace flexgs

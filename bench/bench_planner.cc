// Elastic inference and Global Importance at scale (issue: elastic model).
//   BM_PlanOneLevel: selector over all N + transform of the kept 15% for a 1M model
//                    with the reference-sized field (16 ch, 64/128/256, ratio axis 150).
//   BM_PlanMergedLevels: a merged-level model's plan (1/5/10/15 %) for 1M Gaussians, SH 0,
//                    coverage share 1: a merge of all N onto the held set per level,
//                    against BM_PlanSelectedLevels, the same model with selected levels.
//   BM_GlobalImportance: GI over 100 orbit views of 800x800 (guitar.ply, synthetic 1M).
// Results: bench/RESULTS.md.
#include <cstdlib>
#include <filesystem>
#include <memory>

#include <benchmark/benchmark.h>

#include "io/ply_io.h"
#include "render/global_importance.h"
#include "scene/orbit.h"
#include "scene/synthetic_scene.h"
#include "stream/level_planner.h"

namespace flexgs {
namespace {

ElasticModel& TrainedLikeModel1M() {
  static std::unique_ptr<ElasticModel> model;
  if (!model) {
    model = std::make_unique<ElasticModel>();
    model->gaussians = MakeSyntheticScene({.count = 1'000'000, .sh_degree = 3, .seed = 1});
    model->global_importance.assign(model->gaussians.size(), 1.0f);
    model->gsnet = GsNetWeights::Init(1);
    model->field = TransformFieldWeights::Init(TransformFieldConfig{}, 1);
    model->normalization.aabb_min = {-2.5f, -2.5f, -2.5f};
    model->normalization.aabb_max = {2.5f, 0.5f, 2.5f};
  }
  return *model;
}

void BM_PlanOneLevel(benchmark::State& state) {
  ElasticModel& model = TrainedLikeModel1M();
  ThreadPool pool(static_cast<int>(state.range(0)));
  const PlanRequest req{.top_ratio = 0.15, .ladder = {0.15}};
  for (auto _ : state) {
    auto plan = PlanLevels(model, req, &pool);
    if (!plan.ok()) state.SkipWithError(std::string(plan.status().message()).c_str());
    benchmark::DoNotOptimize(plan->levels.data());
  }
  state.counters["gaussians"] = static_cast<double>(model.gaussians.size());
  state.counters["kept"] = 150000;
  state.counters["threads"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_PlanOneLevel)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

ElasticModel& HeuristicModel1M() {
  static std::unique_ptr<ElasticModel> model;
  if (!model) {
    model = std::make_unique<ElasticModel>();
    model->gaussians = MakeSyntheticScene({.count = 1'000'000, .sh_degree = 0, .seed = 1});
    model->global_importance.assign(model->gaussians.size(), 1.0f);
    for (size_t i = 0; i < model->global_importance.size(); ++i) model->global_importance[i] = 1.0f + (i * 7919 % 1000);
    model->normalization.aabb_min = {-2.5f, -2.5f, -2.5f};
    model->normalization.aabb_max = {2.5f, 0.5f, 2.5f};
    model->coverage_share = 1.0;
  }
  return *model;
}

void PlanLadder(benchmark::State& state, bool merged) {
  ElasticModel& model = HeuristicModel1M();
  model.merged_levels = merged;
  model.replacement_tolerance = merged ? 2.0 : 0.0;
  ThreadPool pool(static_cast<int>(state.range(0)));
  const PlanRequest req{.top_ratio = 0.15, .ladder = {0.01, 0.05, 0.10, 0.15}};
  for (auto _ : state) {
    auto plan = PlanLevels(model, req, &pool);
    if (!plan.ok()) state.SkipWithError(std::string(plan.status().message()).c_str());
    benchmark::DoNotOptimize(plan->levels.data());
  }
  state.counters["gaussians"] = static_cast<double>(model.gaussians.size());
  state.counters["levels"] = 4;
  state.counters["threads"] = static_cast<double>(state.range(0));
}
void BM_PlanSelectedLevels(benchmark::State& state) { PlanLadder(state, false); }
void BM_PlanMergedLevels(benchmark::State& state) { PlanLadder(state, true); }
BENCHMARK(BM_PlanSelectedLevels)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK(BM_PlanMergedLevels)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

void BM_GlobalImportance(benchmark::State& state, const std::string& scene) {
  std::unique_ptr<GaussianCloud> cloud;
  if (scene == "synthetic_1m") {
    cloud = std::make_unique<GaussianCloud>(MakeSyntheticScene({.count = 1'000'000, .sh_degree = 0, .seed = 1}));
  } else {
    const char* env = std::getenv("FLEXGS_DATA_DIR");
    auto read = ReadGaussianPly((std::filesystem::path(env ? env : FLEXGS_DATA_DIR) / scene).string());
    if (!read.ok()) {
      state.SkipWithError(std::string(read.status().message()).c_str());
      return;
    }
    cloud = std::make_unique<GaussianCloud>(*std::move(read));
  }
  OrbitOptions orbit;
  orbit.count = 100;
  orbit.width = orbit.height = 800;
  orbit.sphere = true;
  auto cams = MakeOrbitCameras(*cloud, orbit);
  CpuRasterizer raster;
  for (auto _ : state) {
    auto gi = ComputeGlobalImportance(*cloud, *cams, {}, raster);
    if (!gi.ok()) state.SkipWithError(std::string(gi.status().message()).c_str());
  }
  state.counters["gaussians"] = static_cast<double>(cloud->size());
  state.counters["views"] = 100;
  state.counters["s_per_view"] =
      benchmark::Counter(100.0 * state.iterations(), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK_CAPTURE(BM_GlobalImportance, guitar, std::string("guitar.ply"))
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_GlobalImportance, synthetic_1m, std::string("synthetic_1m"))
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace
}  // namespace flexgs

BENCHMARK_MAIN();

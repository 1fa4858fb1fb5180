// Cost of a ratio switch's networks: GsNet over all Gaussians (1M) and the transform
// field over the kept subset (150k = 15% of 1M, and 1M), on the CPU (all cores) and
// on CUDA when a GPU is present. The field uses the reference config (C=16,
// 64/128/256 x 150, width 64). CUDA timings keep weights and the cloud resident and
// include the host<->device copies of the per-call inputs and outputs.
// Results: bench/RESULTS.md.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "base/thread_pool.h"
#include "elastic/gsnet.h"
#include "elastic/transform_field.h"
#include "kernels/backend.h"
#include "scene/synthetic_scene.h"

#if defined(FLEXGS_HAS_CUDA)
#include "kernels/elastic_kernels.h"
#endif

namespace flexgs {
namespace {

constexpr size_t kSceneSize = 1'000'000;

const GaussianCloud& Scene() {
  static const GaussianCloud* cloud =
      new GaussianCloud(MakeSyntheticScene({.count = kSceneSize, .sh_degree = 0, .seed = 1}));
  return *cloud;
}

const GsNetWeights& Net() {
  static const GsNetWeights* net = new GsNetWeights(GsNetWeights::Init(1));
  return *net;
}

// Random last layers so the work is representative of a trained field (the timing does
// not depend on the values, but a zero network invites "too fast to be true" doubts).
const TransformFieldWeights& Field() {
  static const TransformFieldWeights* field = [] {
    auto* f = new TransformFieldWeights(TransformFieldWeights::Init(TransformFieldConfig{}, 1));
    SplitMix64 rng(2);
    for (int h = 0; h < 3; ++h) {
      for (float& w : f->fc2[h].weight) w = static_cast<float>(rng.Uniform(-0.1, 0.1));
    }
    return f;
  }();
  return *field;
}

FieldNormalization Normalization(const GaussianCloud& cloud) {
  FieldNormalization norm;
  for (int d = 0; d < 3; ++d) {
    norm.aabb_min[d] = norm.aabb_max[d] = cloud.positions[d];
  }
  for (size_t i = 0; i < cloud.size(); ++i) {
    for (int d = 0; d < 3; ++d) {
      norm.aabb_min[d] = std::min(norm.aabb_min[d], cloud.positions[3 * i + d]);
      norm.aabb_max[d] = std::max(norm.aabb_max[d], cloud.positions[3 * i + d]);
    }
  }
  return norm;
}

// The first `count` positions of the scene (its order is not spatially sorted, so this
// is a fair stand-in for a kept subset).
std::vector<float> Positions(size_t count) {
  const auto& p = Scene().positions;
  return std::vector<float>(p.begin(), p.begin() + 3 * std::min(count, Scene().size()));
}

ThreadPool& Pool() {
  static ThreadPool* pool = new ThreadPool(0);
  return *pool;
}

void Counters(benchmark::State& state, size_t n) {
  state.counters["gaussians"] = static_cast<double>(n);
  state.counters["gaussians_per_s"] =
      benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["threads"] = Pool().size();
}

void BM_GsNetCpu(benchmark::State& state) {
  const GaussianCloud& cloud = Scene();
  std::vector<float> delta(cloud.size());
  for (auto _ : state) {
    GsNetScores(Net(), cloud, 0.1f, absl::MakeSpan(delta), &Pool());
    benchmark::DoNotOptimize(delta.data());
  }
  Counters(state, cloud.size());
}

void BM_FieldCpu(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> positions = Positions(n);
  const FieldNormalization norm = Normalization(Scene());
  std::vector<float> deltas(n * kDeltaStride);
  for (auto _ : state) {
    EvalTransformField(Field(), norm, positions, 0.1f, absl::MakeSpan(deltas), &Pool());
    benchmark::DoNotOptimize(deltas.data());
  }
  Counters(state, n);
}

bool SkipWithoutCuda(benchmark::State& state) {
  std::string why;
  if (CudaAvailable(&why)) return false;
  state.SkipWithError(("CUDA not available: " + why).c_str());
  return true;
}

void BM_GsNetCuda(benchmark::State& state) {
  if (SkipWithoutCuda(state)) return;
#if defined(FLEXGS_HAS_CUDA)
  const GaussianCloud& cloud = Scene();
  auto evaluator = CudaElasticEvaluator::Create();
  absl::Status s = evaluator.ok() ? (*evaluator)->SetGsNet(Net()) : evaluator.status();
  if (s.ok()) s = (*evaluator)->SetCloud(cloud);
  if (!s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  std::vector<float> delta(cloud.size());
  for (auto _ : state) {
    s = (*evaluator)->Scores(0.1f, absl::MakeSpan(delta));
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(delta.data());
  }
  Counters(state, cloud.size());
#endif
}

void BM_FieldCuda(benchmark::State& state) {
  if (SkipWithoutCuda(state)) return;
#if defined(FLEXGS_HAS_CUDA)
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> positions = Positions(n);
  const FieldNormalization norm = Normalization(Scene());
  auto evaluator = CudaElasticEvaluator::Create();
  absl::Status s = evaluator.ok() ? (*evaluator)->SetField(Field()) : evaluator.status();
  if (!s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  std::vector<float> deltas(n * kDeltaStride);
  for (auto _ : state) {
    s = (*evaluator)->EvalField(norm, positions, 0.1f, absl::MakeSpan(deltas));
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(deltas.data());
  }
  Counters(state, n);
#endif
}

BENCHMARK(BM_GsNetCpu)->Name("GsNet/cpu/1000000")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FieldCpu)->Name("Field/cpu")->Arg(150'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GsNetCuda)->Name("GsNet/cuda/1000000")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FieldCuda)->Name("Field/cuda")->Arg(150'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace flexgs

BENCHMARK_MAIN();

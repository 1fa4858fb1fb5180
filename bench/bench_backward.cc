// The stage-2 trainer's inner loop. BM_Differentiable: the differentiable rasterizer
// (CPU, and CUDA when a GPU is present) at 256x256, forward alone and forward + backward
// (all parameter gradients), on guitar.ply and a guitar-sized synthetic scene with SH
// degree 3, over 8 orbit views; and on CUDA a synthetic 1M-Gaussian scene at 1280x720.
// BM_TrainerStep: whole ElasticTrainer steps (the target or full render, the selected
// render and its backward, GsNet, the field, Adam; per Recipe) with the renders on each device, and the time 35k steps
// (the reference's stage 2) would take at that rate.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include <benchmark/benchmark.h>

#include "io/ply_io.h"
#include "kernels/backend.h"
#include "render/rasterizer_backward.h"
#include "scene/orbit.h"
#include "scene/synthetic_scene.h"
#include "scene/view_sampler.h"
#include "train/elastic_trainer.h"

namespace flexgs {
namespace {

const GaussianCloud* Scene(const std::string& name) {
  static std::map<std::string, std::unique_ptr<GaussianCloud>> cache;
  auto& slot = cache[name];
  if (!slot) {
    if (name == "synthetic_90k_sh3") {
      // The guitar's Gaussian count, with every SH band in play.
      slot = std::make_unique<GaussianCloud>(MakeSyntheticScene({.count = 90'854, .sh_degree = 3, .seed = 1}));
    } else if (name == "synthetic_1m") {
      slot = std::make_unique<GaussianCloud>(MakeSyntheticScene({.count = 1'000'000, .sh_degree = 3, .seed = 1}));
    } else {
      const char* env = std::getenv("FLEXGS_DATA_DIR");
      const std::filesystem::path dir = env ? env : FLEXGS_DATA_DIR;
      auto cloud = ReadGaussianPly((dir / name).string());
      if (!cloud.ok()) return nullptr;
      slot = std::make_unique<GaussianCloud>(*std::move(cloud));
    }
  }
  return slot.get();
}

// The backend for `device`, or null after skipping the benchmark with the reason.
std::unique_ptr<DifferentiableRasterBackend> Backend(benchmark::State& state, Device device) {
  std::string why;
  if (device == Device::kCuda && !CudaAvailable(&why)) {
    state.SkipWithError(("CUDA not available: " + why).c_str());
    return nullptr;
  }
  auto backend = CreateDifferentiableRasterBackend(device);
  if (!backend.ok()) {
    state.SkipWithError(std::string(backend.status().message()).c_str());
    return nullptr;
  }
  return *std::move(backend);
}

void BM_Differentiable(benchmark::State& state, const std::string& scene, bool backward, Device device, int width,
                       int height) {
  const GaussianCloud* cloud = Scene(scene);
  if (!cloud) {
    state.SkipWithError(("scene " + scene + " not found (set FLEXGS_DATA_DIR)").c_str());
    return;
  }
  std::unique_ptr<DifferentiableRasterBackend> rasterizer = Backend(state, device);  // CPU: all hardware threads
  if (!rasterizer) return;
  OrbitOptions orbit;
  orbit.count = 8;
  orbit.width = width;
  orbit.height = height;
  auto cams = MakeOrbitCameras(*cloud, orbit);
  if (!cams.ok()) {
    state.SkipWithError(std::string(cams.status().message()).c_str());
    return;
  }
  RenderOptions opt;
  opt.want_aux = false;
  // A fixed dL/dImage, as an L2 loss against some target would give.
  std::vector<float> grad_image(static_cast<size_t>(orbit.width) * orbit.height * 3);
  SplitMix64 rng(1);
  for (float& g : grad_image) g = static_cast<float>(rng.Uniform(-1e-3, 1e-3));
  CloudGradients grads;
  size_t view = 0, intersections = 0;
  for (auto _ : state) {
    auto r = rasterizer->Forward(*cloud, (*cams)[view++ % cams->size()], opt, {});
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    intersections += r->intersections;
    if (backward) {
      const absl::Status st = rasterizer->Backward(grad_image, &grads);
      if (!st.ok()) {
        state.SkipWithError(std::string(st.message()).c_str());
        return;
      }
      benchmark::DoNotOptimize(grads.positions.data());
    }
    benchmark::DoNotOptimize(r->color.pixels.data());
  }
  state.counters["gaussians"] = static_cast<double>(cloud->size());
  state.counters["fps"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["isect_per_frame"] = static_cast<double>(intersections) / state.iterations();
}

// What a step trains: the default (a sampled view, frozen Gaussians, one pose ratio),
// the reference's joint tuning on fixed orbit targets (the recipe before view sampling),
// or nested selection with poses fixed at insertion (one field pass per rung).
enum class Recipe { kDefault, kTunedOrbit, kNestedInsertion };

void BM_TrainerStep(benchmark::State& state, const std::string& scene, Device device, int width, int height,
                    Recipe recipe = Recipe::kDefault) {
  const GaussianCloud* cloud = Scene(scene);
  if (!cloud) {
    state.SkipWithError(("scene " + scene + " not found (set FLEXGS_DATA_DIR)").c_str());
    return;
  }
  if (!Backend(state, device)) return;
  TrainOptions options;
  options.width = width;
  options.height = height;
  options.orbit_views = 4;
  options.raster_factory = [device] { return CreateDifferentiableRasterBackend(device); };
  if (recipe == Recipe::kTunedOrbit) {
    options.tune_gaussians = true;
  } else {
    ViewDistribution views;
    views.width = width;
    views.height = height;
    options.view_sampling = views;
    options.nested = options.pose_at_insertion = recipe == Recipe::kNestedInsertion;
  }
  auto targets = MakeOrbitTargets(*cloud, options);
  if (!targets.ok()) {
    state.SkipWithError(std::string(targets.status().message()).c_str());
    return;
  }
  auto model = InitialElasticModel(*cloud, *targets, options);
  if (!model.ok()) {
    state.SkipWithError(std::string(model.status().message()).c_str());
    return;
  }
  auto trainer = ElasticTrainer::Create(*std::move(model), *std::move(targets), options);
  if (!trainer.ok()) {
    state.SkipWithError(std::string(trainer.status().message()).c_str());
    return;
  }
  // The first step computes GI over the targets: take it outside the timing.
  if (auto first = (*trainer)->Step(); !first.ok()) {
    state.SkipWithError(std::string(first.status().message()).c_str());
    return;
  }
  double seconds = 0, render_seconds = 0;
  for (auto _ : state) {
    auto step = (*trainer)->Step();
    if (!step.ok()) {
      state.SkipWithError(std::string(step.status().message()).c_str());
      return;
    }
    seconds += step->seconds;
    render_seconds += step->render_seconds;
  }
  state.counters["gaussians"] = static_cast<double>(cloud->size());
  // Share of a step in the renders (the device's part); the rest runs on the CPU.
  state.counters["render_share"] = seconds > 0 ? render_seconds / seconds : 0.0;
  state.counters["steps_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["minutes_for_35k"] = 35000.0 * seconds / static_cast<double>(state.iterations()) / 60.0;
}

#define FLEXGS_DIFF_BENCH(name, scene, device, w, h)                                                    \
  BENCHMARK_CAPTURE(BM_Differentiable, name##_forward, std::string(scene), false, device, w, h)         \
      ->Unit(benchmark::kMillisecond)                                                                   \
      ->UseRealTime();                                                                                  \
  BENCHMARK_CAPTURE(BM_Differentiable, name##_forward_backward, std::string(scene), true, device, w, h) \
      ->Unit(benchmark::kMillisecond)                                                                   \
      ->UseRealTime()

FLEXGS_DIFF_BENCH(guitar_cpu, "guitar.ply", Device::kCpu, 256, 256);
FLEXGS_DIFF_BENCH(synthetic_90k_sh3_cpu, "synthetic_90k_sh3", Device::kCpu, 256, 256);
FLEXGS_DIFF_BENCH(guitar_cuda, "guitar.ply", Device::kCuda, 256, 256);
FLEXGS_DIFF_BENCH(synthetic_90k_sh3_cuda, "synthetic_90k_sh3", Device::kCuda, 256, 256);
FLEXGS_DIFF_BENCH(synthetic_1m_720p_cuda, "synthetic_1m", Device::kCuda, 1280, 720);

BENCHMARK_CAPTURE(BM_TrainerStep, guitar_256_cpu, std::string("guitar.ply"), Device::kCpu, 256, 256)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(10);
BENCHMARK_CAPTURE(BM_TrainerStep, guitar_256_cpu_tuned_orbit, std::string("guitar.ply"), Device::kCpu, 256, 256,
                  Recipe::kTunedOrbit)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(10);
BENCHMARK_CAPTURE(BM_TrainerStep, guitar_256_cpu_nested_insertion, std::string("guitar.ply"), Device::kCpu, 256, 256,
                  Recipe::kNestedInsertion)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(10);
BENCHMARK_CAPTURE(BM_TrainerStep, synthetic_1m_720p_cpu, std::string("synthetic_1m"), Device::kCpu, 1280, 720)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(2);
BENCHMARK_CAPTURE(BM_TrainerStep, guitar_256_cuda, std::string("guitar.ply"), Device::kCuda, 256, 256)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(20);
BENCHMARK_CAPTURE(BM_TrainerStep, synthetic_1m_720p_cuda, std::string("synthetic_1m"), Device::kCuda, 1280, 720)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(10);

}  // namespace
}  // namespace flexgs

BENCHMARK_MAIN();

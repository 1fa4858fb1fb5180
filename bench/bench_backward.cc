// Differentiable CPU rasterizer at 256x256, the stage-2 trainer's inner loop: forward
// alone and forward + backward (all parameter gradients) on guitar.ply and on a
// guitar-sized synthetic scene with SH degree 3, over 8 orbit views.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include <benchmark/benchmark.h>

#include "core/orbit.h"
#include "core/ply_io.h"
#include "core/rasterizer_backward.h"
#include "core/synthetic_scene.h"

namespace flexgs {
namespace {

const GaussianCloud* Scene(const std::string& name) {
  static std::map<std::string, std::unique_ptr<GaussianCloud>> cache;
  auto& slot = cache[name];
  if (!slot) {
    if (name == "synthetic_90k_sh3") {
      // The guitar's Gaussian count, with every SH band in play.
      slot = std::make_unique<GaussianCloud>(MakeSyntheticScene({.count = 90'854, .sh_degree = 3, .seed = 1}));
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

void BM_Differentiable(benchmark::State& state, const std::string& scene, bool backward) {
  const GaussianCloud* cloud = Scene(scene);
  if (!cloud) {
    state.SkipWithError(("scene " + scene + " not found (set FLEXGS_DATA_DIR)").c_str());
    return;
  }
  OrbitOptions orbit;
  orbit.count = 8;
  orbit.width = 256;
  orbit.height = 256;
  auto cams = MakeOrbitCameras(*cloud, orbit);
  if (!cams.ok()) {
    state.SkipWithError(std::string(cams.status().message()).c_str());
    return;
  }
  DifferentiableRasterizer rasterizer;  // all hardware threads
  RenderOptions opt;
  // A fixed dL/dImage, as an L2 loss against some target would give.
  std::vector<float> grad_image(static_cast<size_t>(orbit.width) * orbit.height * 3);
  SplitMix64 rng(1);
  for (float& g : grad_image) g = static_cast<float>(rng.Uniform(-1e-3, 1e-3));
  CloudGradients grads;
  size_t view = 0, intersections = 0;
  for (auto _ : state) {
    auto r = rasterizer.Forward(*cloud, (*cams)[view++ % cams->size()], opt);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    intersections += r->intersections;
    if (backward) {
      const absl::Status st = rasterizer.Backward(grad_image, &grads);
      if (!st.ok()) {
        state.SkipWithError(std::string(st.message()).c_str());
        return;
      }
      benchmark::DoNotOptimize(grads.positions.data());
    }
    benchmark::DoNotOptimize(r->color.pixels.data());
  }
  state.counters["gaussians"] = static_cast<double>(cloud->size());
  state.counters["threads"] = rasterizer.pool().size();
  state.counters["fps"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["isect_per_frame"] = static_cast<double>(intersections) / state.iterations();
}

BENCHMARK_CAPTURE(BM_Differentiable, guitar_forward, std::string("guitar.ply"), false)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Differentiable, guitar_forward_backward, std::string("guitar.ply"), true)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Differentiable, synthetic_90k_sh3_forward, std::string("synthetic_90k_sh3"), false)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Differentiable, synthetic_90k_sh3_forward_backward, std::string("synthetic_90k_sh3"), true)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace flexgs

BENCHMARK_MAIN();

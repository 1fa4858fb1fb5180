// Forward rasterization throughput at 1280x720: guitar.ply and a synthetic 1M scene,
// on the CPU and (when a GPU is present) on CUDA. Results: bench/RESULTS.md.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include <benchmark/benchmark.h>

#include "io/ply_io.h"
#include "kernels/backend.h"
#include "scene/orbit.h"
#include "scene/synthetic_scene.h"

namespace flexgs {
namespace {

const GaussianCloud* Scene(const std::string& name) {
  static std::map<std::string, std::unique_ptr<GaussianCloud>> cache;
  auto& slot = cache[name];
  if (!slot) {
    if (name == "synthetic_1m") {
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

void BM_Render(benchmark::State& state, const std::string& scene, Device device) {
  const GaussianCloud* cloud = Scene(scene);
  if (!cloud) {
    state.SkipWithError(("scene " + scene + " not found (set FLEXGS_DATA_DIR)").c_str());
    return;
  }
  std::string why;
  if (device == Device::kCuda && !CudaAvailable(&why)) {
    state.SkipWithError(("CUDA not available: " + why).c_str());
    return;
  }
  auto backend = CreateRasterBackend(device);
  if (!backend.ok()) {
    state.SkipWithError(std::string(backend.status().message()).c_str());
    return;
  }
  OrbitOptions orbit;
  orbit.count = 8;
  orbit.width = 1280;
  orbit.height = 720;
  auto cams = MakeOrbitCameras(*cloud, orbit);
  if (!cams.ok()) {
    state.SkipWithError(std::string(cams.status().message()).c_str());
    return;
  }
  RenderOptions opt;
  size_t view = 0, intersections = 0;
  for (auto _ : state) {
    auto r = (*backend)->Render(*cloud, (*cams)[view++ % cams->size()], opt);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    intersections += r->intersections;
    benchmark::DoNotOptimize(r->color.pixels.data());
  }
  state.counters["gaussians"] = static_cast<double>(cloud->size());
  state.counters["gaussians_per_s"] =
      benchmark::Counter(static_cast<double>(cloud->size()) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["fps"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["isect_per_frame"] = static_cast<double>(intersections) / state.iterations();
}

BENCHMARK_CAPTURE(BM_Render, guitar_cpu, std::string("guitar.ply"), Device::kCpu)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Render, synthetic_1m_cpu, std::string("synthetic_1m"), Device::kCpu)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Render, guitar_cuda, std::string("guitar.ply"), Device::kCuda)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Render, synthetic_1m_cuda, std::string("synthetic_1m"), Device::kCuda)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace flexgs

BENCHMARK_MAIN();

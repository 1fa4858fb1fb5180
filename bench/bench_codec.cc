// Chunk codec throughput and size: whole scenes in Morton order, blocks of 4096
// Gaussians, one thread. MB/s are of raw float32 attributes (RawBytesPerGaussian) so
// encode and decode rates compare across encodings. Results: bench/RESULTS.md.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

#include <benchmark/benchmark.h>

#include "io/ply_io.h"
#include "scene/synthetic_scene.h"
#include "stream/chunk_codec.h"
#include "stream/level_planner.h"

namespace flexgs {
namespace {

constexpr size_t kBlock = 4096;

GaussianCloud MortonSorted(const GaussianCloud& c) {
  std::array<float, 3> lo{}, hi{};
  for (int d = 0; d < 3; ++d) {
    lo[d] = hi[d] = c.positions[d];
    for (size_t i = 0; i < c.size(); ++i) {
      lo[d] = std::min(lo[d], c.positions[i * 3 + d]);
      hi[d] = std::max(hi[d], c.positions[i * 3 + d]);
    }
  }
  std::vector<std::pair<uint64_t, uint32_t>> order;
  for (size_t i = 0; i < c.size(); ++i)
    order.push_back({MortonCode(&c.positions[i * 3], lo, hi), static_cast<uint32_t>(i)});
  std::sort(order.begin(), order.end());
  std::vector<uint32_t> idx;
  for (const auto& o : order) idx.push_back(o.second);
  return c.Gather(idx);
}

// Scenes in send (Morton) order, loaded once.
const GaussianCloud* Scene(const std::string& name) {
  static std::map<std::string, std::unique_ptr<GaussianCloud>> cache;
  auto& slot = cache[name];
  if (!slot) {
    if (name == "synthetic_1m") {
      slot = std::make_unique<GaussianCloud>(
          MortonSorted(MakeSyntheticScene({.count = 1'000'000, .sh_degree = 3, .seed = 1})));
    } else {
      const char* env = std::getenv("FLEXGS_DATA_DIR");
      const std::filesystem::path dir = env ? env : FLEXGS_DATA_DIR;
      auto cloud = ReadGaussianPly((dir / name).string());
      if (!cloud.ok()) return nullptr;
      slot = std::make_unique<GaussianCloud>(MortonSorted(*cloud));
    }
  }
  return slot.get();
}

std::vector<std::string> EncodeScene(const GaussianCloud& c, ChunkEncoding enc) {
  std::vector<std::string> blocks;
  for (size_t b = 0; b < c.size(); b += kBlock)
    blocks.push_back(EncodeGaussianBlock(c, b, std::min(c.size(), b + kBlock), enc, c.sh_degree));
  return blocks;
}

void SetCounters(benchmark::State& state, const GaussianCloud& c, const std::vector<std::string>& blocks) {
  size_t bytes = 0;
  for (const std::string& b : blocks) bytes += b.size();
  const double raw = static_cast<double>(RawBytesPerGaussian(c.sh_degree)) * c.size();
  state.counters["B_per_G"] = static_cast<double>(bytes) / c.size();
  state.counters["ratio"] = raw / bytes;
  state.counters["raw_MB_per_s"] = benchmark::Counter(raw * state.iterations() / 1e6, benchmark::Counter::kIsRate);
  state.counters["gaussians"] = static_cast<double>(c.size());
}

void BM_Encode(benchmark::State& state, const std::string& scene, ChunkEncoding enc) {
  const GaussianCloud* c = Scene(scene);
  if (!c) {
    state.SkipWithError(("scene " + scene + " not found (set FLEXGS_DATA_DIR)").c_str());
    return;
  }
  std::vector<std::string> blocks;
  for (auto _ : state) {
    blocks = EncodeScene(*c, enc);
    benchmark::DoNotOptimize(blocks.data());
  }
  SetCounters(state, *c, blocks);
}

void BM_Decode(benchmark::State& state, const std::string& scene, ChunkEncoding enc) {
  const GaussianCloud* c = Scene(scene);
  if (!c) {
    state.SkipWithError(("scene " + scene + " not found (set FLEXGS_DATA_DIR)").c_str());
    return;
  }
  const std::vector<std::string> blocks = EncodeScene(*c, enc);
  for (auto _ : state) {
    for (const std::string& b : blocks) {
      auto cloud = DecodeGaussianBlock(b);
      if (!cloud.ok()) {
        state.SkipWithError(std::string(cloud.status().message()).c_str());
        return;
      }
      benchmark::DoNotOptimize(cloud->positions.data());
    }
  }
  SetCounters(state, *c, blocks);
}

#define FLEXGS_CODEC_BENCH(scene_name, file)                                                         \
  BENCHMARK_CAPTURE(BM_Encode, scene_name##_quantized, std::string(file), ChunkEncoding::kQuantized) \
      ->Unit(benchmark::kMillisecond)                                                                \
      ->UseRealTime();                                                                               \
  BENCHMARK_CAPTURE(BM_Decode, scene_name##_quantized, std::string(file), ChunkEncoding::kQuantized) \
      ->Unit(benchmark::kMillisecond)                                                                \
      ->UseRealTime();                                                                               \
  BENCHMARK_CAPTURE(BM_Encode, scene_name##_lossless, std::string(file), ChunkEncoding::kLossless)   \
      ->Unit(benchmark::kMillisecond)                                                                \
      ->UseRealTime();                                                                               \
  BENCHMARK_CAPTURE(BM_Decode, scene_name##_lossless, std::string(file), ChunkEncoding::kLossless)   \
      ->Unit(benchmark::kMillisecond)                                                                \
      ->UseRealTime()

FLEXGS_CODEC_BENCH(guitar, "guitar.ply");
FLEXGS_CODEC_BENCH(sh3_9k, "sh3-9k.ply");
FLEXGS_CODEC_BENCH(synthetic_1m, "synthetic_1m");

}  // namespace
}  // namespace flexgs

BENCHMARK_MAIN();

#include "render/global_importance.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "render/internal/tile_blend.h"

namespace flexgs {
namespace {

constexpr double kFixedPointScale = 4294967296.0;  // 2^32

// Accumulates opacity * T per Gaussian within one tile, in tile-list order.
struct ImportanceVisitor {
  const RasterFrame* frame;
  std::vector<double>* partial;    // indexed by Gaussian id, reset per tile
  std::vector<uint32_t>* touched;  // ids with a non-zero partial in this tile
  void Composite(int, uint32_t id, float, float t_before) {
    double& slot = (*partial)[id];
    if (slot == 0.0) touched->push_back(id);
    slot += static_cast<double>(frame->projected[id].opacity) * t_before;
  }
};

}  // namespace

std::vector<float> ApplyVolumeWeighting(const GaussianCloud& cloud, const std::vector<float>& scores, double power) {
  const size_t n = cloud.size();
  std::vector<double> volume(n);
  for (size_t i = 0; i < n; ++i) {
    const float* s = &cloud.log_scales[i * 3];
    volume[i] = std::exp(static_cast<double>(s[0]) + s[1] + s[2]);
  }
  std::vector<double> sorted = volume;
  const size_t k = std::min(n - 1, static_cast<size_t>(0.9 * static_cast<double>(n)));
  std::nth_element(sorted.begin(), sorted.begin() + k, sorted.end(), std::greater<double>());
  const double v_ref = std::max(sorted[k], 1e-30);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(scores[i] * std::pow(volume[i] / v_ref, power));
  return out;
}

absl::StatusOr<std::vector<float>> ComputeGlobalImportance(const GaussianCloud& cloud,
                                                           const std::vector<Camera>& cameras,
                                                           const GlobalImportanceOptions& options,
                                                           CpuRasterizer& rasterizer) {
  if (cameras.empty()) return absl::InvalidArgumentError("Global Importance needs at least one camera");
  const size_t n = cloud.size();
  std::vector<uint64_t> fixed(n, 0);
  RasterFrame frame;
  ThreadPool& pool = rasterizer.pool();
  // Per-worker scratch: a dense partial-sum array (reset sparsely via `touched`).
  std::vector<std::vector<double>> partial(pool.size(), std::vector<double>(n, 0.0));
  std::vector<std::vector<uint32_t>> touched(pool.size());
  constexpr int kPixels = raster::kTileSize * raster::kTileSize;
  for (const Camera& cam : cameras) {
    FLEXGS_RETURN_IF_ERROR(rasterizer.Prepare(cloud, cam, options.render, frame));
    const size_t tiles = static_cast<size_t>(frame.tiles_x) * frame.tiles_y;
    pool.ParallelFor(tiles, 1, [&](size_t tb, size_t te, int worker) {
      ImportanceVisitor v{&frame, &partial[worker], &touched[worker]};
      float T[kPixels];
      for (size_t t = tb; t < te; ++t) {
        std::fill(T, T + kPixels, 1.0f);
        touched[worker].clear();
        BlendTile(frame, t, T, v);
        for (uint32_t id : touched[worker]) {
          double& slot = partial[worker][id];
          const uint64_t q = static_cast<uint64_t>(std::llround(slot * kFixedPointScale));
          __atomic_fetch_add(&fixed[id], q, __ATOMIC_RELAXED);
          slot = 0.0;
        }
      }
    });
  }
  std::vector<float> gi(n);
  for (size_t i = 0; i < n; ++i) gi[i] = static_cast<float>(static_cast<double>(fixed[i]) / kFixedPointScale);
  if (options.variant == GiVariant::kLightGaussianVolume) gi = ApplyVolumeWeighting(cloud, gi, options.volume_power);
  return gi;
}

}  // namespace flexgs

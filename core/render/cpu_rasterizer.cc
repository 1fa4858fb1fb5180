#include "render/cpu_rasterizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "render/internal/tile_blend.h"

namespace flexgs {
namespace {

using raster::kTileSize;
constexpr int kTilePixels = kTileSize * kTileSize;
// Gaussians per binning chunk. Any chunking yields the same per-tile order because
// each tile's list is finally sorted by (depth, id); chunks only bound scratch size.
constexpr size_t kBinChunk = 1 << 15;

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

}  // namespace

CpuRasterizer::CpuRasterizer(int threads) : pool_(threads) {}

absl::Status CpuRasterizer::Prepare(const GaussianCloud& cloud, const Camera& camera, const RenderOptions& options,
                                    RasterFrame& frame, absl::Span<const float> opacity_scale) {
  FLEXGS_RETURN_IF_ERROR(cloud.Validate());
  FLEXGS_RETURN_IF_ERROR(camera.Validate());
  if (!opacity_scale.empty() && opacity_scale.size() != cloud.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("opacity_scale has ", opacity_scale.size(), " values for ", cloud.size(), " Gaussians"));
  }
  const raster::CameraParams cam = ToCameraParams(camera, options.near_plane);
  const size_t n = cloud.size();
  frame.width = camera.width;
  frame.height = camera.height;
  frame.tiles_x = (camera.width + kTileSize - 1) / kTileSize;
  frame.tiles_y = (camera.height + kTileSize - 1) / kTileSize;
  const size_t tiles = static_cast<size_t>(frame.tiles_x) * frame.tiles_y;
  frame.projected.resize(n);
  frame.visible.assign(n, 0);
  frame.colors.resize(n * 3);

  // Stage 1: projection and colour, independent per Gaussian.
  const int sh_degree = std::max(0, std::min(options.max_sh_degree, cloud.sh_degree));
  const int k = cloud.rest_coeffs();
  pool_.ParallelFor(n, 4096, [&](size_t begin, size_t end, int) {
    for (size_t i = begin; i < end; ++i) {
      raster::Projected& p = frame.projected[i];
      if (!raster::ProjectGaussian(&cloud.positions[i * 3], &cloud.log_scales[i * 3], &cloud.rotations[i * 4],
                                   cloud.opacity_logits[i], cam, options.radius_mode, &p,
                                   opacity_scale.empty() ? 1.0f : opacity_scale[i])) {
        continue;
      }
      int x0, y0, x1, y1;
      raster::TileRect(p, frame.tiles_x, frame.tiles_y, &x0, &y0, &x1, &y1);
      if (x1 <= x0 || y1 <= y0) continue;
      frame.visible[i] = 1;
      const float* pos = &cloud.positions[i * 3];
      raster::EvalShColor(sh_degree, &cloud.sh_dc[i * 3], k > 0 ? &cloud.sh_rest[i * 3 * k] : nullptr, k,
                          pos[0] - cam.campos[0], pos[1] - cam.campos[1], pos[2] - cam.campos[2], &frame.colors[i * 3]);
    }
  });

  // Stage 2: bin into tiles. Per-chunk tile histograms, then a prefix over
  // (tile, chunk) so each chunk writes its ids to a disjoint range in id order.
  const size_t chunks = (n + kBinChunk - 1) / kBinChunk;
  std::vector<uint32_t> counts(chunks * tiles, 0);
  auto for_each_tile = [&](size_t i, auto&& fn) {
    int x0, y0, x1, y1;
    raster::TileRect(frame.projected[i], frame.tiles_x, frame.tiles_y, &x0, &y0, &x1, &y1);
    for (int ty = y0; ty < y1; ++ty)
      for (int tx = x0; tx < x1; ++tx) fn(static_cast<size_t>(ty) * frame.tiles_x + tx);
  };
  pool_.ParallelFor(chunks, 1, [&](size_t cb, size_t ce, int) {
    for (size_t c = cb; c < ce; ++c) {
      uint32_t* hist = &counts[c * tiles];
      const size_t end = std::min(n, (c + 1) * kBinChunk);
      for (size_t i = c * kBinChunk; i < end; ++i)
        if (frame.visible[i]) for_each_tile(i, [&](size_t t) { ++hist[t]; });
    }
  });
  frame.tile_offsets.assign(tiles + 1, 0);
  uint64_t total = 0;
  for (size_t t = 0; t < tiles; ++t) {
    frame.tile_offsets[t] = static_cast<uint32_t>(total);
    for (size_t c = 0; c < chunks; ++c) {
      const uint32_t cnt = counts[c * tiles + t];
      counts[c * tiles + t] = static_cast<uint32_t>(total);  // becomes the write cursor
      total += cnt;
    }
  }
  if (total > 0xFFFFFFFFull) {
    return absl::ResourceExhaustedError(absl::StrCat("render needs ", total, " tile intersections (max 2^32)"));
  }
  frame.tile_offsets[tiles] = static_cast<uint32_t>(total);
  frame.tile_ids.resize(total);
  pool_.ParallelFor(chunks, 1, [&](size_t cb, size_t ce, int) {
    for (size_t c = cb; c < ce; ++c) {
      uint32_t* cursor = &counts[c * tiles];
      const size_t end = std::min(n, (c + 1) * kBinChunk);
      for (size_t i = c * kBinChunk; i < end; ++i)
        if (frame.visible[i])
          for_each_tile(i, [&](size_t t) { frame.tile_ids[cursor[t]++] = static_cast<uint32_t>(i); });
    }
  });

  // Stage 3: sort every tile by (depth, id). Depth > near > 0, so its float bits
  // order like the value and one 64-bit key sort gives a total, stable order.
  std::vector<std::vector<uint64_t>> keys(pool_.size());
  pool_.ParallelFor(tiles, 8, [&](size_t tb, size_t te, int worker) {
    std::vector<uint64_t>& key = keys[worker];
    for (size_t t = tb; t < te; ++t) {
      const uint32_t b = frame.tile_offsets[t], e = frame.tile_offsets[t + 1];
      if (e - b < 2) continue;
      key.resize(e - b);
      for (uint32_t j = b; j < e; ++j) {
        const uint32_t id = frame.tile_ids[j];
        key[j - b] = (static_cast<uint64_t>(FloatBits(frame.projected[id].depth)) << 32) | id;
      }
      std::sort(key.begin(), key.end());
      for (uint32_t j = b; j < e; ++j) frame.tile_ids[j] = static_cast<uint32_t>(key[j - b]);
    }
  });
  uint64_t key_bytes = 0;
  for (const auto& k : keys) key_bytes += k.capacity() * sizeof(uint64_t);
  // The histograms are still alive while the keys exist: the peak is their sum.
  transient_bytes_ = counts.capacity() * sizeof(uint32_t) + key_bytes;
  return absl::OkStatus();
}

uint64_t CpuRasterizer::ScratchBytes() const {
  const RasterFrame& f = frame_;
  return f.projected.capacity() * sizeof(raster::Projected) + f.visible.capacity() +
         f.colors.capacity() * sizeof(float) + f.tile_offsets.capacity() * sizeof(uint32_t) +
         f.tile_ids.capacity() * sizeof(uint32_t) + f.sort_depths.capacity() * sizeof(float) + transient_bytes_;
}

absl::StatusOr<RenderResult> CpuRasterizer::Render(const GaussianCloud& cloud, const Camera& camera,
                                                   const RenderOptions& options) {
  FLEXGS_RETURN_IF_ERROR(Prepare(cloud, camera, options, frame_));
  return Composite(frame_, options);
}

RenderResult CpuRasterizer::Composite(const RasterFrame& f, const RenderOptions& options) {
  const int width = f.width, height = f.height;
  RenderResult result;
  result.color = Image(width, height, 3);
  result.final_transmittance.assign(static_cast<size_t>(width) * height, 1.0f);
  result.contributors.assign(static_cast<size_t>(width) * height, 0);
  for (uint8_t v : f.visible) result.visible += v;
  result.intersections = f.tile_ids.size();
  const float bg[3] = {options.background[0], options.background[1], options.background[2]};

  // Stage 4: blend, tile by tile (see tile_blend.h).
  struct ColorVisitor {
    const float* colors;
    float C[kTilePixels][3];
    uint32_t count[kTilePixels];
    void Composite(int j, uint32_t id, float alpha, float t_before) {
      const float* col = &colors[static_cast<size_t>(id) * 3];
      const float w = alpha * t_before;
      C[j][0] += col[0] * w;
      C[j][1] += col[1] * w;
      C[j][2] += col[2] * w;
      ++count[j];
    }
  };
  const size_t tiles = static_cast<size_t>(f.tiles_x) * f.tiles_y;
  pool_.ParallelFor(tiles, 1, [&](size_t tb, size_t te, int) {
    ColorVisitor v;
    v.colors = f.colors.data();
    float T[kTilePixels];
    for (size_t t = tb; t < te; ++t) {
      std::fill(&v.C[0][0], &v.C[0][0] + kTilePixels * 3, 0.0f);
      std::fill(v.count, v.count + kTilePixels, 0u);
      std::fill(T, T + kTilePixels, 1.0f);
      BlendTile(f, t, T, v);
      const TileBounds b = TileBoundsOf(f, t);
      for (int y = 0; y < b.h; ++y) {
        for (int x = 0; x < b.w; ++x) {
          const int j = y * kTileSize + x;
          const size_t pix = static_cast<size_t>(b.y0 + y) * width + (b.x0 + x);
          float* out = &result.color.pixels[pix * 3];
          for (int c = 0; c < 3; ++c) out[c] = v.C[j][c] + T[j] * bg[c];
          result.final_transmittance[pix] = T[j];
          result.contributors[pix] = v.count[j];
        }
      }
    }
  });
  return result;
}

}  // namespace flexgs

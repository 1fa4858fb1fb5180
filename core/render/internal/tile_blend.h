// BlendTile: the front-to-back compositing loop of one 16x16 tile, shared by every
// CPU consumer of the rasterizer (colour rendering, Global Importance, training),
// so the alpha/transmittance rules live in exactly one place.
//
// For each pixel the tile's depth-sorted Gaussians are visited in order; a Gaussian
// is composited when alpha = min(0.99, opacity * exp(power)) >= 1/255 and the
// transmittance after it stays >= 1e-4 (otherwise the pixel is finished, and that
// Gaussian is excluded, as in the reference rasterizers). The visitor sees each
// composited (pixel, Gaussian) pair with the transmittance *before* it.
#pragma once

#include <algorithm>
#include <cmath>

#include "render/cpu_rasterizer.h"
#include "render/raster_math.h"

namespace flexgs {

struct TileBounds {
  int x0, y0;  // first pixel of the tile
  int w, h;    // pixels inside the image (edge tiles are smaller)
};

inline TileBounds TileBoundsOf(const RasterFrame& f, size_t tile) {
  TileBounds b;
  b.x0 = static_cast<int>(tile % f.tiles_x) * raster::kTileSize;
  b.y0 = static_cast<int>(tile / f.tiles_x) * raster::kTileSize;
  b.w = std::min(raster::kTileSize, f.width - b.x0);
  b.h = std::min(raster::kTileSize, f.height - b.y0);
  return b;
}

// Visitor interface (duck-typed):
//   void Composite(int j, uint32_t id, float alpha, float t_before);  // j = pixel in tile
// `T` (size kTileSize^2) holds per-pixel transmittance and is updated here; the caller
// initialises it to 1 and reads the final values afterwards.
template <class Visitor>
void BlendTile(const RasterFrame& f, size_t tile, float* T, Visitor& visitor) {
  constexpr int kPixels = raster::kTileSize * raster::kTileSize;
  const TileBounds tb = TileBoundsOf(f, tile);
  bool done[kPixels] = {};
  int remaining = tb.w * tb.h;
  for (uint32_t s = f.tile_offsets[tile]; s < f.tile_offsets[tile + 1] && remaining > 0; ++s) {
    const uint32_t id = f.tile_ids[s];
    const raster::Projected& p = f.projected[id];
    // Only pixels where opacity * exp(power) >= 1/255 can be affected: the ellipse
    // {power >= -s}, s = ln(255 opacity). Rows and, per row, the x span of that
    // ellipse are solved in closed form on a slightly enlarged level set (and one
    // pixel of margin), so rounding can never drop a pixel that passes the exact
    // alpha test below; pixels outside are skipped without evaluating exp().
    const float s_level = logf(p.opacity / raster::kAlphaMin);
    const float a = p.conic_a, b = p.conic_b, c = p.conic_c;
    const float det = a * c - b * b;
    if (!(s_level > 0.0f) || !(det > 0.0f) || !(a > 0.0f)) continue;
    const float s_span = s_level * 1.02f + 0.01f;
    const float ey = sqrtf(2.0f * s_span * a / det) + 1.0f;
    const int py0 = std::max(tb.y0, static_cast<int>(ceilf(p.mean_y - ey - 0.5f)));
    const int py1 = std::min(tb.y0 + tb.h - 1, static_cast<int>(floorf(p.mean_y + ey - 0.5f)));
    // Below this power alpha < 1/255 for sure (exp is accurate to ~1 ulp).
    const float skip_power = -(s_level + 1e-3f);
    for (int py = py0; py <= py1; ++py) {
      // a dx^2 + 2 b dy dx + c dy^2 <= 2 s  ->  dx in [(-b dy - r)/a, (-b dy + r)/a]
      const float dy = p.mean_y - (static_cast<float>(py) + 0.5f);
      const float disc = b * b * dy * dy - a * (c * dy * dy - 2.0f * s_span);
      if (disc < 0.0f) continue;
      const float r = sqrtf(disc);
      const float dx_lo = (-b * dy - r) / a, dx_hi = (-b * dy + r) / a;
      // dx = mean_x - (px + 0.5): pixel centres from mean_x - dx_hi to mean_x - dx_lo.
      const int px0 = std::max(tb.x0, static_cast<int>(ceilf(p.mean_x - dx_hi - 1.5f)));
      const int px1 = std::min(tb.x0 + tb.w - 1, static_cast<int>(floorf(p.mean_x - dx_lo + 0.5f)));
      for (int px = px0; px <= px1; ++px) {
        const int j = (py - tb.y0) * raster::kTileSize + (px - tb.x0);
        if (done[j]) continue;
        const float power = raster::FalloffPower(p, px, py);
        if (power > 0.0f || power < skip_power) continue;
        const float alpha = raster::BlendAlpha(p.opacity, power);
        if (alpha < raster::kAlphaMin) continue;
        const float next_t = T[j] * (1.0f - alpha);
        if (next_t < raster::kTransmittanceMin) {
          done[j] = true;
          --remaining;
          continue;
        }
        visitor.Composite(j, id, alpha, T[j]);
        T[j] = next_t;
      }
    }
  }
}

}  // namespace flexgs

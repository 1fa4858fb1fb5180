#include "render/rasterizer_backward.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "render/internal/tile_blend.h"
#include "render/raster_math.h"

namespace flexgs {
namespace {

using raster::kTileSize;
constexpr int kTilePixels = kTileSize * kTileSize;

// A (Gaussian, tile) gradient cell has the layout of raster::BlendStepBackward's output.
using raster::kIsectFloats;

// Records what BlendTile composites in tile (tx, ty), with the Gaussian's gradient cell for
// this tile: Gaussian i owns cells cell_offsets[i] + (row-major index of the tile in its
// TileRect), the tiles Prepare listed it in. Calls come grouped by Gaussian.
template <class Record>
struct RecordVisitor {
  const RasterFrame* frame;
  const uint32_t* cell_offsets;
  int tx, ty;
  std::vector<Record>* out;
  uint32_t last_id = ~0u, last_cell = 0;
  void Composite(int j, uint32_t id, float alpha, float t_before) {
    if (id != last_id) {
      int x0, y0, x1, y1;
      raster::TileRect(frame->projected[id], frame->tiles_x, frame->tiles_y, &x0, &y0, &x1, &y1);
      last_cell = cell_offsets[id] + static_cast<uint32_t>((ty - y0) * (x1 - x0) + (tx - x0));
      last_id = id;
    }
    out->push_back({id, last_cell, static_cast<uint32_t>(j), alpha, t_before});
  }
};

}  // namespace

void CloudGradients::ResizeLike(const GaussianCloud& cloud, bool with_opacity_scale) {
  const size_t n = cloud.size();
  positions.assign(n * 3, 0.0f);
  log_scales.assign(n * 3, 0.0f);
  rotations.assign(n * 4, 0.0f);
  opacity_logits.assign(n, 0.0f);
  sh_dc.assign(n * 3, 0.0f);
  sh_rest.assign(n * 3 * static_cast<size_t>(cloud.rest_coeffs()), 0.0f);
  opacity_scale.assign(with_opacity_scale ? n : 0, 0.0f);
  background = {0.0f, 0.0f, 0.0f};
}

absl::Status ValidateOpacityScale(absl::Span<const float> scale, size_t count) {
  if (scale.empty()) return absl::OkStatus();
  if (scale.size() != count) {
    return absl::InvalidArgumentError(
        absl::StrCat("opacity_scale has ", scale.size(), " values for ", count, " Gaussians"));
  }
  for (size_t i = 0; i < scale.size(); ++i) {
    if (!(scale[i] >= 0.0f && scale[i] <= 1.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("opacity_scale[", i, "] = ", scale[i], " is outside [0, 1]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateImageGradient(absl::Span<const float> grad_image, int width, int height) {
  const size_t floats = static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  if (grad_image.size() == floats) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("grad_image has ", grad_image.size(),
                                                 " floats, expected width*height*3 = ", width, "*", height,
                                                 "*3 = ", floats));
}

DifferentiableRasterizer::DifferentiableRasterizer(int threads) : raster_(threads) {}

absl::StatusOr<RenderResult> DifferentiableRasterizer::Forward(const GaussianCloud& cloud, const Camera& camera,
                                                               const RenderOptions& options,
                                                               const ForwardInputs& inputs) {
  ready_ = false;
  cloud_ = nullptr;
  const absl::Span<const float> scale = inputs.opacity_scale;
  FLEXGS_RETURN_IF_ERROR(ValidateOpacityScale(scale, cloud.size()));
  FLEXGS_RETURN_IF_ERROR(raster_.Prepare(cloud, camera, options, frame_, scale));
  RenderResult result = raster_.Composite(frame_, options);
  cloud_ = &cloud;
  cloud_size_ = cloud.size();
  cloud_sh_degree_ = cloud.sh_degree;
  options_ = options;
  cam_ = ToCameraParams(camera, options.near_plane);
  opacity_scale_.assign(scale.begin(), scale.end());
  ready_ = true;
  return result;
}

absl::Status DifferentiableRasterizer::Backward(absl::Span<const float> grad_image, CloudGradients* grads) {
  if (!ready_) return absl::FailedPreconditionError("Backward needs a successful Forward first");
  if (grads == nullptr) return absl::InvalidArgumentError("grads must not be null");
  const RasterFrame& f = frame_;
  FLEXGS_RETURN_IF_ERROR(ValidateImageGradient(grad_image, f.width, f.height));
  const GaussianCloud& cloud = *cloud_;
  if (cloud.size() != cloud_size_ || cloud.sh_degree != cloud_sh_degree_) {
    return absl::FailedPreconditionError("the cloud changed between Forward and Backward");
  }
  const size_t n = cloud.size();
  const bool has_scale = !opacity_scale_.empty();
  grads->ResizeLike(cloud, has_scale);
  ThreadPool& pool = raster_.pool();
  const size_t tiles = static_cast<size_t>(f.tiles_x) * f.tiles_y;
  const float bg[3] = {options_.background[0], options_.background[1], options_.background[2]};
  records_.resize(pool.size());
  tile_background_.assign(tiles * 3, 0.0);
  // Cells of Gaussians that composite nothing in a tile are never written: start from 0.
  isect_grads_.resize(f.tile_ids.size() * kIsectFloats);
  constexpr size_t kZeroChunk = 1 << 16;
  pool.ParallelFor((isect_grads_.size() + kZeroChunk - 1) / kZeroChunk, 1, [&](size_t cb, size_t ce, int) {
    std::fill(isect_grads_.begin() + cb * kZeroChunk,
              isect_grads_.begin() + std::min(isect_grads_.size(), ce * kZeroChunk), 0.0f);
  });

  // Gaussian-major cells: Gaussian i owns one cell per tile of its rect (exactly the tiles
  // Prepare listed it in), so its gradients end up contiguous and in tile order.
  cell_offsets_.assign(n + 1, 0);
  pool.ParallelFor(n, 4096, [&](size_t ib, size_t ie, int) {
    for (size_t i = ib; i < ie; ++i) {
      if (!f.visible[i]) continue;
      int x0, y0, x1, y1;
      raster::TileRect(f.projected[i], f.tiles_x, f.tiles_y, &x0, &y0, &x1, &y1);
      cell_offsets_[i + 1] = static_cast<uint32_t>((x1 - x0) * (y1 - y0));
    }
  });
  for (size_t i = 0; i < n; ++i) cell_offsets_[i + 1] += cell_offsets_[i];
  if (cell_offsets_[n] != f.tile_ids.size()) return absl::InternalError("tile lists do not match the footprints");

  // Pass 1, per tile: replay the forward blend, then walk the contributions back to front.
  pool.ParallelFor(tiles, 1, [&](size_t tb, size_t te, int worker) {
    std::vector<Record>& rec = records_[worker];
    float T[kTilePixels];
    float behind[kTilePixels][3];  // colour seen behind the current Gaussian, background included
    for (size_t t = tb; t < te; ++t) {
      rec.clear();
      std::fill(T, T + kTilePixels, 1.0f);
      RecordVisitor<Record> visitor{&f, cell_offsets_.data(), static_cast<int>(t % f.tiles_x),
                                    static_cast<int>(t / f.tiles_x), &rec};
      BlendTile(f, t, T, visitor);
      const TileBounds bounds = TileBoundsOf(f, t);
      // Background: C = sum_k c_k alpha_k T_k + T_final * bg.
      double* tbg = &tile_background_[t * 3];
      for (int y = 0; y < bounds.h; ++y) {
        for (int x = 0; x < bounds.w; ++x) {
          const int j = y * kTileSize + x;
          const float* g = &grad_image[(static_cast<size_t>(bounds.y0 + y) * f.width + bounds.x0 + x) * 3];
          for (int ch = 0; ch < 3; ++ch) {
            tbg[ch] += static_cast<double>(g[ch]) * T[j];
            behind[j][ch] = bg[ch];
          }
        }
      }
      for (size_t r = rec.size(); r-- > 0;) {
        const Record& e = rec[r];
        const raster::Projected& p = f.projected[e.id];
        const float* col = &f.colors[static_cast<size_t>(e.id) * 3];
        const int px = bounds.x0 + static_cast<int>(e.pixel % kTileSize);
        const int py = bounds.y0 + static_cast<int>(e.pixel / kTileSize);
        const float* g = &grad_image[(static_cast<size_t>(py) * f.width + px) * 3];
        float* out = &isect_grads_[static_cast<size_t>(e.cell) * kIsectFloats];
        raster::BlendStepBackward(p, col, px, py, e.alpha, e.t_before, g, behind[e.pixel], out);
      }
    }
  });
  double bg_sum[3] = {0.0, 0.0, 0.0};
  for (size_t t = 0; t < tiles; ++t)
    for (int ch = 0; ch < 3; ++ch) bg_sum[ch] += tile_background_[t * 3 + ch];
  for (int ch = 0; ch < 3; ++ch) grads->background[ch] = static_cast<float>(bg_sum[ch]);

  // Pass 2, per Gaussian: sum its cells in tile order, then back through colour, opacity
  // and projection.
  const int sh_degree = std::max(0, std::min(options_.max_sh_degree, cloud.sh_degree));
  const int k = cloud.rest_coeffs();
  pool.ParallelFor(n, 1024, [&](size_t ib, size_t ie, int) {
    for (size_t i = ib; i < ie; ++i) {
      if (!f.visible[i]) continue;
      double sum[kIsectFloats] = {};
      for (uint32_t c = cell_offsets_[i]; c < cell_offsets_[i + 1]; ++c) {
        const float* g = &isect_grads_[static_cast<size_t>(c) * kIsectFloats];
        for (int q = 0; q < kIsectFloats; ++q) sum[q] += g[q];
      }
      float gs[kIsectFloats];
      for (int q = 0; q < kIsectFloats; ++q) gs[q] = static_cast<float>(sum[q]);

      raster::GaussianBackward(gs, &cloud.positions[i * 3], &cloud.log_scales[i * 3], &cloud.rotations[i * 4],
                               cloud.opacity_logits[i], has_scale ? opacity_scale_[i] : 1.0f,
                               k > 0 ? &cloud.sh_rest[i * 3 * k] : nullptr, sh_degree, k, &f.colors[i * 3], cam_,
                               &grads->positions[i * 3], &grads->log_scales[i * 3], &grads->rotations[i * 4],
                               &grads->opacity_logits[i], has_scale ? &grads->opacity_scale[i] : nullptr,
                               &grads->sh_dc[i * 3], k > 0 ? &grads->sh_rest[i * 3 * k] : nullptr);
    }
  });
  return absl::OkStatus();
}

}  // namespace flexgs

// CpuRasterizer: the reference rasterizer and the real CPU fallback.
//
// Multi-threaded over tiles with a deterministic result (no atomics, no
// order-dependent reductions): every pixel blends its tile's depth-sorted list in
// the same order regardless of thread count. Scratch buffers are reused across
// renders, so steady-state rendering does not allocate per pixel or per frame.
#pragma once

#include <memory>
#include <vector>

#include "base/thread_pool.h"
#include "render/rasterizer.h"

namespace flexgs {

// Intermediate products of one render, exposed for GI, training and tests.
struct RasterFrame {
  int width = 0, height = 0, tiles_x = 0, tiles_y = 0;
  std::vector<raster::Projected> projected;  // per Gaussian (valid where visible[i])
  std::vector<uint8_t> visible;
  std::vector<float> colors;           // per Gaussian RGB (after SH)
  std::vector<uint32_t> tile_offsets;  // tiles+1 prefix offsets into tile_ids
  std::vector<uint32_t> tile_ids;      // Gaussian ids, per tile sorted by (depth, id)
  std::vector<float> sort_depths;      // scratch for sorting
};

class CpuRasterizer final : public RasterBackend {
 public:
  // `threads` = 0 uses all hardware threads.
  explicit CpuRasterizer(int threads = 0);

  std::string_view name() const override { return "cpu"; }
  absl::StatusOr<RenderResult> Render(const GaussianCloud& cloud, const Camera& camera,
                                      const RenderOptions& options) override;

  // Stages 1-3 (project, bin, sort) into `frame`; used by Render, GI and training.
  // `opacity_scale` (empty, or one value per Gaussian) multiplies each activated opacity.
  absl::Status Prepare(const GaussianCloud& cloud, const Camera& camera, const RenderOptions& options,
                       RasterFrame& frame, absl::Span<const float> opacity_scale = {});

  // Stage 4 (blend) of a prepared frame: Render == Prepare + Composite, so callers that
  // prepare with extra inputs still get the very same image.
  RenderResult Composite(const RasterFrame& frame, const RenderOptions& options);

  uint64_t ScratchBytes() const override;

  ThreadPool& pool() { return pool_; }

 private:
  ThreadPool pool_;
  RasterFrame frame_;
  uint64_t transient_bytes_ = 0;  // peak of Prepare's temporaries (histograms, sort keys)
};

}  // namespace flexgs

// DifferentiableRasterBackend: a rasterizer with its backward pass, for training, and
// DifferentiableRasterizer, its CPU implementation (the reference the CUDA one in kernels/
// is checked against; pick one with CreateDifferentiableRasterBackend in kernels/backend.h).
//
// Forward renders through CpuRasterizer::Prepare + Composite (the very code of
// CpuRasterizer::Render) and keeps the projected, binned and sorted frame. Backward
// replays each tile's front-to-back blend with BlendTile, so the 1/255 alpha threshold,
// the 0.99 alpha clamp and early termination select exactly the contributions the
// forward made, then walks them back to front as the INRIA/gsplat backward does and
// pulls the screen-space gradients through the conic, the EWA projection (0.3 dilation,
// clamped Jacobian), the covariance, quaternion normalisation, the sigmoid, the optional
// opacity scale and the SH colour (gradient 0 where the colour was clamped at 0).
// Discrete decisions (culling, radii, depth order, thresholds) have no gradient.
//
// Determinism: each tile (one thread) writes its gradients to per-intersection cells laid
// out Gaussian-major; each Gaussian then sums its cells in tile order. No float atomics:
// the gradients are bit-identical for any thread count. (The CUDA backend sums with
// atomics after a per-warp reduction, so its gradients vary in the last bits.)
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "render/cpu_rasterizer.h"

namespace flexgs {

// Gradients in the raw parameter space of GaussianCloud (same layouts and sizes).
struct CloudGradients {
  std::vector<float> positions, log_scales, rotations, opacity_logits, sh_dc, sh_rest;
  std::vector<float> opacity_scale;   // dL/d opacity_scale[i] when Forward got a scale, else empty
  std::array<float, 3> background{};  // dL/d background colour
  void ResizeLike(const GaussianCloud& cloud, bool with_opacity_scale);  // zero-filled
};

struct ForwardInputs {
  // Optional per-Gaussian multiplier m_i in [0, 1] on the activated opacity (the elastic
  // mask); empty = all 1. Gaussians whose scaled opacity is below 1/255 are culled and get
  // zero gradients, m_i included (as in the reference, where alpha < 1/255 is skipped).
  absl::Span<const float> opacity_scale;
};

// OK when `scale` is empty or has `count` values in [0, 1]; otherwise INVALID_ARGUMENT
// naming the first bad value. Every backend's Forward checks its inputs with this.
absl::Status ValidateOpacityScale(absl::Span<const float> scale, size_t count);

// OK when dL/dImage has width*height*3 floats; otherwise INVALID_ARGUMENT saying so.
absl::Status ValidateImageGradient(absl::Span<const float> grad_image, int width, int height);

// The contract of every differentiable rasterizer. Thread-compatible: one
// Forward/Backward at a time per object.
class DifferentiableRasterBackend {
 public:
  virtual ~DifferentiableRasterBackend() = default;

  virtual std::string_view name() const = 0;  // "cpu" or "cuda"

  // Renders like the matching RasterBackend and keeps what Backward needs. `cloud` is
  // referenced, not copied: it must stay alive and unchanged until Backward. A failed
  // Forward leaves nothing to differentiate.
  virtual absl::StatusOr<RenderResult> Forward(const GaussianCloud& cloud, const Camera& camera,
                                               const RenderOptions& options, const ForwardInputs& inputs) = 0;

  // Gradients of a scalar loss given dL/dImage (width*height*3 floats, the layout of
  // Image::pixels) for the last Forward. Overwrites *grads (resized). Can be called
  // repeatedly for the same Forward.
  virtual absl::Status Backward(absl::Span<const float> grad_image, CloudGradients* grads) = 0;
};

// Makes a fresh backend (the trainer needs two: the full and the selected render).
using DifferentiableRasterFactory = std::function<absl::StatusOr<std::unique_ptr<DifferentiableRasterBackend>>()>;

// The CPU implementation. Its Forward is bit-identical to CpuRasterizer::Render when
// opacity_scale is empty.
class DifferentiableRasterizer final : public DifferentiableRasterBackend {
 public:
  explicit DifferentiableRasterizer(int threads = 0);  // 0 = all hardware threads

  std::string_view name() const override { return "cpu"; }
  absl::StatusOr<RenderResult> Forward(const GaussianCloud& cloud, const Camera& camera, const RenderOptions& options,
                                       const ForwardInputs& inputs = {}) override;
  absl::Status Backward(absl::Span<const float> grad_image, CloudGradients* grads) override;

 private:
  // One composited (pixel, Gaussian) pair of a tile's replayed blend.
  struct Record {
    uint32_t id;     // Gaussian
    uint32_t cell;   // its (Gaussian, tile) cell of isect_grads_
    uint32_t pixel;  // pixel within the tile, y * kTileSize + x
    float alpha;     // min(0.99, opacity * G)
    float t_before;  // transmittance in front of this Gaussian
  };

  CpuRasterizer raster_;
  RasterFrame frame_;
  // State of the last successful Forward.
  bool ready_ = false;
  const GaussianCloud* cloud_ = nullptr;
  size_t cloud_size_ = 0;
  int cloud_sh_degree_ = 0;
  RenderOptions options_;
  raster::CameraParams cam_{};
  std::vector<float> opacity_scale_;  // copy of ForwardInputs::opacity_scale
  // Backward scratch, reused across calls.
  std::vector<std::vector<Record>> records_;  // per worker
  std::vector<uint32_t> cell_offsets_;        // per Gaussian: first cell (n + 1 prefix offsets)
  // Per intersection, Gaussian-major (a Gaussian's tiles in row-major order, i.e. tile
  // order): dL/d mean(2), conic(3), opacity, rgb(3).
  std::vector<float> isect_grads_;
  std::vector<double> tile_background_;  // per tile: sum of dL/dC * T_final
};

}  // namespace flexgs

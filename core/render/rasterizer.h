// Forward rasterization contract shared by every backend (CPU in core/, CUDA in kernels/).
//
// Pipeline (one function per stage, as in gsplat): project each Gaussian (EWA, see
// raster_math.h) -> bin footprints into 16x16 tiles -> sort each tile by depth ->
// blend front to back per pixel. Backends must produce the same image within the
// tolerance stated in tests/unit/kernels/rasterizer_cuda_test.cc.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "render/raster_math.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"
#include "scene/image.h"

namespace flexgs {

struct RenderOptions {
  std::array<float, 3> background = {0.0f, 0.0f, 0.0f};
  int max_sh_degree = kMaxShDegree;  // colours use min(this, cloud.sh_degree)
  float near_plane = 0.01f;
  raster::RadiusMode radius_mode = raster::RadiusMode::kOpacityAware;
  bool want_aux = true;  // fill final_transmittance and contributors
};

struct RenderResult {
  Image color;                             // RGB, background composited
  std::vector<float> final_transmittance;  // per pixel, T after the last contributor
  std::vector<uint32_t> contributors;      // per pixel, number of Gaussians blended
  size_t visible = 0;                      // Gaussians that survived projection
  size_t intersections = 0;                // (Gaussian, tile) pairs
};

// A rasterizer implementation. Thread-compatible: one Render at a time per object.
class RasterBackend {
 public:
  virtual ~RasterBackend() = default;
  virtual std::string_view name() const = 0;
  virtual absl::StatusOr<RenderResult> Render(const GaussianCloud& cloud, const Camera& camera,
                                              const RenderOptions& options) = 0;

  // Working memory (host or device) the backend holds between renders plus the transient
  // peak of the last Render -- projections, tile lists, sort keys, uploaded attributes --
  // excluding the returned RenderResult. Clients count it against their memory budget.
  virtual uint64_t ScratchBytes() const { return 0; }
};

// Flat float camera for the kernels.
raster::CameraParams ToCameraParams(const Camera& camera, float near_plane);

}  // namespace flexgs

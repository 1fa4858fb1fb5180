// DeviceGaussianStore: Gaussians held in GPU memory with a capacity fixed up front,
// grown by appended blocks and re-posed in place by patches -- what a CUDA client
// holds while a stream arrives -- and rendered without any host copy.
//
// Plain C++ header: every build has the factory; it answers UNAVAILABLE (with the
// reason) when the binary has no CUDA or no usable GPU, and the caller falls back to
// host memory and the CPU renderer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "render/rasterizer.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

class DeviceGaussianStore {
 public:
  virtual ~DeviceGaussianStore() = default;

  // Frees what is held and allocates room for `capacity` Gaussians at `sh_degree`
  // (one allocation). RESOURCE_EXHAUSTED when the GPU cannot hold it.
  virtual absl::Status Reset(size_t capacity, int sh_degree) = 0;
  // Copies `block` (same SH degree) to the end. FAILED_PRECONDITION past capacity.
  virtual absl::Status Append(const GaussianCloud& block) = 0;
  // Overwrites position, log-scale and rotation of [first, first + n) from patches of
  // kPatchStride floats. OUT_OF_RANGE when the range is not held.
  virtual absl::Status Patch(size_t first, absl::Span<const float> patches) = 0;
  // Overwrites every attribute of Gaussians indices[o] with values' Gaussian o (same SH
  // degree). OUT_OF_RANGE when an index is not held.
  virtual absl::Status Replace(absl::Span<const uint32_t> indices, const GaussianCloud& values) = 0;

  virtual size_t size() const = 0;
  virtual size_t capacity() const = 0;
  virtual int sh_degree() const = 0;
  // Device bytes for the Gaussians (capacity-based) -- not the renderer's scratch.
  virtual uint64_t AllocatedBytes() const = 0;

  // A host copy of what is held (for digests and saving).
  virtual absl::StatusOr<GaussianCloud> Download() const = 0;

  // Renders what is held with the CUDA rasterizer, straight from device memory.
  virtual absl::StatusOr<RenderResult> Render(const Camera& camera, const RenderOptions& options) = 0;
  // The renderer's device working memory (RasterBackend::ScratchBytes).
  virtual uint64_t RenderScratchBytes() const = 0;
};

// A store on the current CUDA device, or UNAVAILABLE naming why not.
absl::StatusOr<std::unique_ptr<DeviceGaussianStore>> NewDeviceGaussianStore();

}  // namespace flexgs

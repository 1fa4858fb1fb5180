// CUDA rasterizer backend (kernels/cuda_rasterizer.cu).
//
// Plain C++ header on purpose: it is included by backend.cc, which is compiled by
// the host compiler in every build. Both functions exist only when the project is
// built with CUDA (FLEXGS_HAS_CUDA); callers go through kernels/backend.h, which
// checks availability first.
#pragma once

#include <memory>
#include <string>

#include "render/rasterizer.h"

namespace flexgs {

// Float32 attributes already in device memory, in GaussianCloud's layouts (e.g. a
// client's device-resident store). Pointers are device pointers.
struct DeviceCloudView {
  size_t count = 0;
  int sh_degree = 0;
  const float* positions = nullptr;
  const float* log_scales = nullptr;
  const float* rotations = nullptr;
  const float* opacity_logits = nullptr;
  const float* sh_dc = nullptr;
  const float* sh_rest = nullptr;  // may be null at SH degree 0
};

// The CUDA rasterizer: renders host clouds (uploaded per frame) and device-resident
// ones (no upload; the caller keeps the memory alive and unchanged during the call).
class CudaRasterBackend : public RasterBackend {
 public:
  virtual absl::StatusOr<RenderResult> RenderDevice(const DeviceCloudView& cloud, const Camera& camera,
                                                    const RenderOptions& options) = 0;
};

// A new CUDA rasterizer. Construction does not touch the GPU; the first Render
// creates the stream and buffers, so call CudaRuntimeAvailable() first.
std::unique_ptr<CudaRasterBackend> NewCudaRasterBackend();

// True when the CUDA runtime finds a device that can run this binary's kernels;
// otherwise `why` (if non-null) says why not. The answer is computed once per process.
bool CudaRuntimeAvailable(std::string* why);

}  // namespace flexgs

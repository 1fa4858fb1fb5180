// CudaRasterPipeline: the forward stages of the CUDA rasterizer on device-resident
// attributes, shared by the render backend (cuda_rasterizer.cu) and the differentiable
// one (cuda_rasterizer_backward.cu). For the kernels/ .cu files only.
//
// Stages, one kernel or CUB call each (the gsplat / INRIA layout, see
// shared/docs/reference/rendering-reference.md sections 1-2):
//   (a) ProjectKernel     EWA projection, SH colour and tiles-touched count per Gaussian
//   (b) DeviceScan        inclusive sum of the counts -> per-Gaussian write offsets
//   (c) EmitKernel        one (tile<<32 | depth key, Gaussian id) pair per touched tile
//   (d) DeviceRadixSort   stable sort of the pairs by key
//   (e) TileRangesKernel  [start, end) of every tile in the sorted list
//   (f) RenderKernel      one 16x16 block per tile, front-to-back blending
//
// Equality with the CPU reference is by construction: every per-Gaussian and per-pixel
// expression comes from core/render/raster_math.h, and the CPU's per-tile (depth, id) order is
// reproduced because (c) emits pairs in Gaussian-id order and the radix sort is stable,
// so equal depths keep id order. What remains are float differences (device expf vs
// libm, FMA contraction), covered by the tests' tolerance.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda_rasterizer.h"
#include "kernels/device_buffer.cuh"
#include "render/rasterizer.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

// What stages (a)-(f) leave on the device for one view. Pointers into the pipeline's
// buffers, valid until its next Run. With no intersections (`pairs` == 0) only the
// counts are set and the image is the background.
struct DeviceRasterFrame {
  int count = 0;  // Gaussians
  int width = 0, height = 0, tiles_x = 0, tiles_y = 0;
  int pairs = 0;  // Gaussian-tile intersections
  unsigned int visible = 0;
  raster::CameraParams cam{};
  int sh_degree = 0;  // degree the colours were evaluated at
  // Per Gaussian (valid where tiles_touched > 0).
  const float2* xy = nullptr;
  const float4* conic_opacity = nullptr;  // conic a, b, c and the (scaled) opacity
  const float4* rgb = nullptr;            // clamped colour, w unused
  const unsigned long long* tiles_touched = nullptr;
  // Per intersection / tile / pixel.
  const uint32_t* sorted_ids = nullptr;
  const uint2* ranges = nullptr;  // [start, end) of each tile in sorted_ids
  const float* color = nullptr;   // width*height*3, background included
  const float* final_t = nullptr;
  const uint32_t* contributors = nullptr;  // composited Gaussians per pixel
  // Per pixel: 1 + the position in sorted_ids of the last Gaussian composited (0 = none);
  // the backward replays each pixel's list up to here.
  const uint32_t* last_index = nullptr;
};

class CudaRasterPipeline {
 public:
  CudaRasterPipeline() = default;
  CudaRasterPipeline(const CudaRasterPipeline&) = delete;
  CudaRasterPipeline& operator=(const CudaRasterPipeline&) = delete;
  ~CudaRasterPipeline();

  // Creates the stream and the pinned readback slot (retried on the next call if it failed).
  absl::Status Init();
  cudaStream_t stream() const { return stream_; }

  // Copies a host cloud into the attribute buffer (asynchronously, on stream()) and
  // returns its device view. The cloud must stay alive until the next synchronisation.
  absl::StatusOr<DeviceCloudView> Upload(const GaussianCloud& cloud);

  // Stages (a)-(f). `opacity_scale` is a device array of cloud.count multipliers of the
  // activated opacity, or null. Synchronises once (to size the pair buffers).
  absl::StatusOr<DeviceRasterFrame> Run(const DeviceCloudView& cloud, const Camera& camera,
                                        const RenderOptions& options, const float* opacity_scale);

  // Copies the frame's image (and with options.want_aux the transmittance and
  // contributor counts) into a RenderResult and synchronises.
  absl::StatusOr<RenderResult> Download(const DeviceRasterFrame& frame, const RenderOptions& options);

  uint64_t ScratchBytes() const {
    return attributes_.capacity() + per_gaussian_.capacity() + pairs_.capacity() + temp_.capacity() + image_.capacity();
  }

 private:
  struct HostCounters {
    unsigned long long intersections;
    unsigned int visible;
  };
  cudaStream_t stream_ = nullptr;
  HostCounters* host_counters_ = nullptr;  // pinned, so the readback is a true async copy
  DeviceBuffer attributes_;                // uploaded cloud
  DeviceBuffer per_gaussian_;              // projection results, counts, offsets, visible counter
  DeviceBuffer pairs_;                     // sort keys and ids, double-buffered
  DeviceBuffer temp_;                      // CUB scratch (scan, then sort)
  DeviceBuffer image_;                     // tile ranges and outputs
};

// A kernel of this file, for availability probes (cudaFuncGetAttributes).
const void* RasterProbeKernel();

}  // namespace flexgs

// Run-time choice of compute device for the heavy stages.
//
// The CUDA path is used when the binary was built with CUDA *and* a usable GPU is
// present; otherwise every caller falls back to the CPU implementation and one
// clear line is logged (once per process).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "render/rasterizer.h"
#include "render/rasterizer_backward.h"

namespace flexgs {

enum class Device { kAuto, kCpu, kCuda };

// Parses "auto", "cpu" or "cuda".
absl::StatusOr<Device> ParseDevice(const std::string& text);

// True when a CUDA device can be used now; otherwise `why` says why not.
bool CudaAvailable(std::string* why = nullptr);

// True when this binary contains the CUDA kernels.
bool BuiltWithCuda();

// Memory of the current CUDA device (the one the CUDA rasterizer would use).
struct CudaMemoryInfo {
  uint64_t free_bytes = 0, total_bytes = 0;
  std::string device_name;
};

// Free and total memory of the current CUDA device (cudaMemGetInfo), e.g. to size an
// "auto" client budget. UNAVAILABLE with the reason when CUDA cannot be used (CPU-only
// build, no driver or device); INTERNAL when the CUDA runtime fails the query. The
// query creates the device's CUDA context if there is none yet, so `free_bytes` already
// excludes what the context itself holds.
absl::StatusOr<CudaMemoryInfo> QueryCudaMemory();

// kAuto: CUDA if available else CPU (logging the fallback once). kCuda: CUDA, or
// FAILED_PRECONDITION naming the reason. kCpu: the CPU rasterizer.
absl::StatusOr<std::unique_ptr<RasterBackend>> CreateRasterBackend(Device device, int cpu_threads = 0);

// The same choice for the differentiable rasterizer (training): the CUDA one
// (kernels/cuda_rasterizer_backward.h) or the CPU DifferentiableRasterizer.
absl::StatusOr<std::unique_ptr<DifferentiableRasterBackend>> CreateDifferentiableRasterBackend(Device device,
                                                                                               int cpu_threads = 0);

}  // namespace flexgs

// Run-time choice of compute device for the heavy stages.
//
// The CUDA path is used when the binary was built with CUDA *and* a usable GPU is
// present; otherwise every caller falls back to the CPU implementation and one
// clear line is logged (once per process).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/rasterizer.h"

namespace flexgs {

enum class Device { kAuto, kCpu, kCuda };

// Parses "auto", "cpu" or "cuda".
absl::StatusOr<Device> ParseDevice(const std::string& text);

// True when a CUDA device can be used now; otherwise `why` says why not.
bool CudaAvailable(std::string* why = nullptr);

// True when this binary contains the CUDA kernels.
bool BuiltWithCuda();

// kAuto: CUDA if available else CPU (logging the fallback once). kCuda: CUDA, or
// FAILED_PRECONDITION naming the reason. kCpu: the CPU rasterizer.
absl::StatusOr<std::unique_ptr<RasterBackend>> CreateRasterBackend(Device device, int cpu_threads = 0);

}  // namespace flexgs

// CUDA device memory query (kernels/cuda_memory.cu).
//
// Plain C++ header, like cuda_rasterizer.h: backend.cc includes it in every build, but
// the function exists only when the project is built with CUDA (FLEXGS_HAS_CUDA).
// Callers use QueryCudaMemory() from kernels/backend.h, which checks availability first.
#pragma once

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace flexgs {

// cudaMemGetInfo + cudaGetDeviceProperties for the current device; INTERNAL naming the
// failing call on a CUDA error. Assumes CudaRuntimeAvailable() returned true.
absl::StatusOr<CudaMemoryInfo> QueryCudaDeviceMemory();

}  // namespace flexgs

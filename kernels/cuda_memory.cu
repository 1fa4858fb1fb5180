// CUDA device memory query: the GPU side of QueryCudaMemory() (kernels/backend.h).
#include "kernels/cuda_memory.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "kernels/cuda_check.cuh"

namespace flexgs {

absl::StatusOr<CudaMemoryInfo> QueryCudaDeviceMemory() {
  int device = 0;
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  cudaDeviceProp prop;
  std::memset(&prop, 0, sizeof(prop));
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  size_t free_bytes = 0, total_bytes = 0;
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));

  CudaMemoryInfo info;
  info.free_bytes = static_cast<uint64_t>(free_bytes);
  info.total_bytes = static_cast<uint64_t>(total_bytes);
  // prop.name is a fixed char array; bound the copy in case a driver fills it completely.
  info.device_name.assign(prop.name, strnlen(prop.name, sizeof(prop.name)));
  return info;
}

}  // namespace flexgs

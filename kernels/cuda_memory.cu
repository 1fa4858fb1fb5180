// CUDA device memory query: the GPU side of QueryCudaMemory() (kernels/backend.h).
#include "kernels/cuda_memory.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flexgs {
namespace {

absl::Status CudaQueryError(const char* what, cudaError_t err) {
  cudaGetLastError();  // these errors are not sticky; do not leave them for the next unrelated check
  return absl::InternalError(
      absl::StrCat("CUDA error in ", what, ": ", cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"));
}

}  // namespace

absl::StatusOr<CudaMemoryInfo> QueryCudaDeviceMemory() {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return CudaQueryError("cudaGetDevice", err);
  cudaDeviceProp prop;
  std::memset(&prop, 0, sizeof(prop));
  err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) return CudaQueryError("cudaGetDeviceProperties", err);
  size_t free_bytes = 0, total_bytes = 0;
  err = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (err != cudaSuccess) return CudaQueryError("cudaMemGetInfo", err);

  CudaMemoryInfo info;
  info.free_bytes = static_cast<uint64_t>(free_bytes);
  info.total_bytes = static_cast<uint64_t>(total_bytes);
  // prop.name is a fixed char array; bound the copy in case a driver fills it completely.
  info.device_name.assign(prop.name, strnlen(prop.name, sizeof(prop.name)));
  return info;
}

}  // namespace flexgs

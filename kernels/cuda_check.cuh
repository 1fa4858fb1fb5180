// Turning CUDA runtime errors into absl::Status, for the kernels/ .cu files only.
#pragma once

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flexgs {

// INTERNAL naming the failed call and CUDA's description of the error: the one place
// kernels/ turns a cudaError_t into a status. It also clears the thread's last error, so
// that a non-sticky error (a failed allocation or query) is not reported again by the
// next, unrelated launch check; a sticky error (the context is lost) stays whatever we do.
inline absl::Status CudaError(const char* what, cudaError_t err) {
  cudaGetLastError();
  return absl::InternalError(
      absl::StrCat("CUDA error in ", what, ": ", cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"));
}

}  // namespace flexgs

#define FLEXGS_CUDA_RETURN_IF_ERROR(expr)                                                     \
  do {                                                                                        \
    const cudaError_t flexgs_cuda_err_ = (expr);                                              \
    if (flexgs_cuda_err_ != cudaSuccess) return ::flexgs::CudaError(#expr, flexgs_cuda_err_); \
  } while (0)

// Kernel launches report configuration errors only through cudaGetLastError.
#define FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED(kernel_name)                                                         \
  do {                                                                                                           \
    const cudaError_t flexgs_cuda_err_ = cudaGetLastError();                                                     \
    if (flexgs_cuda_err_ != cudaSuccess) return ::flexgs::CudaError("launch of " kernel_name, flexgs_cuda_err_); \
  } while (0)

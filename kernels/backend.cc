#include "kernels/backend.h"
#include "kernels/device_gaussian_store.h"

#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "render/cpu_rasterizer.h"
#include "spdlog/spdlog.h"

#if defined(FLEXGS_HAS_CUDA)
#include "kernels/cuda_memory.h"
#include "kernels/cuda_rasterizer.h"
#include "kernels/cuda_rasterizer_backward.h"
#endif

namespace flexgs {

#if defined(FLEXGS_HAS_CUDA)
std::unique_ptr<DeviceGaussianStore> NewCudaGaussianStore();  // kernels/device_gaussian_store.cu
#endif

absl::StatusOr<std::unique_ptr<DeviceGaussianStore>> NewDeviceGaussianStore() {
  std::string why;
  if (!CudaAvailable(&why)) return absl::UnavailableError(absl::StrCat("no device-resident store: ", why));
#if defined(FLEXGS_HAS_CUDA)
  return NewCudaGaussianStore();
#else
  return absl::InternalError("unreachable: CUDA reported available in a CPU-only build");
#endif
}

absl::StatusOr<Device> ParseDevice(const std::string& text) {
  if (text == "auto") return Device::kAuto;
  if (text == "cpu") return Device::kCpu;
  if (text == "cuda") return Device::kCuda;
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", text, "' (expected auto, cpu or cuda)"));
}

bool BuiltWithCuda() {
#if defined(FLEXGS_HAS_CUDA)
  return true;
#else
  return false;
#endif
}

bool CudaAvailable(std::string* why) {
#if defined(FLEXGS_HAS_CUDA)
  return CudaRuntimeAvailable(why);
#else
  if (why != nullptr) *why = "this binary was built without CUDA";
  return false;
#endif
}

absl::StatusOr<CudaMemoryInfo> QueryCudaMemory() {
  std::string why;
  if (!CudaAvailable(&why)) return absl::UnavailableError(absl::StrCat("CUDA is unavailable: ", why));
#if defined(FLEXGS_HAS_CUDA)
  return QueryCudaDeviceMemory();
#else
  return absl::InternalError("unreachable: CUDA reported available in a CPU-only build");
#endif
}

namespace {

// Resolves kAuto and checks kCuda: true = use CUDA. Logs the CPU fallback of kAuto once
// per process (servers and tools create backends repeatedly).
absl::StatusOr<bool> UseCuda(Device device) {
  switch (device) {
    case Device::kCpu:
      return false;
    case Device::kCuda: {
      std::string why;
      if (!CudaAvailable(&why)) {
        return absl::FailedPreconditionError(absl::StrCat("CUDA was requested but is unavailable: ", why));
      }
      return true;
    }
    case Device::kAuto: {
      std::string why;
      if (CudaAvailable(&why)) return true;
      static std::once_flag logged;
      std::call_once(logged, [&why] { spdlog::info("CUDA unavailable ({}); using the CPU path", why); });
      return false;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("invalid Device value ", static_cast<int>(device)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<RasterBackend>> CreateRasterBackend(Device device, int cpu_threads) {
  FLEXGS_ASSIGN_OR_RETURN(const bool cuda, UseCuda(device));
  if (cuda) {
#if defined(FLEXGS_HAS_CUDA)
    return std::unique_ptr<RasterBackend>(NewCudaRasterBackend());
#else
    return absl::InternalError("unreachable: CUDA reported available in a CPU-only build");
#endif
  }
  return std::unique_ptr<RasterBackend>(std::make_unique<CpuRasterizer>(cpu_threads));
}

absl::StatusOr<std::unique_ptr<DifferentiableRasterBackend>> CreateDifferentiableRasterBackend(Device device,
                                                                                               int cpu_threads) {
  FLEXGS_ASSIGN_OR_RETURN(const bool cuda, UseCuda(device));
  if (cuda) {
#if defined(FLEXGS_HAS_CUDA)
    return NewCudaDifferentiableRasterizer();
#else
    return absl::InternalError("unreachable: CUDA reported available in a CPU-only build");
#endif
  }
  return std::unique_ptr<DifferentiableRasterBackend>(std::make_unique<DifferentiableRasterizer>(cpu_threads));
}

}  // namespace flexgs

// CUDA rasterizer backend: the GPU twin of CpuRasterizer (core/render/cpu_rasterizer.h), on
// the stages of kernels/cuda_raster_pipeline.cuh, plus the availability probe.
#include "kernels/cuda_rasterizer.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda_raster_pipeline.cuh"

namespace flexgs {
namespace {

class CudaRasterizer final : public CudaRasterBackend {
 public:
  std::string_view name() const override { return "cuda"; }

  absl::StatusOr<RenderResult> Render(const GaussianCloud& cloud, const Camera& camera,
                                      const RenderOptions& options) override {
    FLEXGS_RETURN_IF_ERROR(cloud.Validate());
    FLEXGS_RETURN_IF_ERROR(camera.Validate());
    if (cloud.size() > static_cast<size_t>(INT_MAX)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the CUDA rasterizer handles at most ", INT_MAX, " Gaussians, got ", cloud.size()));
    }
    FLEXGS_RETURN_IF_ERROR(pipeline_.Init());
    FLEXGS_ASSIGN_OR_RETURN(const DeviceCloudView view, pipeline_.Upload(cloud));
    FLEXGS_ASSIGN_OR_RETURN(const DeviceRasterFrame frame, pipeline_.Run(view, camera, options, nullptr));
    return pipeline_.Download(frame, options);
  }

  absl::StatusOr<RenderResult> RenderDevice(const DeviceCloudView& cloud, const Camera& camera,
                                            const RenderOptions& options) override {
    FLEXGS_RETURN_IF_ERROR(camera.Validate());
    if (cloud.sh_degree < 0 || cloud.sh_degree > kMaxShDegree) {
      return absl::InvalidArgumentError(absl::StrCat("device cloud SH degree ", cloud.sh_degree, " is not in 0..3"));
    }
    if (cloud.count > 0 && (cloud.positions == nullptr || cloud.log_scales == nullptr || cloud.rotations == nullptr ||
                            cloud.opacity_logits == nullptr || cloud.sh_dc == nullptr ||
                            (cloud.sh_degree > 0 && cloud.sh_rest == nullptr))) {
      return absl::InvalidArgumentError("device cloud has a null attribute pointer");
    }
    FLEXGS_RETURN_IF_ERROR(pipeline_.Init());
    FLEXGS_ASSIGN_OR_RETURN(const DeviceRasterFrame frame, pipeline_.Run(cloud, camera, options, nullptr));
    return pipeline_.Download(frame, options);
  }

  uint64_t ScratchBytes() const override { return pipeline_.ScratchBytes(); }

 private:
  CudaRasterPipeline pipeline_;
};

// Computes the availability answer once; an empty string means available.
std::string ProbeCuda() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // do not leave the error for the next unrelated check
    // The static runtime reports "driver version is insufficient" both for an old
    // driver and for none at all; the driver version (0 = none) tells them apart.
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cudaGetLastError();
    if (err == cudaErrorInsufficientDriver && driver == 0) return "no CUDA driver is installed";
    if (err == cudaErrorInsufficientDriver) {
      return absl::StrCat("the CUDA driver (", driver / 1000, ".", driver % 1000 / 10,
                          ") is older than the CUDA runtime this binary was built with (", runtime / 1000, ".",
                          runtime % 1000 / 10, ")");
    }
    return absl::StrCat("no usable CUDA device: ", cudaGetErrorString(err));
  }
  if (count == 0) return "no CUDA device found";
  // The binary carries sm_80/sm_90 code (+PTX); an older GPU has no image to run,
  // which cudaFuncGetAttributes reports without launching anything.
  cudaFuncAttributes attributes;
  err = cudaFuncGetAttributes(&attributes, RasterProbeKernel());
  if (err != cudaSuccess) {
    cudaGetLastError();
    int device = 0;
    cudaDeviceProp prop;
    std::memset(&prop, 0, sizeof(prop));
    if (cudaGetDevice(&device) == cudaSuccess && cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
      return absl::StrCat("CUDA device ", device, " (", prop.name, ", compute capability ", prop.major, ".", prop.minor,
                          ") cannot run this binary's kernels: ", cudaGetErrorString(err));
    }
    cudaGetLastError();
    return absl::StrCat("CUDA kernels cannot run on this device: ", cudaGetErrorString(err));
  }
  return std::string();
}

}  // namespace

std::unique_ptr<CudaRasterBackend> NewCudaRasterBackend() { return std::make_unique<CudaRasterizer>(); }

bool CudaRuntimeAvailable(std::string* why) {
  static const std::string* const reason = new std::string(ProbeCuda());  // thread-safe, never freed
  if (why != nullptr) *why = *reason;
  return reason->empty();
}

}  // namespace flexgs

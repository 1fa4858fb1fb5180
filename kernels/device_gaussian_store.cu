// DeviceGaussianStore on CUDA: one cudaMalloc for all attributes at Reset, appends as
// async copies into their offsets, patches as one upload plus a scatter kernel.
#include "kernels/device_gaussian_store.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda_check.cuh"
#include "kernels/cuda_rasterizer.h"
#include "stream/level_planner.h"

namespace flexgs {
namespace {

// One float per thread: row indices[o] of a `width`-wide SoA array takes row o of src.
__global__ void ScatterRowsKernel(size_t n, int width, const uint32_t* __restrict__ indices,
                                  const float* __restrict__ src, float* __restrict__ dst) {
  const size_t t = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n * width) return;
  const size_t o = t / width, d = t % width;
  dst[static_cast<size_t>(indices[o]) * width + d] = src[t];
}

// One patch per thread: position(3), log-scale(3), rotation(4) into the SoA arrays.
__global__ void ScatterPatchesKernel(size_t n, size_t first, const float* __restrict__ patches,
                                     float* __restrict__ positions, float* __restrict__ log_scales,
                                     float* __restrict__ rotations) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float* p = patches + i * kPatchStride;
  const size_t g = first + i;
  for (int d = 0; d < 3; ++d) positions[g * 3 + d] = p[d];
  for (int d = 0; d < 3; ++d) log_scales[g * 3 + d] = p[3 + d];
  for (int d = 0; d < 4; ++d) rotations[g * 4 + d] = p[6 + d];
}

class CudaGaussianStore final : public DeviceGaussianStore {
 public:
  CudaGaussianStore() : renderer_(NewCudaRasterBackend()) {}
  ~CudaGaussianStore() override {
    Free();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  absl::Status Reset(size_t capacity, int sh_degree) override {
    if (sh_degree < 0 || sh_degree > kMaxShDegree) {
      return absl::InvalidArgumentError(absl::StrCat("SH degree ", sh_degree, " is not in 0..3"));
    }
    if (stream_ == nullptr) FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    Free();
    const size_t k = ShRestCoeffs(sh_degree);
    // Floats per Gaussian per array, in GaussianCloud order.
    widths_ = {3, 3, 4, 1, 3, 3 * k};
    size_t floats = 0;
    for (size_t w : widths_) floats += w * capacity;
    if (floats > 0) {
      void* ptr = nullptr;
      const cudaError_t err = cudaMalloc(&ptr, floats * sizeof(float));
      if (err != cudaSuccess) {
        cudaGetLastError();
        return absl::ResourceExhaustedError(absl::StrCat("cannot hold ", capacity, " Gaussians (", floats * 4,
                                                         " bytes) in GPU memory: ", cudaGetErrorString(err)));
      }
      base_ = static_cast<float*>(ptr);
    }
    size_t at = 0;
    for (size_t a = 0; a < widths_.size(); ++a) {
      arrays_[a] = base_ + at;
      at += widths_[a] * capacity;
    }
    capacity_ = capacity;
    sh_degree_ = sh_degree;
    size_ = 0;
    return absl::OkStatus();
  }

  absl::Status Append(const GaussianCloud& block) override {
    if (auto st = block.Validate(); !st.ok()) return st;
    if (block.sh_degree != sh_degree_) {
      return absl::FailedPreconditionError(
          absl::StrCat("block SH degree ", block.sh_degree, " differs from the store's ", sh_degree_));
    }
    if (block.size() > capacity_ - size_) {
      return absl::FailedPreconditionError(absl::StrCat("appending ", block.size(), " Gaussians to ", size_,
                                                        " would exceed the reserved capacity ", capacity_));
    }
    const std::array<const std::vector<float>*, 6> src = {&block.positions,      &block.log_scales, &block.rotations,
                                                          &block.opacity_logits, &block.sh_dc,      &block.sh_rest};
    for (size_t a = 0; a < src.size(); ++a) {
      if (src[a]->empty()) continue;
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(arrays_[a] + size_ * widths_[a], src[a]->data(),
                                                  src[a]->size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
    }
    // Synchronous on purpose: the block's host memory is freed by the caller next.
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    size_ += block.size();
    return absl::OkStatus();
  }

  absl::Status Patch(size_t first, absl::Span<const float> patches) override {
    if (patches.size() % kPatchStride != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("patch data has ", patches.size(), " floats, not a multiple of ", kPatchStride));
    }
    const size_t n = patches.size() / kPatchStride;
    if (first > size_ || n > size_ - first) {
      return absl::OutOfRangeError(
          absl::StrCat("patch range [", first, ", ", first + n, ") is outside the ", size_, " Gaussians held"));
    }
    if (n == 0) return absl::OkStatus();
    if (patch_capacity_ < patches.size()) {
      if (patch_buffer_ != nullptr) cudaFree(patch_buffer_);
      patch_buffer_ = nullptr;
      patch_capacity_ = 0;
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&patch_buffer_), patches.size() * sizeof(float)));
      patch_capacity_ = patches.size();
    }
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(patch_buffer_, patches.data(), patches.size() * sizeof(float),
                                                cudaMemcpyHostToDevice, stream_));
    const unsigned int blocks = static_cast<unsigned int>((n + 255) / 256);
    ScatterPatchesKernel<<<blocks, 256, 0, stream_>>>(n, first, patch_buffer_, arrays_[0], arrays_[1], arrays_[2]);
    FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("ScatterPatchesKernel");
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  absl::Status Replace(absl::Span<const uint32_t> indices, const GaussianCloud& values) override {
    if (values.size() != indices.size() || values.sh_degree != sh_degree_) {
      return absl::InvalidArgumentError(absl::StrCat(values.size(), " replacements at SH degree ", values.sh_degree,
                                                     " for ", indices.size(), " indices at degree ", sh_degree_));
    }
    if (auto st = values.Validate(); !st.ok()) return st;
    for (uint32_t i : indices) {
      if (i >= size_)
        return absl::OutOfRangeError(absl::StrCat("replacement of Gaussian ", i, ": only ", size_, " held"));
    }
    const size_t n = indices.size();
    if (n == 0) return absl::OkStatus();
    // Scratch: the indices, then the widest array's rows (each array goes through it in turn).
    const size_t widest = *std::max_element(widths_.begin(), widths_.end());
    const size_t need = n + n * widest;  // 4-byte words
    if (patch_capacity_ < need) {
      if (patch_buffer_ != nullptr) cudaFree(patch_buffer_);
      patch_buffer_ = nullptr;
      patch_capacity_ = 0;
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&patch_buffer_), need * sizeof(float)));
      patch_capacity_ = need;
    }
    auto* device_indices = reinterpret_cast<uint32_t*>(patch_buffer_);
    float* rows = patch_buffer_ + n;
    FLEXGS_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(device_indices, indices.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice, stream_));
    const std::array<const std::vector<float>*, 6> src = {&values.positions,      &values.log_scales, &values.rotations,
                                                          &values.opacity_logits, &values.sh_dc,      &values.sh_rest};
    for (size_t a = 0; a < src.size(); ++a) {
      if (widths_[a] == 0) continue;
      FLEXGS_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(rows, src[a]->data(), src[a]->size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
      const size_t total = n * widths_[a];
      const unsigned int blocks = static_cast<unsigned int>((total + 255) / 256);
      ScatterRowsKernel<<<blocks, 256, 0, stream_>>>(n, static_cast<int>(widths_[a]), device_indices, rows, arrays_[a]);
      FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("ScatterRowsKernel");
    }
    // Synchronous: the host arrays belong to the caller, and the scratch is reused.
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  size_t size() const override { return size_; }
  size_t capacity() const override { return capacity_; }
  int sh_degree() const override { return sh_degree_; }
  uint64_t AllocatedBytes() const override {
    uint64_t floats = 0;
    for (size_t w : widths_) floats += w * capacity_;
    return floats * sizeof(float) + patch_capacity_ * sizeof(float);
  }

  absl::StatusOr<GaussianCloud> Download() const override {
    GaussianCloud out;
    out.sh_degree = sh_degree_;
    out.Resize(size_);
    std::array<std::vector<float>*, 6> dst = {&out.positions,      &out.log_scales, &out.rotations,
                                              &out.opacity_logits, &out.sh_dc,      &out.sh_rest};
    for (size_t a = 0; a < dst.size(); ++a) {
      if (dst[a]->empty()) continue;
      FLEXGS_CUDA_RETURN_IF_ERROR(
          cudaMemcpy(dst[a]->data(), arrays_[a], dst[a]->size() * sizeof(float), cudaMemcpyDeviceToHost));
    }
    return out;
  }

  absl::StatusOr<RenderResult> Render(const Camera& camera, const RenderOptions& options) override {
    DeviceCloudView view;
    view.count = size_;
    view.sh_degree = sh_degree_;
    view.positions = arrays_[0];
    view.log_scales = arrays_[1];
    view.rotations = arrays_[2];
    view.opacity_logits = arrays_[3];
    view.sh_dc = arrays_[4];
    view.sh_rest = sh_degree_ > 0 ? arrays_[5] : nullptr;
    return renderer_->RenderDevice(view, camera, options);
  }
  uint64_t RenderScratchBytes() const override { return renderer_->ScratchBytes(); }

 private:
  void Free() {
    if (base_ != nullptr) cudaFree(base_);  // teardown errors cannot be reported
    base_ = nullptr;
    arrays_.fill(nullptr);
    capacity_ = size_ = 0;
  }

  std::unique_ptr<CudaRasterBackend> renderer_;
  cudaStream_t stream_ = nullptr;
  float* base_ = nullptr;
  std::array<float*, 6> arrays_{};
  std::array<size_t, 6> widths_{};
  size_t capacity_ = 0, size_ = 0;
  int sh_degree_ = 0;
  float* patch_buffer_ = nullptr;
  size_t patch_capacity_ = 0;
};

}  // namespace

std::unique_ptr<DeviceGaussianStore> NewCudaGaussianStore() { return std::make_unique<CudaGaussianStore>(); }

}  // namespace flexgs

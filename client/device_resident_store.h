// DeviceResidentStore: the ResidentStore in GPU memory (kernels/device_gaussian_store.h),
// used when the client renders with CUDA, so the Gaussians live where the renderer
// reads them and a level is drawn without copying it back or re-uploading it.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "client/resident_store.h"
#include "kernels/device_gaussian_store.h"

namespace flexgs::client {

class DeviceResidentStore final : public ResidentStore {
 public:
  // UNAVAILABLE (with the reason) when no CUDA device can be used.
  static absl::StatusOr<std::unique_ptr<DeviceResidentStore>> Create();

  absl::Status Reset(size_t capacity, int sh_degree) override { return store_->Reset(capacity, sh_degree); }
  absl::Status Append(const GaussianCloud& block) override { return store_->Append(block); }
  absl::Status Patch(size_t first, absl::Span<const float> patches) override { return store_->Patch(first, patches); }
  absl::Status Replace(absl::Span<const uint32_t> indices, const GaussianCloud& values) override {
    return store_->Replace(indices, values);
  }
  size_t size() const override { return store_->size(); }
  size_t capacity() const override { return store_->capacity(); }
  int sh_degree() const override { return store_->sh_degree(); }
  uint64_t AllocatedBytes() const override { return store_->AllocatedBytes(); }
  // A host copy; empty (and logged) if the device copy fails.
  GaussianCloud ToHost() const override;
  const char* location() const override { return "cuda"; }

  // Renders the held Gaussians from device memory.
  absl::StatusOr<RenderResult> Render(const Camera& camera, const RenderOptions& options) {
    return store_->Render(camera, options);
  }
  uint64_t RenderScratchBytes() const { return store_->RenderScratchBytes(); }

 private:
  explicit DeviceResidentStore(std::unique_ptr<DeviceGaussianStore> store) : store_(std::move(store)) {}
  std::unique_ptr<DeviceGaussianStore> store_;
};

}  // namespace flexgs::client

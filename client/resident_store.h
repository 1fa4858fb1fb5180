// ResidentStore: the Gaussians a client holds, where its renderer reads them.
//
// Gaussians arrive in client order: appended block by block, and re-posed in place by
// patches (position, log-scale, rotation; kPatchStride floats each). Capacity is
// reserved once from the stream header (the last level's count), so a stream never
// reallocates while it grows. Implementations: HostResidentStore (host memory, for the
// CPU renderer) and the CUDA one in kernels/ (device buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "scene/gaussian_cloud.h"

namespace flexgs::client {

class ResidentStore {
 public:
  virtual ~ResidentStore() = default;

  // Empties the store and reserves room for `capacity` Gaussians at `sh_degree`.
  // RESOURCE_EXHAUSTED when the memory cannot be had, INVALID_ARGUMENT for a degree
  // outside 0..3; on error the store is unchanged.
  virtual absl::Status Reset(size_t capacity, int sh_degree) = 0;

  // Appends `block` (same SH degree as Reset) at index size(). FAILED_PRECONDITION
  // when it would exceed the reserved capacity or the degree differs; INVALID_ARGUMENT
  // when the block's arrays disagree with its size (GaussianCloud::Validate). Never
  // reallocates.
  virtual absl::Status Append(const GaussianCloud& block) = 0;

  // Overwrites geometry of Gaussians [first, first + patches.size() / kPatchStride).
  // OUT_OF_RANGE when that range is not held; INVALID_ARGUMENT when patches.size() is
  // not a multiple of kPatchStride.
  virtual absl::Status Patch(size_t first, absl::Span<const float> patches) = 0;
  // Overwrites every attribute of Gaussians indices[o] with values' Gaussian o (merged
  // levels). OUT_OF_RANGE when an index is not held; INVALID_ARGUMENT when the counts
  // or SH degree disagree or `values` fails Validate(). On error nothing changed.
  virtual absl::Status Replace(absl::Span<const uint32_t> indices, const GaussianCloud& values) = 0;

  virtual size_t size() const = 0;
  virtual size_t capacity() const = 0;
  virtual int sh_degree() const = 0;

  // Bytes this store has allocated for Gaussian attributes (capacity, not size).
  virtual uint64_t AllocatedBytes() const = 0;

  // The held Gaussians as a host cloud (a copy for device stores; a view-equivalent
  // copy for host stores is avoided by HostResidentStore::cloud()).
  virtual GaussianCloud ToHost() const = 0;

  // "host" or "cuda".
  virtual const char* location() const = 0;
};

// Host-memory store: a GaussianCloud whose arrays are reserved to capacity.
class HostResidentStore final : public ResidentStore {
 public:
  absl::Status Reset(size_t capacity, int sh_degree) override;
  absl::Status Append(const GaussianCloud& block) override;
  absl::Status Patch(size_t first, absl::Span<const float> patches) override;
  absl::Status Replace(absl::Span<const uint32_t> indices, const GaussianCloud& values) override;
  size_t size() const override { return cloud_.size(); }
  size_t capacity() const override { return capacity_; }
  int sh_degree() const override { return cloud_.sh_degree; }
  uint64_t AllocatedBytes() const override;
  GaussianCloud ToHost() const override { return cloud_; }
  const char* location() const override { return "host"; }

  // The held Gaussians, without a copy (valid until the next mutation).
  const GaussianCloud& cloud() const { return cloud_; }

 private:
  GaussianCloud cloud_;
  size_t capacity_ = 0;
};

}  // namespace flexgs::client

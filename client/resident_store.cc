#include "client/resident_store.h"

#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "stream/level_planner.h"

namespace flexgs::client {
namespace {

// Floats one Gaussian occupies across every array at an SH degree.
size_t FloatsPerGaussian(int sh_degree) { return 14 + 3 * static_cast<size_t>(ShRestCoeffs(sh_degree)); }

template <class T>
uint64_t CapacityBytes(const std::vector<T>& v) {
  return static_cast<uint64_t>(v.capacity()) * sizeof(T);
}

// Appends within reserved capacity: the caller has checked the room, so insert() never
// reallocates and pointers a renderer holds into the arrays stay valid.
void AppendWithin(std::vector<float>& dst, const std::vector<float>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}

}  // namespace

absl::Status HostResidentStore::Reset(size_t capacity, int sh_degree) {
  if (sh_degree < 0 || sh_degree > kMaxShDegree) {
    return absl::InvalidArgumentError(absl::StrCat("SH degree ", sh_degree, " is outside 0..", kMaxShDegree));
  }
  // The largest array (SH rest at degree 3, or positions at 0) must not overflow size_t
  // nor exceed what a vector can hold; refuse before asking the allocator.
  const size_t per_gaussian = FloatsPerGaussian(sh_degree);
  if (capacity > std::vector<float>().max_size() / per_gaussian) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot reserve room for ", capacity, " Gaussians at SH degree ", sh_degree));
  }
  // Built aside and swapped in, so a failed reservation leaves the store as it was.
  GaussianCloud fresh;
  fresh.sh_degree = sh_degree;
  try {
    fresh.positions.reserve(capacity * 3);
    fresh.log_scales.reserve(capacity * 3);
    fresh.rotations.reserve(capacity * 4);
    fresh.opacity_logits.reserve(capacity);
    fresh.sh_dc.reserve(capacity * 3);
    fresh.sh_rest.reserve(capacity * 3 * static_cast<size_t>(ShRestCoeffs(sh_degree)));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory reserving ", capacity, " Gaussians (",
                                                     capacity * per_gaussian * sizeof(float), " bytes)"));
  } catch (const std::length_error&) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot reserve room for ", capacity, " Gaussians"));
  }
  cloud_ = std::move(fresh);
  capacity_ = capacity;
  return absl::OkStatus();
}

absl::Status HostResidentStore::Append(const GaussianCloud& block) {
  if (block.sh_degree != cloud_.sh_degree) {
    return absl::FailedPreconditionError(
        absl::StrCat("block SH degree ", block.sh_degree, " differs from the store's ", cloud_.sh_degree));
  }
  if (absl::Status st = block.Validate(); !st.ok()) return st;
  if (block.size() > capacity_ - cloud_.size()) {
    return absl::FailedPreconditionError(absl::StrCat("appending ", block.size(), " Gaussians to ", cloud_.size(),
                                                      " exceeds the reserved capacity of ", capacity_));
  }
  AppendWithin(cloud_.positions, block.positions);
  AppendWithin(cloud_.log_scales, block.log_scales);
  AppendWithin(cloud_.rotations, block.rotations);
  AppendWithin(cloud_.opacity_logits, block.opacity_logits);
  AppendWithin(cloud_.sh_dc, block.sh_dc);
  AppendWithin(cloud_.sh_rest, block.sh_rest);
  return absl::OkStatus();
}

absl::Status HostResidentStore::Patch(size_t first, absl::Span<const float> patches) {
  if (patches.size() % kPatchStride != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(patches.size(), " patch floats is not a multiple of ", kPatchStride));
  }
  const size_t n = patches.size() / kPatchStride;
  const size_t held = cloud_.size();
  if (first > held || n > held - first) {  // (written so that first + n cannot overflow)
    return absl::OutOfRangeError(
        absl::StrCat("patches [", first, ", ", first, " + ", n, ") are outside the ", held, " held Gaussians"));
  }
  for (size_t i = 0; i < n; ++i) {
    const float* p = &patches[i * kPatchStride];
    std::memcpy(&cloud_.positions[(first + i) * 3], p, 3 * sizeof(float));
    std::memcpy(&cloud_.log_scales[(first + i) * 3], p + 3, 3 * sizeof(float));
    std::memcpy(&cloud_.rotations[(first + i) * 4], p + 6, 4 * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status HostResidentStore::Replace(absl::Span<const uint32_t> indices, const GaussianCloud& values) {
  if (values.size() != indices.size() || values.sh_degree != cloud_.sh_degree) {
    return absl::InvalidArgumentError(absl::StrCat(values.size(), " replacements at SH degree ", values.sh_degree,
                                                   " for ", indices.size(), " indices at the store's degree ",
                                                   cloud_.sh_degree));
  }
  if (absl::Status st = values.Validate(); !st.ok()) return st;
  for (uint32_t i : indices) {
    if (i >= cloud_.size()) {
      return absl::OutOfRangeError(absl::StrCat("replacement of Gaussian ", i, ": only ", cloud_.size(), " held"));
    }
  }
  cloud_.Scatter(indices, values);
  return absl::OkStatus();
}

uint64_t HostResidentStore::AllocatedBytes() const {
  return CapacityBytes(cloud_.positions) + CapacityBytes(cloud_.log_scales) + CapacityBytes(cloud_.rotations) +
         CapacityBytes(cloud_.opacity_logits) + CapacityBytes(cloud_.sh_dc) + CapacityBytes(cloud_.sh_rest);
}

}  // namespace flexgs::client

// GaussianCloud: a 3D Gaussian Splatting scene as a structure of arrays.
//
// Attributes are stored in their *raw* (pre-activation) parameter space, exactly
// as in INRIA 3DGS PLY files, so that reading and writing is lossless:
//   position      x,y,z                                   (N x 3)
//   log_scale     log of the per-axis standard deviation  (N x 3)   exp() to activate
//   rotation      quaternion (w,x,y,z), not necessarily unit (N x 4) normalise to activate
//   opacity_logit                                          (N)       sigmoid() to activate
//   sh_dc         SH band-0 coefficient per RGB channel    (N x 3)
//   sh_rest       SH bands 1..deg, channel-major per Gaussian: for Gaussian i,
//                 channel c and coefficient j (0-based, j < K), the value is
//                 sh_rest[i*3*K + c*K + j] -- the INRIA `f_rest_{c*K+j}` order.
//                 K = (deg+1)^2 - 1, i.e. 0, 3, 8 or 15.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace flexgs {

inline constexpr int kMaxShDegree = 3;

// Number of non-DC SH coefficients per channel for a degree (0 -> 0, 3 -> 15).
constexpr int ShRestCoeffs(int degree) { return (degree + 1) * (degree + 1) - 1; }

struct GaussianCloud {
  int sh_degree = 0;
  std::vector<float> positions;
  std::vector<float> log_scales;
  std::vector<float> rotations;
  std::vector<float> opacity_logits;
  std::vector<float> sh_dc;
  std::vector<float> sh_rest;

  size_t size() const { return opacity_logits.size(); }
  bool empty() const { return opacity_logits.empty(); }
  int rest_coeffs() const { return ShRestCoeffs(sh_degree); }

  // Resizes every array for `n` Gaussians at the current sh_degree (new entries zero).
  void Resize(size_t n);

  // Checks that every array has the length implied by size() and sh_degree.
  absl::Status Validate() const;

  // Returns the Gaussians at `indices` (in that order). Indices must be < size().
  GaussianCloud Gather(absl::Span<const uint32_t> indices) const;
  // The inverse of Gather: Gaussian indices[o] becomes values' Gaussian o. The caller
  // guarantees indices < size(), values.size() == indices.size() and the same SH degree.
  void Scatter(absl::Span<const uint32_t> indices, const GaussianCloud& values);
  // Appends every Gaussian of `other` (same SH degree, or `other` empty).
  void Append(const GaussianCloud& other);

  // Returns a copy truncated to SH degree `degree` (<= sh_degree).
  GaussianCloud WithShDegree(int degree) const;

  // Bytes held by the attribute arrays.
  size_t ByteSize() const;
};

// Counts of non-finite values repaired by SanitizeNonFinite.
struct NonFiniteReport {
  size_t opacity_clamped = 0;  // +-inf opacity logits clamped to a finite logit
  size_t dropped = 0;          // Gaussians removed (NaN anywhere, or inf outside opacity)
  size_t total() const { return opacity_clamped + dropped; }
};

// Makes a cloud safe to render: infinite opacity logits (a common artefact of
// quantised exports, meaning "fully opaque" or "fully transparent") are clamped to
// +-kOpacityLogitLimit; any Gaussian with another non-finite value is dropped.
inline constexpr float kOpacityLogitLimit = 20.0f;
NonFiniteReport SanitizeNonFinite(GaussianCloud& cloud);

// What SanitizeNonFinite would repair, without changing the cloud.
NonFiniteReport CountNonFinite(const GaussianCloud& cloud);

}  // namespace flexgs

// The transform field's inputs: how a world position and a ratio e become lookups in the
// HexPlane, in one definition for the CPU forward (elastic/transform_field.cc), its
// backward (train/transform_field_backward.cc) and the CUDA kernels
// (kernels/elastic_kernels.cu), which must address the very same texels with the very
// same weights.
//
// Plain C++ with no CUDA headers: under nvcc the functions become __host__ __device__
// through FLEXGS_HD (render/raster_math.h).
#pragma once

#include <cmath>

#include "render/raster_math.h"

namespace flexgs {

// Per-axis affine map of positions into the planes' [-1, 1] sample space,
// p' = 2 (p - min) / (max - min) - 1, evaluated as (p - min) * scale - 1.
struct FieldAxes {
  float min[3];
  float scale[3];  // 2 / (max - min); 0 on a degenerate axis
  bool ok[3];      // max - min is positive and finite
};

// The map of the field box [aabb_min, aabb_max] (3 floats each).
FLEXGS_HD FieldAxes FieldInputAxes(const float* aabb_min, const float* aabb_max) {
#if !defined(__CUDACC__)
  using std::isfinite;  // nvcc has a global one for host and device
#endif
  FieldAxes axes;
  for (int d = 0; d < 3; ++d) {
    const float range = aabb_max[d] - aabb_min[d];
    axes.ok[d] = range > 0.0f && isfinite(range);
    axes.min[d] = aabb_min[d];
    axes.scale[d] = axes.ok[d] ? 2.0f / range : 0.0f;
  }
  return axes;
}

// Coordinate of position component p along axis d; a degenerate axis (a scene flat
// along it) samples the plane centre.
FLEXGS_HD float FieldCoord(const FieldAxes& axes, int d, float p) {
  return axes.ok[d] ? (p - axes.min[d]) * axes.scale[d] - 1.0f : 0.0f;
}

// Coordinate of ratio e (the same for every Gaussian of a call).
FLEXGS_HD float FieldRatioCoord(float ratio, float ratio_scale, float ratio_offset) {
  return ratio * ratio_scale + ratio_offset;
}

// One axis of a corner-aligned, border-clamped bilinear lookup: texels i0, i1 and the
// weight w of i1. Matches grid_sample(align_corners=True, padding_mode="border").
struct AxisSample {
  int i0, i1;
  float w;
};

// The lookup of `coord` on an axis of `res` texels. With `slope`, also du/dcoord for the
// backward: 0.5 (res - 1) strictly inside, 0 where u is clamped (as torch, including
// exactly at the border).
FLEXGS_HD AxisSample SampleAxis(float coord, int res, float* slope = nullptr) {
  const float hi = static_cast<float>(res - 1);
  float u = (coord + 1.0f) * 0.5f * hi;
  if (slope != nullptr) *slope = (u > 0.0f && u < hi) ? 0.5f * hi : 0.0f;
  if (!(u > 0.0f)) u = 0.0f;  // also sends NaN to the first texel instead of out of bounds
  if (u > hi) u = hi;
  // i0 <= res-2 so i1 stays in range; at u == res-1 the weight is then exactly 1.
  const int last_cell = res >= 2 ? res - 2 : 0;
  const int iu = static_cast<int>(u);
  const int i0 = iu < last_cell ? iu : last_cell;
  return {i0, i0 + 1 < res ? i0 + 1 : res - 1, u - static_cast<float>(i0)};
}

// Weights of the four texels (b.i0, a.i0), (b.i0, a.i1), (b.i1, a.i0), (b.i1, a.i1) of a
// plane sampled at a (width axis) and b.
struct BilinearWeights {
  float w00, w01, w10, w11;
};
FLEXGS_HD BilinearWeights Bilinear(const AxisSample& a, const AxisSample& b) {
  return {(1.0f - a.w) * (1.0f - b.w), a.w * (1.0f - b.w), (1.0f - a.w) * b.w, a.w * b.w};
}

}  // namespace flexgs

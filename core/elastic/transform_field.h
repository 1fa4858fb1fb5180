// Transform field: moves, rescales and rotates the kept Gaussians for a ratio e.
//
// A HexPlane over (x, y, z, e): six planes (xy, xz, xe, yz, ye, ze); per level the
// six bilinearly sampled C-channel features are multiplied element-wise, and the
// levels are concatenated (F = C * levels). A trunk Linear(F->64) (no activation)
// feeds three heads ReLU -> Linear(64->64) -> ReLU -> Linear(64->k) giving
// dX (3), ds (3), dq (4). Sampling is bilinear, corner-aligned (align_corners=True)
// and border-clamped, like torch.grid_sample in the reference.
//
// Deliberate deviation from the reference code: deltas are applied in the RAW
// parameter space -- position + dX, log_scale + ds, normalize(normalize(q) + dq) --
// so every transformed Gaussian is a valid standard 3DGS Gaussian (positive scale,
// unit quaternion) that any viewer renders the same way. The reference adds ds to
// the *linear* scale (which can go negative) and never renormalises q (building a
// non-orthogonal "rotation"), which only its own rasterizer tolerates.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"
#include "elastic/dense_layer.h"
#include "elastic/field_input.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

struct TransformFieldConfig {
  int channels = 16;                      // feature channels per plane per level
  int base_resolution = 64;               // spatial resolution of level 0
  std::vector<int> multires = {1, 2, 4};  // spatial resolution multipliers per level
  int ratio_resolution = 150;             // texels along the ratio axis (every level)
  int hidden = 64;                        // MLP width
  int feature_dim() const { return channels * static_cast<int>(multires.size()); }
  absl::Status Validate() const;
};

// Plane p of a level covers coordinate pair kPlaneAxes[p] = (a, b) (0=x,1=y,2=z,3=e)
// and is stored as a tensor [channels, res_b, res_a] (a is the fast, width axis).
inline constexpr int kPlaneAxes[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
inline constexpr const char* kPlaneNames[6] = {"xy", "xz", "xe", "yz", "ye", "ze"};

struct HexPlaneLevel {
  int spatial_resolution = 0;
  int ratio_resolution = 0;
  std::array<std::vector<float>, 6> planes;
  // Resolution along axis 0..3 (x, y, z spatial; e ratio).
  int Resolution(int axis) const { return axis == 3 ? ratio_resolution : spatial_resolution; }
};

// True for the three planes whose second axis is the ratio e (xe, ye, ze).
inline bool PlaneHasRatioAxis(int p) { return kPlaneAxes[p][1] == 3; }

// Floats in plane p of `level` with `channels` channels.
inline size_t PlaneValues(int channels, const HexPlaneLevel& level, int p) {
  return static_cast<size_t>(channels) * static_cast<size_t>(level.Resolution(kPlaneAxes[p][0])) *
         static_cast<size_t>(level.Resolution(kPlaneAxes[p][1]));
}

// Maps world positions and ratios to the [-1, 1] sample space of the planes.
struct FieldNormalization {
  std::array<float, 3> aabb_min = {-1, -1, -1};
  std::array<float, 3> aabb_max = {1, 1, 1};
  float ratio_scale = 2.0f;    // coordinate = e * ratio_scale + ratio_offset
  float ratio_offset = -1.0f;  // default maps e in [0, 1] onto [-1, 1]
};

// The box of every elastic model made from `cloud` (trainer, `flexgs elasticize`, PLYs the
// server elasticizes on load, so all three plan alike): the full extent of the positions,
// a flat axis widened by 0.5 on both sides (bundles need min < max); the default box
// for an empty cloud.
FieldNormalization ExtentNormalization(const GaussianCloud& cloud);

struct TransformFieldWeights {
  static constexpr int kHeadOutputs[3] = {3, 3, 4};  // dX, ds, dq
  static constexpr const char* kHeadNames[3] = {"position", "scale", "rotation"};

  TransformFieldConfig config;
  std::vector<HexPlaneLevel> levels;
  DenseLayer trunk;               // F -> hidden
  std::array<DenseLayer, 3> fc1;  // hidden -> hidden, per head
  std::array<DenseLayer, 3> fc2;  // hidden -> kHeadOutputs[h]

  // Planes as in the reference (spatial planes U(0.1, 0.5), ratio planes 1.0), Xavier
  // weights, PyTorch-default biases -- except the heads' last layers, which start at
  // zero so an untrained field is the identity transform (a deliberate deviation:
  // training starts from the input scene instead of a randomly perturbed one).
  static TransformFieldWeights Init(const TransformFieldConfig& config, uint64_t seed);
  absl::Status Validate() const;
};

inline constexpr int kDeltaStride = 10;  // dX(3), ds(3), dq(4) per Gaussian

// deltas[i*10 .. i*10+10) for the Gaussian at positions[i*3..] and ratio e.
void EvalTransformField(const TransformFieldWeights& field, const FieldNormalization& norm,
                        absl::Span<const float> positions, float ratio, absl::Span<float> deltas, ThreadPool* pool);

// Applies deltas in raw parameter space (see the file comment). deltas.size() must be
// cloud.size() * kDeltaStride.
void ApplyTransformDeltas(absl::Span<const float> deltas, GaussianCloud& cloud);

// The planes as EvalTransformField samples them, shared with its backward
// (train/transform_field_backward.h) so that both read the very same values. The ratio
// coordinate is the same for every Gaussian of a call, so each ratio plane (a, e)
// collapses to a line along a (interpolated along e once); lines and spatial planes are
// stored channel-last -- [res_a][C] and [res_b][res_a][C] -- so the C channels of a
// texel are one contiguous, vectorisable run. Indexed [level][plane].
using FieldTables = std::vector<std::array<std::vector<float>, 6>>;
FieldTables BuildFieldTables(const TransformFieldWeights& field, float ratio_coord, ThreadPool* pool);

// The four texels (b.i0, a.i0), (b.i0, a.i1), (b.i1, a.i0), (b.i1, a.i1) that a bilinear
// lookup at (a, b) reads in a channel-last table of width ra (a plane of FieldTables, or
// its gradient), each the start of C channel values.
template <typename T>
struct TexelQuad {
  T *t00, *t01, *t10, *t11;
};
template <typename T>
TexelQuad<T> BilinearTexels(T* table, const AxisSample& a, const AxisSample& b, size_t ra, size_t C) {
  return {table + (b.i0 * ra + a.i0) * C, table + (b.i0 * ra + a.i1) * C, table + (b.i1 * ra + a.i0) * C,
          table + (b.i1 * ra + a.i1) * C};
}

}  // namespace flexgs

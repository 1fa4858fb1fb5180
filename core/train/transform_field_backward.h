// Transform field for training: the backward of ApplyTransformDeltas and of
// EvalTransformField (trunk, heads, multi-resolution HexPlane, and the positions that
// address it), plus the reference's HexPlane regularisers with their gradients.
//
// The backward follows THIS codebase's forward (core/elastic/transform_field.h), which differs
// from the reference FlexGS code on purpose:
//  * deltas are applied in raw parameter space: position + dX, log_scale + ds,
//    q' = normalize(normalize(q) + dq). The reference adds ds to exp(log_scale) and
//    never renormalises q' (section 4.4 of the reference notes), so its gradients
//    differ; ours are the exact gradients of what we render;
//  * positions are normalised with p' = 2 (p - aabb_min) / (aabb_max - aabb_min) - 1
//    (no axis flip; a degenerate axis samples the plane centre and has no gradient)
//    and the ratio coordinate is e * ratio_scale + ratio_offset (raw e in the reference
//    is ratio_scale 1, offset 0). No gradient is produced for e (not a parameter).
// Sampling is grid_sample(align_corners=True, padding_mode="border"); as in torch the
// coordinate gradient is zero where a coordinate is clamped, including exactly at the
// border (u <= 0 or u >= res - 1), and ReLU'(0) = 0.
//
// Determinism (bit-identical for any thread count): MLP weight gradients are summed
// per 256-Gaussian block and then in block order (core/train/internal/block_reduce.h); each HexPlane
// plane is scattered into by exactly one job, Gaussians in index order; per-Gaussian
// outputs are disjoint. Work proceeds in passes of 16384 Gaussians so the per-Gaussian
// scratch (the gradient of every sampled plane value, 4 * levels * 6 * C bytes each)
// stays bounded. Activations are recomputed, not stored.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"
#include "elastic/transform_field.h"
#include "scene/gaussian_cloud.h"
#include "train/attribute_gradients.h"

namespace flexgs {

// A zero-filled TransformFieldWeights with the config and shapes of `like`.
TransformFieldWeights ZerosLike(const TransformFieldWeights& like);

// dL/d(the transformed Gaussians' raw attributes), e.g. from the render of the
// transformed subset: positions 3m, log_scales 3m, rotations 4m.
struct TransformedGradients {
  absl::Span<const float> positions;
  absl::Span<const float> log_scales;
  absl::Span<const float> rotations;
};

// Backward of ApplyTransformDeltas(deltas, cloud) where `input` is the cloud BEFORE the
// deltas. Writes dL/d(deltas) (10m, overwritten) and ADDS dL/d(input raw position,
// log_scale, rotation) into the non-empty spans of grad_inputs. A rotation delta that
// cancels the rotation (the forward keeps the input) gives dL/d dq = 0; a degenerate
// input quaternion (fed as the identity) gets no gradient.
absl::Status ApplyTransformDeltasBackward(const GaussianCloud& input, absl::Span<const float> deltas,
                                          const TransformedGradients& grad_out, absl::Span<float> grad_deltas,
                                          const AttributeGradients& grad_inputs);

// Backward of EvalTransformField(field, norm, positions, ratio, deltas): given
// grad_deltas (10m, layout of the deltas), ADDS dL/d(every plane texel, trunk and head
// weight and bias) into *grad_field (shaped like `field`, e.g. from ZerosLike) and
// dL/d(positions) into grad_positions (3m, or empty to skip).
absl::Status TransformFieldBackward(const TransformFieldWeights& field, const FieldNormalization& norm,
                                    absl::Span<const float> positions, float ratio, absl::Span<const float> grad_deltas,
                                    TransformFieldWeights* grad_field, absl::Span<float> grad_positions,
                                    ThreadPool* pool);

// The reference's HexPlane regularisers (GaussianModel.compute_regulation), summed over
// levels, for planes stored [C, rows = res_b, cols = res_a]:
//   space        = sum over xy, xz, yz of mean((v[r+2] - 2 v[r+1] + v[r])^2) along rows
//   ratio_smooth = the same over xe, ye, ze (rows are the ratio axis)
//   ratio_l1     = sum over xe, ye, ze of mean(|1 - v|)
// value = plane_tv * space + time_smoothness * ratio_smooth + l1_time_planes * ratio_l1.
// Despite the reference's name "plane_tv", the smoothness term is a squared second
// difference, not total variation. Deviation: a plane with fewer than 3 rows contributes
// 0 (torch's mean over an empty tensor is NaN). |x|' uses sign(0) = 0, as torch.
struct HexPlaneRegularizerWeights {
  double plane_tv = 2e-4;         // plane_tv_weight
  double time_smoothness = 1e-3;  // time_smoothness_weight
  double l1_time_planes = 1e-4;   // l1_time_planes
};
struct HexPlaneRegularizers {
  double space = 0.0, ratio_smooth = 0.0, ratio_l1 = 0.0;  // unweighted
  double value = 0.0;                                      // weighted sum
};
// ADDS the gradient of `value` into *grad_field when it is not null.
absl::StatusOr<HexPlaneRegularizers> HexPlaneRegularization(const TransformFieldWeights& field,
                                                            const HexPlaneRegularizerWeights& weights,
                                                            TransformFieldWeights* grad_field, ThreadPool* pool);

}  // namespace flexgs

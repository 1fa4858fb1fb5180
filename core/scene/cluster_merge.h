// Merging a cloud into a subset of itself: each Gaussian joins the cluster of its
// nearest representative and every cluster becomes one Gaussian by moment matching.
//
// Why: a kept subset alone leaves holes where the dropped Gaussians were; decimation
// (PlayCanvas splat-transform, Spark's LOD merge) fills them by merging. Merging onto
// the representatives a selector picked keeps the selection (and so the nested order
// of a stream) while giving each kept Gaussian the "ink" of the ones it stands for.
//
// The moment match is the one of splat-transform and Spark: weights are opacity times
// ellipsoid surface area (the ink a splat puts on screen from any side); the merged
// mean and covariance are the weighted mean and the law of total variance; the merged
// opacity conserves ink (sum of weights / merged area, capped at 1); SH coefficients
// are the weighted mean. A cluster of one is its representative, bit for bit, so
// merging onto every Gaussian returns the input unchanged.
#pragma once

#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

struct MergeOptions {
  // How a Gaussian picks its representative among the `candidates` nearest by centre:
  // cost = d^2 / d_nearest^2 + colour_weight * |SH DC difference|^2
  //        + opacity_weight * (opacity difference)^2.
  // Colour-blind nearest-centre assignment (both weights 0) smears colours across
  // edges; on guitar at 256x256 from all around, colour weight 8 over 8 candidates gives
  // +1.1 / +1.3 / +0.4 / +0.1 dB at 1 / 5 / 10 / 15 % (2 and 32 are both worse; 4 or
  // 16 candidates too), and opacity weight 8 another +0.05 to +0.25 (sh3-9k +0.0 to
  // +0.5; 32 and more cost sh3-9k up to 0.6 dB at 1-5 %). bench/RESULTS.md.
  double colour_weight = 8.0;
  double opacity_weight = 8.0;
  int candidates = 8;
  // Hard-EM passes after that first assignment: each Gaussian moves to the merged
  // Gaussian under which its centre is most likely (Mahalanobis distance plus
  // log-determinant, plus the colour term) among the `candidates` nearest merged
  // centres, and the clusters are merged again; clusters then follow surfaces instead of
  // Voronoi cells. Two passes: guitar +0.09 / +0.25 / +0.47 / +0.38 dB, sh3-9k +0.23 /
  // +0.60 / +0.36 / +0.39 dB at 1 / 5 / 10 / 15 %; a third adds under 0.05 dB. Each pass
  // costs one more assignment and merge. Only MergeIntoRepresentatives uses them.
  int refine_passes = 2;
};

// For each Gaussian of `cloud`, the position in `representatives` of the one it joins
// (MergeOptions; ties to the nearer, then the lower position). `representatives` are
// distinct indices into `cloud`; each joins itself. Deterministic for any thread count.
absl::StatusOr<std::vector<uint32_t>> NearestRepresentative(const GaussianCloud& cloud,
                                                            absl::Span<const uint32_t> representatives,
                                                            const MergeOptions& options, ThreadPool* pool);

// Gaussian i's 3D covariance R diag(exp(2 log_scale)) R^T in double (a quaternion of
// norm below 1e-12 counts as the identity): what the merge moment-matches, and what the
// planner compares when deciding whether a merged Gaussian changed visibly.
Eigen::Matrix3d GaussianCovariance(const GaussianCloud& cloud, size_t i);

// The cloud of representatives.size() Gaussians, entry k the moment-matched merge of
// the cluster of representatives[k] (NearestRepresentative's assignment).
// InvalidArgument when `representatives` is empty, repeats an index or names one out
// of range.
absl::StatusOr<GaussianCloud> MergeIntoRepresentatives(const GaussianCloud& cloud,
                                                       absl::Span<const uint32_t> representatives,
                                                       const MergeOptions& options, ThreadPool* pool);

}  // namespace flexgs

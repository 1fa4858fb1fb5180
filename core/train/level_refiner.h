// LevelRefiner: trains the attributes of a merged-level model's rungs against the input.
//
// A merged level (scene/cluster_merge.h) moment-matches each held Gaussian to the
// cluster it represents: a good start, not an optimum. Decimation stops there. Here
// each rung's Gaussians are optimised with Adam (3DGS's learning rates, 0.8 L1 + 0.2
// D-SSIM) to reproduce renders of the input from views drawn over the sphere and the
// distance range of scene/view_sampler.h, so a small level fills its holes from wherever
// a viewer stands. On guitar this lifted the 1 / 5 / 10 / 15 % levels over the merge by
// 2.6 / 4.3 / 5.0 / 5.6 dB on views it did not train on (bench/RESULTS.md).
//
// Nesting is kept: rung k optimises only what it sends (its new Gaussians and the
// earlier ones its merge replaces, or the `replacement_share` of those whose merge
// changed most), the rest stay what the client already holds, so a rung sends at most the
// merge's Gaussians (share 0: no replacements below 100 %). A trained replacement whose
// change the stream would not send (`visible` says no) is put back to what the client
// holds. The input itself is untouched: the model's 100 % level is still the original,
// bit for bit.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "elastic/elastic_model.h"
#include "render/rasterizer.h"
#include "render/rasterizer_backward.h"
#include "scene/view_sampler.h"

namespace flexgs {

struct LevelRefineOptions {
  int iterations = 300;     // Adam steps per rung
  int teacher_views = 150;  // views of the input, rendered once and cycled through
  ViewDistribution views;   // where those views are drawn from
  uint64_t seed = 1;        // picks the views
  // Share of each rung's replacements (earlier Gaussians whose merge changed) trained and
  // re-sent, the largest changes first; the rest keep what the client holds. 1: all of
  // them (most picture per byte); 0: additions only (fewest bytes per Gaussian).
  double replacement_share = 1.0;
  std::array<float, 3> background = {0.0f, 0.0f, 0.0f};
  // Whether the stream re-sends Gaussian i of `now` over Gaussian j of `held` (the
  // planner's ReplacementIsVisible with the model's tolerance); empty: any change in bits.
  std::function<bool(const GaussianCloud& now, size_t i, const GaussianCloud& held, size_t j)> visible;
  // iterations in [1, 1e6], views in [1, 1e5] holding at most kMaxTeacherBytes of images,
  // share in [0, 1], the view distribution valid.
  absl::Status Validate() const;
};

// The teacher's images stay in memory for the whole run (4 GiB at most).
inline constexpr uint64_t kMaxTeacherBytes = uint64_t{4} << 30;

struct RungReport {
  double ratio = 0;
  size_t held = 0;                       // Gaussians held after the rung
  size_t optimized = 0;                  // of which this rung trained and sends
  double first_loss = 0, last_loss = 0;  // mean over the first and last 10 % of steps
};

// The rungs (MergedRungs in stream/level_planner.h) refined in order, each as a
// RefinedRung (held Gaussians in ascending model-index order, with their
// HeldIndexDigest). `rungs` must nest (each holds the
// previous rung's indices first, in the same order). Deterministic for a given backend
// and thread count (the CPU backends: for any thread count). `progress` (optional) is
// called after each rung.
absl::StatusOr<std::vector<RefinedRung>> RefineRungs(const GaussianCloud& input, const std::vector<MergedRung>& rungs,
                                                     const LevelRefineOptions& options, RasterBackend& teacher,
                                                     DifferentiableRasterBackend& student, ThreadPool* pool,
                                                     const std::function<void(const RungReport&)>& progress = {});

}  // namespace flexgs

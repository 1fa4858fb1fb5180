// Viewpoints from all around a scene: a distribution for training, a fixed set for tests.
//
// Orbit rings cover one height and one distance. A viewer of a served scene stands
// anywhere: high above, below the middle, close enough that the object overflows the
// frame. Training on a ring and evaluating near it hid how the elastic levels look from
// elsewhere, so training draws a fresh camera per step from a ViewDistribution and
// `flexgs eval --views sphere:N` scores a fixed set over the sphere with close-ups.
//
// Distances are multiples of the "fit distance" (the distance at which the scene's
// robust bounding sphere just fits the narrower field of view, as OrbitCameras uses):
// 1 frames the whole object, 0.5 makes it about twice the frame (a close-up).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scene/camera.h"
#include "scene/orbit.h"

namespace flexgs {

enum class ViewDirections { kSphere, kUpperHemisphere };

struct ViewDistribution {
  ViewDirections directions = ViewDirections::kSphere;  // uniform over the (half) sphere
  double min_distance = 0.45;                           // multiples of the fit distance, sampled log-uniformly
  double max_distance = 1.3;
  double min_fov_deg = 40.0;  // horizontal field of view, sampled uniformly
  double max_fov_deg = 65.0;
  // The look-at point moves up to this fraction of the bounding radius from the centre
  // (uniform in the ball), so close-ups also look at parts away from the middle.
  double target_jitter = 0.3;
  int width = 256;
  int height = 256;
  Eigen::Vector3d up{0, -1, 0};  // world direction shown up (3DGS scenes are y-down)

  // Each field's range, naming the first that is wrong: distances positive, finite and
  // min <= max; fields of view in (0, 180) degrees with min <= max; jitter in [0, 1];
  // sizes in [1, 32768]; up finite and non-zero.
  absl::Status Validate() const;
};

// "sphere" or "hemisphere" (upper, towards `up`); anything else is InvalidArgument.
absl::StatusOr<ViewDirections> ParseViewDirections(absl::string_view text);
const char* ViewDirectionsName(ViewDirections d);
// "LO:HI" (two positive numbers, LO <= HI; "X" alone means X:X) for --view-distance and
// --view-fov; `what` names the flag in the error.
absl::Status ParseRange(absl::string_view text, absl::string_view what, double* lo, double* hi);

// The camera for `key`: a pure function of (bounds, distribution, key), the same on every
// machine (SplitMix64 and double arithmetic only), so a training run that draws camera
// IterationKey(seed, it) at step `it` resumes bit-identically. The distribution is
// assumed valid.
Camera SampleView(const SceneBounds& bounds, const ViewDistribution& dist, uint64_t key);

// A camera near `base` for distilling around dataset views: its centre moved by up to
// `jitter` times its distance to `look_at` (uniform in the ball), looking at `look_at`,
// with base's intrinsics and size. A pure function of its arguments.
Camera SampleNearView(const Camera& base, const Eigen::Vector3d& look_at, double jitter, uint64_t key);

// Where a dataset camera looks: the point of its optical axis nearest the scene centre
// (at least a tenth of the scene radius in front of it).
Eigen::Vector3d LookAtPoint(const Camera& camera, const SceneBounds& bounds);

// `count` cameras SampleView(bounds, dist, hash(seed, i)), named "view_000", ...
std::vector<Camera> SampleViews(const SceneBounds& bounds, const ViewDistribution& dist, uint64_t seed, int count);

// The fixed evaluation set of `flexgs eval --views sphere:N`: N directions on a
// Fibonacci sphere (rotated by a fixed angle, so none coincides with an orbit ring or a
// GI view), looking at the centre with a 50-degree field of view, at distances cycling
// 1.0, 0.7, 0.5 of the fit distance (every third view a close-up with the object larger
// than the frame). Names "sphere_000", ... ; count in [1, 100000].
absl::StatusOr<std::vector<Camera>> EvalSphereViews(const SceneBounds& bounds, int count, int width, int height,
                                                    const Eigen::Vector3d& up = Eigen::Vector3d(0, -1, 0));

// The distance factors EvalSphereViews cycles through (for reports).
inline constexpr double kEvalSphereDistances[3] = {1.0, 0.7, 0.5};

}  // namespace flexgs

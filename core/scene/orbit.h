// Synthetic camera paths around a scene: robust bounds and orbit cameras.
//
// The shared scenes ship without cameras, so renders and benchmarks use orbits
// fitted to the scene's robust bounds (quantiles, so stray far-away Gaussians do
// not shrink the object to a dot).
#pragma once

#include <vector>

#include <Eigen/Core>

#include "absl/status/statusor.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

// Axis-aligned box.
struct SceneBounds {
  Eigen::Vector3d lo = Eigen::Vector3d::Zero();
  Eigen::Vector3d hi = Eigen::Vector3d::Zero();

  Eigen::Vector3d centre() const { return 0.5 * (lo + hi); }
  double radius() const { return 0.5 * (hi - lo).norm(); }  // half diagonal
};

// Per-axis quantiles of the Gaussian centres. Gaussians with a non-finite
// coordinate are ignored; an empty (or all non-finite) cloud gives a zero box.
// Quantiles are clamped to [0, 1].
SceneBounds RobustBounds(const GaussianCloud& cloud, double lo_quantile = 0.01, double hi_quantile = 0.99);

struct OrbitOptions {
  int count = 8;    // number of cameras
  int width = 800;  // image size in pixels
  int height = 800;
  double fov_x_deg = 50.0;      // horizontal field of view; fy = fx (square pixels)
  double elevation_deg = 20.0;  // ring height above the centre, towards `up` (ring only)
  double distance_scale = 1.0;  // multiplies the fitted distance (< 1 zooms in)
  bool sphere = false;          // false: ring at elevation; true: Fibonacci sphere (poles excluded)
  // Added to every camera's azimuth, so a second orbit can sit between the views of a
  // first one (held-out evaluation views); 0 leaves the cameras exactly as without it.
  double azimuth_offset_deg = 0.0;
  Eigen::Vector3d up{0, -1, 0};  // world direction shown up on screen (3DGS scenes are y-down)
};

// Cameras around bounds.centre(), all looking at it, at a common distance such
// that the bounding sphere (radius()) fits the narrower field of view with a
// small margin. Ring: camera i at azimuth 360*i/count + azimuth_offset_deg degrees. Names are
// "orbit_000", "orbit_001", ... (zero-padded so they sort). Deterministic.
// A degenerate (zero-size) box is treated as a unit sphere. Options are assumed
// valid (see MakeOrbitCameras).
std::vector<Camera> OrbitCameras(const SceneBounds& bounds, const OrbitOptions& options);

// The distance from the centre at which a sphere of `radius` (a degenerate radius counts
// as 1) fits the narrower field of view of a width x height image with a small margin,
// times `scale`: the framing of OrbitCameras and of the view sampler.
double FitDistance(double radius, double fov_x_deg, int width, int height, double scale = 1.0);

// Validates `options` and returns OrbitCameras(RobustBounds(cloud), options).
absl::StatusOr<std::vector<Camera>> MakeOrbitCameras(const GaussianCloud& cloud, const OrbitOptions& options);

// Checks the ranges documented on OrbitOptions (count in [1, 100000], sizes in
// [1, 32768], fov in (1, 179) degrees, |elevation| < 90, distance_scale > 0,
// finite azimuth offset, non-zero finite up).
absl::Status ValidateOrbitOptions(const OrbitOptions& options);

}  // namespace flexgs

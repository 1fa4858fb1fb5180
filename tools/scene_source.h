// Loading what the CLI commands operate on: a scene file and the cameras to view it from.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"
#include "scene/orbit.h"

namespace flexgs::tools {

// Either --cameras FILE|DIR or --orbit N, plus the output size for orbit views.
struct ViewSpec {
  std::string cameras_path;  // COLMAP model dir or INRIA cameras.json
  int orbit = 0;             // number of orbit views when cameras_path is empty
  int width = 800;
  int height = 800;
  double fov_x_deg = 50.0;
  double elevation_deg = 20.0;
};

// A PLY file (any supported layout) or a model bundle directory (its full Gaussians).
absl::StatusOr<GaussianCloud> LoadScene(const std::string& path);

// True when `path` is an elastic model bundle directory.
bool IsModelBundle(const std::string& path);

// The scene at elastic ratio e: for a bundle, the transformed top-k subset; a plain
// PLY only supports e = 1 (use `flexgs elasticize` to make it elastic).
// `view_bounds` receives the robust bounds of the FULL scene, so orbit views frame
// every ratio of a model identically.
absl::StatusOr<GaussianCloud> LoadSceneAtRatio(const std::string& path, double ratio, SceneBounds* view_bounds);

// Cameras for `cloud` per `spec`. Dataset cameras are rescaled to width/height
// when both are given explicitly (width/height > 0 and differing).
absl::StatusOr<std::vector<Camera>> ResolveCameras(const SceneBounds& bounds, const ViewSpec& spec,
                                                   bool resize_dataset_cameras);

// Parses "r,g,b" with components in [0,1] (or 0..255 integers when any exceeds 1).
absl::StatusOr<std::array<float, 3>> ParseBackground(const std::string& text);

}  // namespace flexgs::tools

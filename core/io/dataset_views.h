// Dataset views: a camera file (INRIA cameras.json or a COLMAP model) plus a folder of
// PNG images, split into training and test views the way the reference does
// (cameras sorted by name, every kLlffHold-th is a test view, the rest train).
//
// Everything that can be wrong with a dataset -- a missing or unreadable image, an
// image whose aspect ratio is not its camera's, no cameras at all -- is reported by
// LoadDatasetViews, naming the file, so a training run fails before it starts.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "scene/camera.h"
#include "scene/image.h"

namespace flexgs {

inline constexpr int kLlffHold = 8;  // every 8th camera by name is a test view

struct DatasetCameras {
  std::vector<Camera> train;
  std::vector<Camera> test;
  size_t total() const { return train.size() + test.size(); }
};

// Loads the cameras (LoadCameras) and splits them. InvalidArgument when there are none.
absl::StatusOr<DatasetCameras> SplitDatasetCameras(const std::string& cameras_path);

// The PNG of a camera's image: `dir/name`, else the same stem with .png/.PNG.
// NotFound naming every path tried (JPEGs are not read: only PNG is supported).
absl::StatusOr<std::string> FindDatasetImage(const std::string& dir, const std::string& camera_name);

struct DatasetView {
  Camera camera;  // resized to the image's (or the requested) size
  Image image;    // RGB, alpha composited over the background
};

// Reads the image of every camera, composites alpha over `background`, and, when
// width > 0, area-resamples to width x height (cameras resized to match).
absl::StatusOr<std::vector<DatasetView>> LoadDatasetViews(const std::string& images_dir,
                                                          const std::vector<Camera>& cameras,
                                                          const std::array<float, 3>& background, int width = 0,
                                                          int height = 0);

}  // namespace flexgs

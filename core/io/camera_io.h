// Camera set readers/writers: COLMAP sparse models and INRIA 3DGS cameras.json.
//
// All readers return cameras that passed Camera::Validate(), with Camera::name set
// to the image name. Poses are converted to the world-to-camera convention of
// core/scene/camera.h (which is COLMAP's own, so COLMAP poses are taken as is).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scene/camera.h"

namespace flexgs {

// Reads a COLMAP sparse model. `dir` is either the model folder itself (holding
// cameras.bin + images.bin, or cameras.txt + images.txt; binary wins if both
// exist) or a dataset folder holding sparse/0 (or sparse/). Supported camera
// models: SIMPLE_PINHOLE, PINHOLE; SIMPLE_RADIAL, RADIAL and OPENCV are accepted
// with a warning because their distortion is ignored (3DGS expects undistorted
// images); fisheye and other models are rejected. Cameras are sorted by name.
absl::StatusOr<std::vector<Camera>> ReadColmapModel(const std::string& dir);

// Writes a text COLMAP model (cameras.txt, images.txt, empty points3D.txt) into
// `dir` (created if missing): one PINHOLE camera per image, ids from 1.
absl::Status WriteColmapModelText(const std::string& dir, const std::vector<Camera>& cameras);

// Reads an INRIA 3DGS cameras.json (array of {id, img_name, width, height,
// position, rotation, fx, fy}; `rotation` is camera-to-world, rows). The format
// has no principal point: it is taken as the image centre unless the extra keys
// "cx"/"cy" written by WriteInriaCamerasJson are present.
absl::StatusOr<std::vector<Camera>> ReadInriaCamerasJson(const std::string& path);

// Writes cameras in the INRIA cameras.json format plus "cx"/"cy" keys.
absl::Status WriteInriaCamerasJson(const std::string& path, const std::vector<Camera>& cameras);

// Loads cameras from a `.json` file (INRIA format) or a directory (COLMAP model).
absl::StatusOr<std::vector<Camera>> LoadCameras(const std::string& path);

}  // namespace flexgs

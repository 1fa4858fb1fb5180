// Pinhole camera with OpenCV axes (x right, y down, z forward).
//
// Pose is world-to-camera: X_cam = R * X_world + t (the COLMAP convention).
// Pixel (u, v) has its centre at (u + 0.5, v + 0.5); a point projects to
// (fx * X/Z + cx, fy * Y/Z + cy), so cx = width/2 is a centred principal point.
#pragma once

#include <string>

#include <Eigen/Core>
#include "absl/status/status.h"

namespace flexgs {

struct Camera {
  int width = 0;
  int height = 0;
  double fx = 0, fy = 0, cx = 0, cy = 0;
  Eigen::Matrix3d R = Eigen::Matrix3d::Identity();  // world -> camera rotation
  Eigen::Vector3d t = Eigen::Vector3d::Zero();      // world -> camera translation
  std::string name;                                 // image name, if any

  // Camera centre in world coordinates.
  Eigen::Vector3d Centre() const { return -R.transpose() * t; }

  // Checks sizes, focal lengths, and that R is a finite rotation.
  absl::Status Validate() const;

  // Returns this camera rescaled to a new image size (intrinsics scaled per axis).
  Camera Resized(int new_width, int new_height) const;

  // Builds a camera at `eye` looking at `target`. `up` is the world direction that
  // should appear up on screen (OpenCV's camera y axis points down).
  static Camera LookAt(const Eigen::Vector3d& eye, const Eigen::Vector3d& target, const Eigen::Vector3d& up, int width,
                       int height, double fov_x_deg);
};

}  // namespace flexgs

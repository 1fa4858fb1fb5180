#include "scene/camera.h"

#include <cmath>

#include <Eigen/Geometry>

#include "absl/strings/str_cat.h"

namespace flexgs {

absl::Status Camera::Validate() const {
  if (width <= 0 || height <= 0 || width > 32768 || height > 32768) {
    return absl::InvalidArgumentError(absl::StrCat("camera '", name, "' has invalid size ", width, "x", height));
  }
  if (!(fx > 0) || !(fy > 0) || !std::isfinite(fx) || !std::isfinite(fy) || !std::isfinite(cx) || !std::isfinite(cy)) {
    return absl::InvalidArgumentError(
        absl::StrCat("camera '", name, "' has invalid intrinsics fx=", fx, " fy=", fy, " cx=", cx, " cy=", cy));
  }
  if (!R.allFinite() || !t.allFinite()) {
    return absl::InvalidArgumentError(absl::StrCat("camera '", name, "' has a non-finite pose"));
  }
  const double ortho = (R * R.transpose() - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff();
  if (ortho > 1e-3 || R.determinant() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("camera '", name, "' rotation is not a rotation matrix"));
  }
  return absl::OkStatus();
}

Camera Camera::Resized(int new_width, int new_height) const {
  Camera c = *this;
  const double sx = static_cast<double>(new_width) / width;
  const double sy = static_cast<double>(new_height) / height;
  c.width = new_width;
  c.height = new_height;
  c.fx *= sx;
  c.cx *= sx;
  c.fy *= sy;
  c.cy *= sy;
  return c;
}

Camera Camera::LookAt(const Eigen::Vector3d& eye, const Eigen::Vector3d& target, const Eigen::Vector3d& up, int width,
                      int height, double fov_x_deg) {
  // Camera axes in world coordinates: z forward, x right, y down.
  Eigen::Vector3d z = (target - eye).normalized();
  Eigen::Vector3d x = z.cross(up);  // so that camera y (image down) = -up
  if (x.norm() < 1e-9) x = z.unitOrthogonal();
  x.normalize();
  Eigen::Vector3d y = z.cross(x);
  Camera c;
  c.width = width;
  c.height = height;
  c.R.row(0) = x.transpose();
  c.R.row(1) = y.transpose();
  c.R.row(2) = z.transpose();
  c.t = -c.R * eye;
  c.fx = 0.5 * width / std::tan(0.5 * fov_x_deg * M_PI / 180.0);
  c.fy = c.fx;
  c.cx = 0.5 * width;
  c.cy = 0.5 * height;
  return c;
}

}  // namespace flexgs

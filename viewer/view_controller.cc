#include "viewer/view_controller.h"

#include <algorithm>
#include <cmath>

namespace flexgs::viewer {
namespace {

constexpr double kDegPerPixel = 0.3;
constexpr double kMaxPitch = 89.0;
constexpr double kPi = 3.14159265358979323846;
const Eigen::Vector3d kUp(0, -1, 0);  // 3DGS scenes are y-down

double Rad(double deg) { return deg * kPi / 180.0; }

// Unit vector from the target towards the eye.
Eigen::Vector3d Outward(const ViewPose& p) {
  const double cy = std::cos(Rad(p.yaw_deg)), sy = std::sin(Rad(p.yaw_deg));
  const double cp = std::cos(Rad(p.pitch_deg)), sp = std::sin(Rad(p.pitch_deg));
  return cp * (cy * Eigen::Vector3d::UnitX() + sy * Eigen::Vector3d::UnitZ()) + sp * kUp;
}

}  // namespace

ViewController::ViewController(const SceneBounds& bounds, double fov_x_deg, int width, int height)
    : fit_distance_(FitDistance(bounds.radius(), fov_x_deg, width, height)), fov_x_deg_(fov_x_deg) {
  home_.target = bounds.centre();
  home_.yaw_deg = 0;
  home_.pitch_deg = 20;  // the orbit views' default elevation
  home_.distance = fit_distance_;
  pose_ = home_;
}

void ViewController::Orbit(double dx, double dy) {
  pose_.yaw_deg = std::fmod(pose_.yaw_deg - kDegPerPixel * dx, 360.0);
  pose_.pitch_deg = std::clamp(pose_.pitch_deg + kDegPerPixel * dy, -kMaxPitch, kMaxPitch);
}

void ViewController::Pan(double dx, double dy, int viewport_height) {
  const Camera cam = CameraFor(viewport_height, viewport_height);
  // At the target's depth one pixel spans distance / fy world units.
  const double per_pixel = pose_.distance / cam.fy;
  const Eigen::Vector3d right = cam.R.row(0).transpose();  // camera x in world
  const Eigen::Vector3d down = cam.R.row(1).transpose();   // camera y in world
  pose_.target -= per_pixel * (dx * right + dy * down);
}

void ViewController::Zoom(double steps) {
  pose_.distance = std::clamp(pose_.distance * std::pow(0.9, steps), 0.01 * fit_distance_, 100.0 * fit_distance_);
}

void ViewController::Fly(double forward, double right, double up, double seconds) {
  const Camera cam = CameraFor(2, 2);
  const Eigen::Vector3d ahead = cam.R.row(2).transpose();
  const Eigen::Vector3d side = cam.R.row(0).transpose();
  const double step = 0.5 * fit_distance_ * seconds;
  pose_.target += step * (std::clamp(forward, -1.0, 1.0) * ahead + std::clamp(right, -1.0, 1.0) * side +
                          std::clamp(up, -1.0, 1.0) * kUp);
}

void ViewController::Reset() { pose_ = home_; }

void ViewController::SetOrbit(double yaw_deg, double pitch_deg, double distance_scale) {
  pose_.target = home_.target;
  pose_.yaw_deg = yaw_deg;
  pose_.pitch_deg = std::clamp(pitch_deg, -kMaxPitch, kMaxPitch);
  pose_.distance = std::clamp(distance_scale, 0.01, 100.0) * fit_distance_;
}

Eigen::Vector3d ViewController::Eye() const { return pose_.target + pose_.distance * Outward(pose_); }

Camera ViewController::CameraFor(int width, int height) const {
  return Camera::LookAt(Eye(), pose_.target, kUp, width, height, fov_x_deg_);
}

}  // namespace flexgs::viewer

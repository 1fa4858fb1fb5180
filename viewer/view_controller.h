// ViewController: the camera a person steers in flexgs-view -- orbit, pan and zoom with
// the mouse, WASD flight, reset -- as numbers, without any window code, so scripts and
// tests drive it exactly as the mouse does.
//
// The pose is an orbit around a target point: yaw about the scene's up axis (3DGS
// scenes are y-down, so up is -y), pitch above the horizon, and a distance. Reset
// frames the scene's bounds as the orbit views of `flexgs render --orbit` do.
#pragma once

#include <Eigen/Core>

#include "scene/camera.h"
#include "scene/orbit.h"

namespace flexgs::viewer {

struct ViewPose {
  Eigen::Vector3d target = Eigen::Vector3d::Zero();
  double yaw_deg = 0;    // about the up axis; 0 looks from +x towards the target
  double pitch_deg = 0;  // above the horizon, within (-89, 89)
  double distance = 1;   // eye to target, > 0
};

class ViewController {
 public:
  // Frames `bounds` with a horizontal field of view of `fov_x_deg` for a window of
  // width x height (the fit distance depends on the aspect).
  ViewController(const SceneBounds& bounds, double fov_x_deg, int width, int height);

  // Mouse drag with the left button: `dx`, `dy` pixels turn the view by 0.3 degrees
  // per pixel (right moves the eye left round the target, down raises it).
  void Orbit(double dx, double dy);
  // Right-button drag: moves the target so the scene follows the pointer at the
  // target's depth in a viewport `viewport_height` pixels tall.
  void Pan(double dx, double dy, int viewport_height);
  // Wheel: each step up brings the eye 10% closer (down: further), within
  // [0.01, 100] times the fit distance.
  void Zoom(double steps);
  // WASD/QE flight for `seconds`: forward (along the view), right and up (scene up),
  // each in [-1, 1], at 0.5 fit distances per second; eye and target move together.
  void Fly(double forward, double right, double up, double seconds);
  // Back to the framing of the constructor.
  void Reset();
  // A pose given as numbers (scripts): yaw and pitch in degrees and the distance as a
  // multiple of the fit distance, around the bounds' centre.
  void SetOrbit(double yaw_deg, double pitch_deg, double distance_scale);

  const ViewPose& pose() const { return pose_; }
  Eigen::Vector3d Eye() const;
  // The camera for an image of width x height at the current pose.
  Camera CameraFor(int width, int height) const;

 private:
  ViewPose home_;
  ViewPose pose_;
  double fit_distance_ = 1;
  double fov_x_deg_ = 50;
};

}  // namespace flexgs::viewer

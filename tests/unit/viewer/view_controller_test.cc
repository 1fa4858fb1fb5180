// ViewController: the numbers behind the mouse and keyboard of flexgs-view.
#include "viewer/view_controller.h"

#include <cmath>

#include "gtest/gtest.h"

namespace flexgs::viewer {
namespace {

SceneBounds UnitBox() {
  SceneBounds b;
  b.lo = Eigen::Vector3d(-1, -1, -1);
  b.hi = Eigen::Vector3d(1, 1, 1);
  return b;
}

// Where the scene centre lands in a w x h image of the current view.
Eigen::Vector2d ProjectCentre(const ViewController& v, int w, int h) {
  const Camera c = v.CameraFor(w, h);
  const Eigen::Vector3d p = c.R * Eigen::Vector3d::Zero() + c.t;
  return {c.fx * p.x() / p.z() + c.cx, c.fy * p.y() / p.z() + c.cy};
}

TEST(ViewControllerTest, StartsFramingTheBoundsAndLooksAtTheCentre) {
  ViewController v(UnitBox(), 50, 640, 480);
  EXPECT_NEAR(v.pose().distance, FitDistance(std::sqrt(3.0), 50, 640, 480), 1e-9);
  EXPECT_NEAR((v.Eye() - Eigen::Vector3d::Zero()).norm(), v.pose().distance, 1e-9);
  EXPECT_LT(v.Eye().y(), 0) << "20 degrees above the horizon in a y-down scene";
  const Eigen::Vector2d px = ProjectCentre(v, 640, 480);
  EXPECT_NEAR(px.x(), 320, 1e-6);
  EXPECT_NEAR(px.y(), 240, 1e-6);
}

TEST(ViewControllerTest, OrbitKeepsDistanceAndClampsPitch) {
  ViewController v(UnitBox(), 50, 400, 400);
  const double d = v.pose().distance;
  const Eigen::Vector3d before = v.Eye();
  v.Orbit(100, 0);  // 30 degrees of yaw
  EXPECT_NEAR((v.Eye()).norm(), d, 1e-9);
  EXPECT_NEAR(std::acos(before.normalized().dot(v.Eye().normalized())), 30 * M_PI / 180 * std::cos(20 * M_PI / 180),
              0.02);
  v.Orbit(0, 10'000);
  EXPECT_NEAR(v.pose().pitch_deg, 89, 1e-9) << "never over the pole (the up vector would flip)";
  v.Orbit(0, -20'000);
  EXPECT_NEAR(v.pose().pitch_deg, -89, 1e-9);
}

TEST(ViewControllerTest, PanMovesTheSceneWithThePointer) {
  ViewController v(UnitBox(), 50, 400, 400);
  v.Pan(40, 0, 400);  // drag right: the scene follows the pointer
  const Eigen::Vector2d px = ProjectCentre(v, 400, 400);
  EXPECT_NEAR(px.x(), 200 + 40, 1e-6);
  EXPECT_NEAR(px.y(), 200, 1e-6);
}

TEST(ViewControllerTest, ZoomIsBoundedAndResetRestores) {
  ViewController v(UnitBox(), 50, 400, 400);
  const ViewPose home = v.pose();
  v.Zoom(1);
  EXPECT_NEAR(v.pose().distance, 0.9 * home.distance, 1e-9);
  v.Zoom(1000);
  EXPECT_NEAR(v.pose().distance, 0.01 * home.distance, 1e-9);
  v.Zoom(-10'000);
  EXPECT_NEAR(v.pose().distance, 100 * home.distance, 1e-6);
  v.Fly(1, 0.5, -1, 2);
  v.Orbit(33, 12);
  v.Reset();
  EXPECT_EQ(v.pose().target, home.target);
  EXPECT_EQ(v.pose().distance, home.distance);
  EXPECT_EQ(v.pose().yaw_deg, home.yaw_deg);
  EXPECT_EQ(v.pose().pitch_deg, home.pitch_deg);
}

TEST(ViewControllerTest, FlyForwardMovesAlongTheView) {
  ViewController v(UnitBox(), 50, 400, 400);
  const Eigen::Vector3d eye = v.Eye();
  const Eigen::Vector3d ahead = (v.pose().target - eye).normalized();
  v.Fly(1, 0, 0, 1.0);  // 0.5 fit distances
  const Eigen::Vector3d moved = v.Eye() - eye;
  EXPECT_NEAR(moved.norm(), 0.5 * v.pose().distance, 1e-9);
  EXPECT_NEAR(moved.normalized().dot(ahead), 1.0, 1e-9);
  v.Fly(5, 0, 0, 1.0);  // components are clamped to [-1, 1]
  EXPECT_NEAR((v.Eye() - eye).norm(), v.pose().distance, 1e-9);
}

TEST(ViewControllerTest, SetOrbitPlacesTheEye) {
  ViewController v(UnitBox(), 50, 400, 400);
  const double fit = v.pose().distance;
  v.SetOrbit(90, 0, 0.5);
  EXPECT_NEAR(v.Eye().x(), 0, 1e-9);
  EXPECT_NEAR(v.Eye().y(), 0, 1e-9);
  EXPECT_NEAR(v.Eye().z(), 0.5 * fit, 1e-9);
}

}  // namespace
}  // namespace flexgs::viewer

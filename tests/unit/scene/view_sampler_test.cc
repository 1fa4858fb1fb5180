#include "scene/view_sampler.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

namespace flexgs {
namespace {

SceneBounds Box() {
  SceneBounds b;
  b.lo = Eigen::Vector3d(-1.0, -0.5, 2.0);
  b.hi = Eigen::Vector3d(3.0, 1.5, 4.0);
  return b;
}

// The camera's viewing direction (world), and its distance to the point it looks at
// along that direction from the scene centre's side: recovered from the pose.
Eigen::Vector3d Forward(const Camera& c) { return c.R.row(2).transpose(); }

bool SameCamera(const Camera& a, const Camera& b) {
  return a.width == b.width && a.height == b.height && a.fx == b.fx && a.fy == b.fy && a.R == b.R && a.t == b.t;
}

TEST(ViewSamplerTest, DeterministicPerKeyAndSeed) {
  ViewDistribution d;
  const SceneBounds b = Box();
  EXPECT_TRUE(SameCamera(SampleView(b, d, 42), SampleView(b, d, 42)));
  EXPECT_FALSE(SameCamera(SampleView(b, d, 42), SampleView(b, d, 43)));
  const std::vector<Camera> a = SampleViews(b, d, 7, 20), c = SampleViews(b, d, 7, 20), e = SampleViews(b, d, 8, 20);
  ASSERT_EQ(a.size(), 20u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(SameCamera(a[i], c[i]));
    EXPECT_FALSE(SameCamera(a[i], e[i]));
    EXPECT_TRUE(a[i].Validate().ok());
  }
  EXPECT_EQ(a[3].name, "view_003");
}

// Directions cover the sphere evenly: the mean direction is near zero and each of the
// eight octants gets about an eighth; distances and fields of view stay in range and
// the distances are log-uniform (median at the geometric mean).
TEST(ViewSamplerTest, CoversTheSphereAndTheDistanceRange) {
  ViewDistribution d;
  d.target_jitter = 0.0;  // cameras look at the centre, so the direction is recoverable
  const SceneBounds b = Box();
  const int n = 4000;
  Eigen::Vector3d mean = Eigen::Vector3d::Zero();
  int octants[8] = {};
  std::vector<double> scales;
  for (int i = 0; i < n; ++i) {
    const Camera c = SampleView(b, d, 1000 + i);
    const Eigen::Vector3d offset = c.Centre() - b.centre();
    const Eigen::Vector3d dir = offset.normalized();
    EXPECT_LT((Forward(c) + dir).norm(), 1e-9);  // looks at the centre
    mean += dir;
    octants[(dir.x() > 0) + 2 * (dir.y() > 0) + 4 * (dir.z() > 0)]++;
    const double fov = 2.0 * std::atan(0.5 * c.width / c.fx) * 180.0 / M_PI;
    EXPECT_GE(fov, d.min_fov_deg - 1e-9);
    EXPECT_LE(fov, d.max_fov_deg + 1e-9);
    const double scale = offset.norm() / FitDistance(b.radius(), fov, c.width, c.height);
    EXPECT_GE(scale, d.min_distance - 1e-9);
    EXPECT_LE(scale, d.max_distance + 1e-9);
    scales.push_back(scale);
  }
  mean /= n;
  EXPECT_LT(mean.norm(), 0.05);
  for (int o = 0; o < 8; ++o) EXPECT_NEAR(octants[o], n / 8.0, 0.2 * n / 8.0) << "octant " << o;
  std::nth_element(scales.begin(), scales.begin() + n / 2, scales.end());
  EXPECT_NEAR(scales[n / 2], std::sqrt(d.min_distance * d.max_distance), 0.05);
  EXPECT_LT(*std::min_element(scales.begin(), scales.end()), 0.5);  // close-ups do occur
}

TEST(ViewSamplerTest, HemisphereStaysAboveTheCentre) {
  ViewDistribution d;
  d.directions = ViewDirections::kUpperHemisphere;
  d.target_jitter = 0.0;
  const SceneBounds b = Box();
  const Eigen::Vector3d up = d.up.normalized();
  double mean_height = 0;
  for (int i = 0; i < 1000; ++i) {
    const double h = (SampleView(b, d, i).Centre() - b.centre()).normalized().dot(up);
    EXPECT_GE(h, 0.0);
    mean_height += h / 1000.0;
  }
  EXPECT_NEAR(mean_height, 0.5, 0.05);  // uniform on the half sphere
}

TEST(ViewSamplerTest, EvalSphereViewsIncludeCloseUpsFromAllAround) {
  const SceneBounds b = Box();
  auto views = EvalSphereViews(b, 12, 64, 48);
  ASSERT_TRUE(views.ok()) << views.status();
  ASSERT_EQ(views->size(), 12u);
  EXPECT_EQ((*views)[0].name, "sphere_000");
  const Eigen::Vector3d up(0, -1, 0);
  double highest = -1, lowest = 1;
  for (size_t i = 0; i < views->size(); ++i) {
    const Camera& c = (*views)[i];
    EXPECT_EQ(c.width, 64);
    EXPECT_EQ(c.height, 48);
    const Eigen::Vector3d offset = c.Centre() - b.centre();
    const double h = offset.normalized().dot(up);
    highest = std::max(highest, h);
    lowest = std::min(lowest, h);
    EXPECT_NEAR(offset.norm() / FitDistance(b.radius(), 50.0, 64, 48), kEvalSphereDistances[i % 3], 1e-9);
  }
  EXPECT_GT(highest, 0.8);
  EXPECT_LT(lowest, -0.8);
  auto again = EvalSphereViews(b, 12, 64, 48);
  for (size_t i = 0; i < views->size(); ++i) EXPECT_TRUE(SameCamera((*views)[i], (*again)[i]));
  EXPECT_EQ(EvalSphereViews(b, 0, 64, 48).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvalSphereViews(b, 4, 0, 48).status().code(), absl::StatusCode::kInvalidArgument);
}

// Views near a dataset camera stay within the jitter ball, look at the base camera's
// look-at point, and keep its intrinsics.
TEST(ViewSamplerTest, NearViewsStayNearTheirCamera) {
  const SceneBounds b = Box();
  const Camera base = Camera::LookAt(b.centre() + Eigen::Vector3d(0, -2, -8), b.centre() + Eigen::Vector3d(0.3, 0, 0),
                                     Eigen::Vector3d(0, -1, 0), 80, 60, 55.0);
  const Eigen::Vector3d look = LookAtPoint(base, b);
  EXPECT_GT((look - base.Centre()).normalized().dot(Forward(base)), 1.0 - 1e-9);  // on the optical axis
  const double distance = (look - base.Centre()).norm();
  bool moved = false;
  for (uint64_t key = 0; key < 200; ++key) {
    const Camera c = SampleNearView(base, look, 0.2, key);
    EXPECT_LE((c.Centre() - base.Centre()).norm(), 0.2 * distance + 1e-9);
    moved = moved || (c.Centre() - base.Centre()).norm() > 0.1 * distance;
    EXPECT_LT((Forward(c) - (look - c.Centre()).normalized()).norm(), 1e-9);
    EXPECT_EQ(c.fx, base.fx);
    EXPECT_EQ(c.cy, base.cy);
    EXPECT_EQ(c.width, 80);
    EXPECT_TRUE(SameCamera(c, SampleNearView(base, look, 0.2, key)));
  }
  EXPECT_TRUE(moved);
}

TEST(ViewSamplerTest, BadDistributionsNameTheProblem) {
  auto message = [](const ViewDistribution& d) {
    const absl::Status st = d.Validate();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    return std::string(st.message());
  };
  ViewDistribution d;
  EXPECT_TRUE(d.Validate().ok());
  d.min_distance = 2.0;
  d.max_distance = 1.0;
  EXPECT_NE(message(d).find("inverted"), std::string::npos);
  d = ViewDistribution();
  d.min_distance = 0.0;
  EXPECT_NE(message(d).find("distance"), std::string::npos);
  d = ViewDistribution();
  d.max_fov_deg = 180.0;
  EXPECT_NE(message(d).find("(0, 180)"), std::string::npos);
  d = ViewDistribution();
  d.min_fov_deg = 0.0;
  EXPECT_NE(message(d).find("field of view"), std::string::npos);
  d = ViewDistribution();
  d.min_fov_deg = 60.0;
  d.max_fov_deg = 50.0;
  EXPECT_NE(message(d).find("inverted"), std::string::npos);
  d = ViewDistribution();
  d.width = 0;
  EXPECT_NE(message(d).find("size"), std::string::npos);

  double lo = 0, hi = 0;
  EXPECT_TRUE(ParseRange("0.5:1.5", "--view-distance", &lo, &hi).ok());
  EXPECT_EQ(lo, 0.5);
  EXPECT_EQ(hi, 1.5);
  EXPECT_TRUE(ParseRange("45", "--view-fov", &lo, &hi).ok());
  EXPECT_EQ(lo, 45.0);
  EXPECT_EQ(hi, 45.0);
  for (const char* bad : {"", "1:2:3", "a:2", "1:", "nan:1", "2:1"}) {
    const absl::Status st = ParseRange(bad, "--view-distance", &lo, &hi);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(std::string(st.message()).find("--view-distance"), std::string::npos) << st;
  }
  EXPECT_TRUE(ParseViewDirections("hemisphere").ok());
  EXPECT_EQ(ParseViewDirections("ring").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flexgs

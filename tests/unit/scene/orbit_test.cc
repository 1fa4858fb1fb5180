#include "scene/orbit.h"

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

// Uniform points in [lo, hi] per axis, deterministic.
GaussianCloud BoxCloud(size_t n, const Eigen::Vector3d& lo, const Eigen::Vector3d& hi, uint32_t seed) {
  GaussianCloud cloud;
  cloud.Resize(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 3; ++k) cloud.positions[3 * i + k] = static_cast<float>(lo[k] + (hi[k] - lo[k]) * u(rng));
  }
  return cloud;
}

Eigen::Vector3d Project(const Camera& c, const Eigen::Vector3d& world) {
  const Eigen::Vector3d x = c.R * world + c.t;
  return {c.fx * x.x() / x.z() + c.cx, c.fy * x.y() / x.z() + c.cy, x.z()};
}

TEST(RobustBoundsTest, IgnoresOutliersAndNonFinite) {
  const Eigen::Vector3d lo(-1, -4, 2), hi(3, 0, 5);
  GaussianCloud cloud = BoxCloud(20000, lo, hi, 7);
  // 0.5% far outliers on both sides and a few NaN / inf positions.
  for (size_t i = 0; i < 100; ++i) {
    for (int k = 0; k < 3; ++k) cloud.positions[3 * i + k] = (i % 2 ? 1e6f : -1e6f);
  }
  cloud.positions[3 * 200 + 0] = std::numeric_limits<float>::quiet_NaN();
  cloud.positions[3 * 201 + 2] = std::numeric_limits<float>::infinity();
  const SceneBounds b = RobustBounds(cloud);
  ASSERT_TRUE(b.lo.allFinite() && b.hi.allFinite());
  // The 1%/99% quantiles of a uniform box sit 1% inside it (the outliers shift them slightly).
  for (int k = 0; k < 3; ++k) {
    const double ext = hi[k] - lo[k];
    EXPECT_NEAR(b.lo[k], lo[k] + 0.01 * ext, 0.015 * ext) << k;
    EXPECT_NEAR(b.hi[k], hi[k] - 0.01 * ext, 0.015 * ext) << k;
  }
  EXPECT_TRUE(b.centre().isApprox(0.5 * (lo + hi), 0.02));
  EXPECT_NEAR(b.radius(), 0.5 * (b.hi - b.lo).norm(), 1e-12);

  // Full quantiles include the outliers (but never the NaN / inf).
  const SceneBounds full = RobustBounds(cloud, 0.0, 1.0);
  EXPECT_EQ(full.lo.x(), -1e6);
  EXPECT_EQ(full.hi.z(), 1e6);
}

TEST(RobustBoundsTest, EmptyCloudGivesZeroBox) {
  const SceneBounds b = RobustBounds(GaussianCloud{});
  EXPECT_EQ(b.lo, Eigen::Vector3d::Zero());
  EXPECT_EQ(b.hi, Eigen::Vector3d::Zero());
  EXPECT_EQ(b.radius(), 0.0);
}

void CheckOrbit(const SceneBounds& b, const OrbitOptions& opt) {
  const std::vector<Camera> cams = OrbitCameras(b, opt);
  ASSERT_EQ(static_cast<int>(cams.size()), opt.count);
  const Eigen::Vector3d centre = b.centre();
  const double dist0 = (cams[0].Centre() - centre).norm();
  EXPECT_GT(dist0, b.radius());
  for (const Camera& c : cams) {
    ASSERT_TRUE(c.Validate().ok()) << c.Validate();
    EXPECT_EQ(c.width, opt.width);
    EXPECT_EQ(c.height, opt.height);
    EXPECT_NEAR((c.Centre() - centre).norm(), dist0, 1e-9 * dist0) << c.name;
    // Looks at the centre.
    const Eigen::Vector3d pc = Project(c, centre);
    EXPECT_GT(pc.z(), 0);
    EXPECT_NEAR(pc.x(), 0.5 * opt.width, 1e-6) << c.name;
    EXPECT_NEAR(pc.y(), 0.5 * opt.height, 1e-6) << c.name;
    // Every corner of the box is in front and inside the image.
    for (int corner = 0; corner < 8; ++corner) {
      const Eigen::Vector3d p((corner & 1) ? b.hi.x() : b.lo.x(), (corner & 2) ? b.hi.y() : b.lo.y(),
                              (corner & 4) ? b.hi.z() : b.lo.z());
      const Eigen::Vector3d px = Project(c, p);
      EXPECT_GT(px.z(), 0) << c.name << " corner " << corner;
      EXPECT_GE(px.x(), 0) << c.name << " corner " << corner;
      EXPECT_LE(px.x(), opt.width) << c.name << " corner " << corner;
      EXPECT_GE(px.y(), 0) << c.name << " corner " << corner;
      EXPECT_LE(px.y(), opt.height) << c.name << " corner " << corner;
    }
    // World "up" appears up on screen (smaller v).
    const Eigen::Vector3d up = Project(c, centre + 0.1 * b.radius() * opt.up.normalized());
    EXPECT_LT(up.y(), pc.y() - 1.0) << c.name;
  }
}

SceneBounds GuitarLikeBounds() {
  SceneBounds b;
  b.lo = Eigen::Vector3d(-1.2, -4.3, -0.4);
  b.hi = Eigen::Vector3d(1.5, 0.1, 0.6);
  return b;
}

TEST(OrbitCamerasTest, RingLooksAtCentreAndFrames) {
  OrbitOptions opt;
  CheckOrbit(GuitarLikeBounds(), opt);
  const auto cams = OrbitCameras(GuitarLikeBounds(), opt);
  EXPECT_EQ(cams[0].name, "orbit_000");
  EXPECT_EQ(cams[7].name, "orbit_007");
  // Elevated towards up: every camera is 'above' the centre by d*sin(20 deg).
  const Eigen::Vector3d centre = GuitarLikeBounds().centre();
  const double d = (cams[0].Centre() - centre).norm();
  for (const Camera& c : cams) {
    EXPECT_NEAR((c.Centre() - centre).dot(opt.up), d * std::sin(20.0 * M_PI / 180.0), 1e-9 * d);
  }
  // Consecutive cameras are 45 degrees apart in azimuth.
  const Eigen::Vector3d a = (cams[0].Centre() - centre).cwiseProduct(Eigen::Vector3d(1, 0, 1)).normalized();
  const Eigen::Vector3d b = (cams[1].Centre() - centre).cwiseProduct(Eigen::Vector3d(1, 0, 1)).normalized();
  EXPECT_NEAR(std::acos(a.dot(b)) * 180.0 / M_PI, 45.0, 1e-9);
}

TEST(OrbitCamerasTest, WideAndTallImagesAndSphere) {
  OrbitOptions opt;
  opt.width = 1280;
  opt.height = 360;
  opt.count = 5;
  CheckOrbit(GuitarLikeBounds(), opt);
  opt.width = 300;
  opt.height = 900;
  opt.fov_x_deg = 30;
  opt.elevation_deg = -35;
  CheckOrbit(GuitarLikeBounds(), opt);
  opt.sphere = true;
  opt.count = 40;
  CheckOrbit(GuitarLikeBounds(), opt);
  opt.up = Eigen::Vector3d(0, 0, 2);  // z-up scenes
  opt.sphere = false;
  CheckOrbit(GuitarLikeBounds(), opt);
}

TEST(OrbitCamerasTest, SphereSpreadsOverBothHemispheres) {
  OrbitOptions opt;
  opt.sphere = true;
  opt.count = 50;
  const SceneBounds b = GuitarLikeBounds();
  const auto cams = OrbitCameras(b, opt);
  int above = 0, below = 0;
  for (const Camera& c : cams) ((c.Centre() - b.centre()).dot(opt.up) > 0 ? above : below)++;
  EXPECT_EQ(above, 25);
  EXPECT_EQ(below, 25);
}

TEST(OrbitCamerasTest, DeterministicAndNamesSortForLargeCounts) {
  OrbitOptions opt;
  opt.count = 1200;
  const auto a = OrbitCameras(GuitarLikeBounds(), opt);
  const auto b = OrbitCameras(GuitarLikeBounds(), opt);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].R, b[i].R);
    EXPECT_EQ(a[i].t, b[i].t);
    EXPECT_EQ(a[i].name, b[i].name);
  }
  EXPECT_EQ(a[0].name, "orbit_0000");
  EXPECT_EQ(a[1199].name, "orbit_1199");
}

TEST(OrbitCamerasTest, DistanceScaleAndDegenerateBox) {
  OrbitOptions opt;
  const SceneBounds b = GuitarLikeBounds();
  const double d1 = (OrbitCameras(b, opt)[0].Centre() - b.centre()).norm();
  opt.distance_scale = 2.0;
  const double d2 = (OrbitCameras(b, opt)[0].Centre() - b.centre()).norm();
  EXPECT_NEAR(d2, 2 * d1, 1e-9);
  // A zero box still yields valid cameras around its centre.
  SceneBounds point;
  point.lo = point.hi = Eigen::Vector3d(1, 2, 3);
  for (const Camera& c : OrbitCameras(point, OrbitOptions{})) {
    EXPECT_TRUE(c.Validate().ok());
    EXPECT_GT((c.Centre() - point.lo).norm(), 0.5);
  }
}

TEST(OrbitCamerasTest, AzimuthOffsetRotatesTheRing) {
  const SceneBounds b = GuitarLikeBounds();
  OrbitOptions opt;
  // An explicit zero offset is the default orbit, bit for bit.
  const auto base = OrbitCameras(b, opt);
  opt.azimuth_offset_deg = 0.0;
  const auto zero = OrbitCameras(b, opt);
  for (size_t i = 0; i < base.size(); ++i) {
    EXPECT_EQ(base[i].R, zero[i].R);
    EXPECT_EQ(base[i].t, zero[i].t);
  }
  // A full spacing (45 degrees for 8 views) moves camera i to where camera i+1 was.
  opt.azimuth_offset_deg = 45.0;
  const auto shifted = OrbitCameras(b, opt);
  for (size_t i = 0; i + 1 < base.size(); ++i) {
    EXPECT_LT((shifted[i].Centre() - base[i + 1].Centre()).norm(), 1e-9) << i;
    EXPECT_EQ(shifted[i].name, base[i].name);
  }
  // Half a spacing puts every camera halfway between two of the default ring: 22.5 degrees
  // from both neighbours, at the same distance and elevation.
  opt.azimuth_offset_deg = 22.5;
  CheckOrbit(b, opt);
  const auto half = OrbitCameras(b, opt);
  const Eigen::Vector3d centre = b.centre();
  const auto azimuth_dir = [&](const Camera& c) {
    return (c.Centre() - centre).cwiseProduct(Eigen::Vector3d(1, 0, 1)).normalized().eval();
  };
  for (size_t i = 0; i < half.size(); ++i) {
    const Eigen::Vector3d h = azimuth_dir(half[i]);
    EXPECT_NEAR(std::acos(h.dot(azimuth_dir(base[i]))) * 180.0 / M_PI, 22.5, 1e-9) << i;
    EXPECT_NEAR(std::acos(h.dot(azimuth_dir(base[(i + 1) % base.size()]))) * 180.0 / M_PI, 22.5, 1e-9) << i;
    EXPECT_NEAR((half[i].Centre() - centre).norm(), (base[i].Centre() - centre).norm(), 1e-9);
  }
}

TEST(MakeOrbitCamerasTest, FitsCloudAndRejectsBadOptions) {
  const GaussianCloud cloud = BoxCloud(5000, {-1, -2, -1}, {1, 0, 1}, 3);
  auto cams = MakeOrbitCameras(cloud, OrbitOptions{});
  ASSERT_TRUE(cams.ok()) << cams.status();
  EXPECT_EQ(cams->size(), 8u);

  const auto expect_bad = [&](OrbitOptions o, const char* what) {
    auto r = MakeOrbitCameras(cloud, o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(what));
  };
  OrbitOptions o;
  o.count = 0;
  expect_bad(o, "count");
  o = {};
  o.count = 100001;
  expect_bad(o, "count");
  o = {};
  o.width = 0;
  expect_bad(o, "size");
  o = {};
  o.height = 40000;
  expect_bad(o, "size");
  o = {};
  o.fov_x_deg = 179;
  expect_bad(o, "field of view");
  o = {};
  o.fov_x_deg = std::nan("");
  expect_bad(o, "field of view");
  o = {};
  o.elevation_deg = 90;
  expect_bad(o, "elevation");
  o = {};
  o.distance_scale = 0;
  expect_bad(o, "distance");
  o = {};
  o.up = Eigen::Vector3d::Zero();
  expect_bad(o, "up");
  o = {};
  o.azimuth_offset_deg = std::nan("");
  expect_bad(o, "azimuth offset");
}

}  // namespace
}  // namespace flexgs

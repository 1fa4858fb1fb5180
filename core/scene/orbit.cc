#include "scene/orbit.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <spdlog/spdlog.h>
#include <Eigen/Geometry>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flexgs {
namespace {

constexpr double kPi = 3.14159265358979323846;
// Extra room around the bounding sphere so its silhouette does not touch the border.
constexpr double kFitMargin = 1.05;

double Deg2Rad(double d) { return d * kPi / 180.0; }

// Value at quantile q of v (nearest rank); reorders v.
double Quantile(std::vector<double>& v, double q) {
  const size_t k = static_cast<size_t>(std::llround(q * static_cast<double>(v.size() - 1)));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// A unit vector perpendicular to `up`: the world axis least aligned with it
// (preferring z, then x, then y on ties), projected onto the plane. For the
// default up (-y) this is +z, giving a stable, readable azimuth origin.
Eigen::Vector3d ReferenceAxis(const Eigen::Vector3d& up) {
  const Eigen::Vector3d axes[3] = {Eigen::Vector3d::UnitZ(), Eigen::Vector3d::UnitX(), Eigen::Vector3d::UnitY()};
  int best = 0;
  for (int i = 1; i < 3; ++i) {
    if (std::abs(axes[i].dot(up)) < std::abs(axes[best].dot(up)) - 1e-12) best = i;
  }
  return (axes[best] - axes[best].dot(up) * up).normalized();
}

}  // namespace

SceneBounds RobustBounds(const GaussianCloud& cloud, double lo_quantile, double hi_quantile) {
  SceneBounds b;
  const size_t n = std::min(cloud.positions.size() / 3, cloud.size());
  std::vector<double> axis[3];
  for (auto& a : axis) a.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const float* p = &cloud.positions[3 * i];
    if (!std::isfinite(p[0]) || !std::isfinite(p[1]) || !std::isfinite(p[2])) continue;
    for (int k = 0; k < 3; ++k) axis[k].push_back(p[k]);
  }
  if (axis[0].empty()) return b;
  const auto clamp01 = [](double q) { return std::isfinite(q) ? std::clamp(q, 0.0, 1.0) : 0.0; };
  double qlo = clamp01(lo_quantile), qhi = std::isfinite(hi_quantile) ? clamp01(hi_quantile) : 1.0;
  if (qlo > qhi) std::swap(qlo, qhi);
  for (int k = 0; k < 3; ++k) {
    b.lo[k] = Quantile(axis[k], qlo);
    b.hi[k] = Quantile(axis[k], qhi);
  }
  return b;
}

double FitDistance(double radius, double fov_x_deg, int width, int height, double scale) {
  if (!(radius > 1e-12) || !std::isfinite(radius)) radius = 1.0;
  // The sphere of radius r at distance d subtends a half-angle asin(r/d): fit it
  // into the narrower half field of view (fy = fx, so fov_y follows the aspect).
  const double half_x = 0.5 * Deg2Rad(fov_x_deg);
  const double half_y = std::atan(std::tan(half_x) * height / width);
  const double half = std::min(half_x, half_y);
  return kFitMargin * scale * radius / std::sin(half);
}

std::vector<Camera> OrbitCameras(const SceneBounds& bounds, const OrbitOptions& options) {
  const int count = std::max(options.count, 0);
  std::vector<Camera> cameras;
  cameras.reserve(count);

  Eigen::Vector3d up = options.up;
  if (!up.allFinite() || up.norm() < 1e-12) up = Eigen::Vector3d(0, -1, 0);
  up.normalize();
  const Eigen::Vector3d e1 = ReferenceAxis(up);
  const Eigen::Vector3d e2 = up.cross(e1);

  const Eigen::Vector3d centre = bounds.centre();
  const double distance =
      FitDistance(bounds.radius(), options.fov_x_deg, options.width, options.height, options.distance_scale);

  int digits = 3;
  for (int n = count - 1; n >= 1000; n /= 10) ++digits;
  const double golden_angle = kPi * (3.0 - std::sqrt(5.0));
  const double azimuth_offset = Deg2Rad(options.azimuth_offset_deg);

  for (int i = 0; i < count; ++i) {
    double azimuth, sin_el;
    if (options.sphere) {
      // Fibonacci lattice: heights at cell centres never reach the poles,
      // where the look-at frame would be degenerate.
      sin_el = 1.0 - 2.0 * (i + 0.5) / count;
      azimuth = golden_angle * i;
    } else {
      sin_el = std::sin(Deg2Rad(options.elevation_deg));
      azimuth = 2.0 * kPi * i / count;
    }
    // Skipped at 0 so that default orbits stay bit-identical to those made before the offset existed.
    if (azimuth_offset != 0.0) azimuth += azimuth_offset;
    const double cos_el = std::sqrt(std::max(0.0, 1.0 - sin_el * sin_el));
    const Eigen::Vector3d dir = cos_el * (std::cos(azimuth) * e1 + std::sin(azimuth) * e2) + sin_el * up;
    Camera cam = Camera::LookAt(centre + distance * dir, centre, up, options.width, options.height, options.fov_x_deg);
    cam.name = absl::StrFormat("orbit_%0*d", digits, i);
    cameras.push_back(std::move(cam));
  }
  return cameras;
}

absl::Status ValidateOrbitOptions(const OrbitOptions& o) {
  if (o.count < 1 || o.count > 100000) {
    return absl::InvalidArgumentError(absl::StrCat("orbit camera count must be in [1, 100000], got ", o.count));
  }
  if (o.width < 1 || o.width > 32768 || o.height < 1 || o.height > 32768) {
    return absl::InvalidArgumentError(
        absl::StrCat("orbit image size must be in [1, 32768] per side, got ", o.width, "x", o.height));
  }
  if (!(o.fov_x_deg > 1.0 && o.fov_x_deg < 179.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("orbit horizontal field of view must be in (1, 179) degrees, got ", o.fov_x_deg));
  }
  if (!(std::abs(o.elevation_deg) < 90.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("orbit elevation must be in (-90, 90) degrees, got ", o.elevation_deg));
  }
  if (!(o.distance_scale > 0.0) || !std::isfinite(o.distance_scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("orbit distance scale must be positive and finite, got ", o.distance_scale));
  }
  if (!std::isfinite(o.azimuth_offset_deg)) {
    return absl::InvalidArgumentError(absl::StrCat("orbit azimuth offset must be finite, got ", o.azimuth_offset_deg));
  }
  if (!o.up.allFinite() || o.up.norm() < 1e-12) {
    return absl::InvalidArgumentError("orbit up vector must be finite and non-zero");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Camera>> MakeOrbitCameras(const GaussianCloud& cloud, const OrbitOptions& options) {
  absl::Status s = ValidateOrbitOptions(options);
  if (!s.ok()) return s;
  const SceneBounds bounds = RobustBounds(cloud);
  if (bounds.radius() <= 0.0) {
    spdlog::warn("scene has no spatial extent ({} Gaussians); orbiting a unit sphere around ({}, {}, {})", cloud.size(),
                 bounds.centre().x(), bounds.centre().y(), bounds.centre().z());
  }
  return OrbitCameras(bounds, options);
}

}  // namespace flexgs

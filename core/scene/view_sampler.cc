#include "scene/view_sampler.h"

#include <algorithm>
#include <cmath>

#include <Eigen/Geometry>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/random.h"

namespace flexgs {
namespace {

constexpr double kPi = 3.14159265358979323846;
// Rotation of the evaluation lattice about `up`, so that its directions sit off any
// orbit ring a model was trained or scored on.
constexpr double kEvalLatticeTwistRad = 0.61;
constexpr double kEvalFovDeg = 50.0;

// A uniform direction on the unit sphere (Marsaglia's method: rejection in the disc, so
// the result is exact and machine-independent).
Eigen::Vector3d UniformDirection(SplitMix64& rng) {
  for (;;) {
    const double a = rng.Uniform(-1.0, 1.0), b = rng.Uniform(-1.0, 1.0);
    const double s = a * a + b * b;
    if (s >= 1.0 || s < 1e-12) continue;
    const double r = 2.0 * std::sqrt(1.0 - s);
    return {a * r, b * r, 1.0 - 2.0 * s};
  }
}

// A uniform point in the unit ball (rejection from the cube).
Eigen::Vector3d UniformInBall(SplitMix64& rng) {
  for (;;) {
    const Eigen::Vector3d p(rng.Uniform(-1.0, 1.0), rng.Uniform(-1.0, 1.0), rng.Uniform(-1.0, 1.0));
    if (p.squaredNorm() <= 1.0) return p;
  }
}

double SafeRadius(const SceneBounds& bounds) {
  const double r = bounds.radius();
  return r > 1e-12 && std::isfinite(r) ? r : 1.0;
}

}  // namespace

absl::Status ViewDistribution::Validate() const {
  if (!(min_distance > 0.0) || !std::isfinite(min_distance) || !std::isfinite(max_distance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("view distance range must be positive and finite, got ", min_distance, ":", max_distance));
  }
  if (!(min_distance <= max_distance)) {
    return absl::InvalidArgumentError(absl::StrCat("view distance range is empty or inverted: ", min_distance, ":",
                                                   max_distance, " (need LO <= HI)"));
  }
  if (!(min_fov_deg > 0.0 && max_fov_deg < 180.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("view field of view must be in (0, 180) degrees, got ", min_fov_deg, ":", max_fov_deg));
  }
  if (!(min_fov_deg <= max_fov_deg)) {
    return absl::InvalidArgumentError(
        absl::StrCat("view field-of-view range is inverted: ", min_fov_deg, ":", max_fov_deg, " (need LO <= HI)"));
  }
  if (!(target_jitter >= 0.0 && target_jitter <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("view target jitter must be in [0, 1], got ", target_jitter));
  }
  if (width < 1 || width > 32768 || height < 1 || height > 32768) {
    return absl::InvalidArgumentError(
        absl::StrCat("view image size must be in [1, 32768] per side, got ", width, "x", height));
  }
  if (!up.allFinite() || up.norm() < 1e-12)
    return absl::InvalidArgumentError("view up vector must be finite and non-zero");
  return absl::OkStatus();
}

absl::StatusOr<ViewDirections> ParseViewDirections(absl::string_view text) {
  if (text == "sphere") return ViewDirections::kSphere;
  if (text == "hemisphere") return ViewDirections::kUpperHemisphere;
  return absl::InvalidArgumentError(
      absl::StrCat("view directions must be 'sphere' or 'hemisphere', got '", absl::CEscape(text.substr(0, 64)), "'"));
}

const char* ViewDirectionsName(ViewDirections d) { return d == ViewDirections::kSphere ? "sphere" : "hemisphere"; }

absl::Status ParseRange(absl::string_view text, absl::string_view what, double* lo, double* hi) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  if (parts.size() > 2 || text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be LO:HI or one number, got '", absl::CEscape(text.substr(0, 64)), "'"));
  }
  double v[2];
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(parts[i]), &v[i]) || !std::isfinite(v[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": '", absl::CEscape(parts[i].substr(0, 64)), "' is not a finite number"));
    }
  }
  *lo = v[0];
  *hi = parts.size() == 2 ? v[1] : v[0];
  if (!(*lo <= *hi)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " range ", *lo, ":", *hi, " is inverted (need LO <= HI)"));
  }
  return absl::OkStatus();
}

Camera SampleView(const SceneBounds& bounds, const ViewDistribution& dist, uint64_t key) {
  SplitMix64 rng(key);
  const Eigen::Vector3d up = dist.up.normalized();
  Eigen::Vector3d dir = UniformDirection(rng);
  if (dist.directions == ViewDirections::kUpperHemisphere && dir.dot(up) < 0.0) dir -= 2.0 * dir.dot(up) * up;
  // Log-uniform distance: as many close-ups (factor 2 below 1) as far views (factor 2 above).
  const double u = rng.Uniform();
  const double scale = dist.min_distance * std::exp(u * std::log(dist.max_distance / dist.min_distance));
  const double fov = rng.Uniform(dist.min_fov_deg, dist.max_fov_deg);
  const double radius = SafeRadius(bounds);
  const Eigen::Vector3d target = bounds.centre() + dist.target_jitter * radius * UniformInBall(rng);
  const double distance = FitDistance(bounds.radius(), fov, dist.width, dist.height, scale);
  return Camera::LookAt(target + distance * dir, target, up, dist.width, dist.height, fov);
}

Camera SampleNearView(const Camera& base, const Eigen::Vector3d& look_at, double jitter, uint64_t key) {
  SplitMix64 rng(key);
  const Eigen::Vector3d eye = base.Centre();
  const double distance = (look_at - eye).norm();
  const Eigen::Vector3d moved = eye + jitter * distance * UniformInBall(rng);
  // Keep the base camera's roll: its image "up" is minus its y axis.
  const Eigen::Vector3d up = -base.R.row(1).transpose();
  Camera cam = Camera::LookAt(moved, look_at, up, base.width, base.height, 90.0);
  cam.fx = base.fx;
  cam.fy = base.fy;
  cam.cx = base.cx;
  cam.cy = base.cy;
  cam.name = base.name + "~near";
  return cam;
}

Eigen::Vector3d LookAtPoint(const Camera& camera, const SceneBounds& bounds) {
  const Eigen::Vector3d eye = camera.Centre();
  const Eigen::Vector3d forward = camera.R.row(2).transpose();
  const double depth = std::max((bounds.centre() - eye).dot(forward), 0.1 * SafeRadius(bounds));
  return eye + depth * forward;
}

std::vector<Camera> SampleViews(const SceneBounds& bounds, const ViewDistribution& dist, uint64_t seed, int count) {
  std::vector<Camera> out;
  out.reserve(std::max(count, 0));
  SplitMix64 keys(seed ^ 0xA0761D6478BD642Full);
  for (int i = 0; i < count; ++i) {
    Camera cam = SampleView(bounds, dist, keys.Next());
    cam.name = absl::StrFormat("view_%03d", i);
    out.push_back(std::move(cam));
  }
  return out;
}

absl::StatusOr<std::vector<Camera>> EvalSphereViews(const SceneBounds& bounds, int count, int width, int height,
                                                    const Eigen::Vector3d& up_in) {
  if (count < 1 || count > 100000) {
    return absl::InvalidArgumentError(absl::StrCat("sphere view count must be in [1, 100000], got ", count));
  }
  if (width < 1 || width > 32768 || height < 1 || height > 32768) {
    return absl::InvalidArgumentError(
        absl::StrCat("view image size must be in [1, 32768] per side, got ", width, "x", height));
  }
  if (!up_in.allFinite() || up_in.norm() < 1e-12) {
    return absl::InvalidArgumentError("view up vector must be finite and non-zero");
  }
  const Eigen::Vector3d up = up_in.normalized();
  // Two axes perpendicular to up.
  Eigen::Vector3d e1 = up.unitOrthogonal();
  const Eigen::Vector3d e2 = up.cross(e1);
  const double golden_angle = kPi * (3.0 - std::sqrt(5.0));
  const Eigen::Vector3d centre = bounds.centre();
  std::vector<Camera> out;
  out.reserve(count);
  for (int i = 0; i < count; ++i) {
    // Heights at cell centres never reach the poles, where look-at is degenerate.
    const double sin_el = 1.0 - 2.0 * (i + 0.5) / count;
    const double cos_el = std::sqrt(std::max(0.0, 1.0 - sin_el * sin_el));
    const double az = golden_angle * i + kEvalLatticeTwistRad;
    const Eigen::Vector3d dir = cos_el * (std::cos(az) * e1 + std::sin(az) * e2) + sin_el * up;
    const double scale = kEvalSphereDistances[i % 3];
    const double distance = FitDistance(bounds.radius(), kEvalFovDeg, width, height, scale);
    Camera cam = Camera::LookAt(centre + distance * dir, centre, up, width, height, kEvalFovDeg);
    cam.name = absl::StrFormat("sphere_%03d", i);
    out.push_back(std::move(cam));
  }
  return out;
}

}  // namespace flexgs

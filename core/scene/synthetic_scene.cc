#include "scene/synthetic_scene.h"

#include <cmath>

#include <Eigen/Geometry>

namespace flexgs {

namespace {

constexpr double kShC0 = 0.28209479177387814;

struct Surfel {
  Eigen::Vector3d position;
  Eigen::Vector3d normal;
  Eigen::Vector3d rgb;
  double size;  // in-plane standard deviation
  double opacity_logit;
};

// Quaternion (w,x,y,z) rotating the z axis onto `normal`, with a random spin.
Eigen::Quaterniond AlignZ(const Eigen::Vector3d& normal, double spin) {
  Eigen::Quaterniond q = Eigen::Quaterniond::FromTwoVectors(Eigen::Vector3d::UnitZ(), normal.normalized());
  return q * Eigen::Quaterniond(Eigen::AngleAxisd(spin, Eigen::Vector3d::UnitZ()));
}

Surfel SampleSurface(SplitMix64& rng, size_t count) {
  // Fixed mixture: 50% sphere, 32% torus, 13% ground disc, 5% pedestal. The ground is
  // a thin, half-transparent backdrop so that importance ranks the objects first.
  const double pick = rng.Uniform();
  const double density = std::sqrt(200000.0 / static_cast<double>(count));
  Surfel s;
  if (pick < 0.50) {
    Eigen::Vector3d d(rng.Normal(), rng.Normal(), rng.Normal());
    d.normalize();
    s.normal = d;
    s.position = Eigen::Vector3d(0, -1.2, 0) + 0.8 * d;
    const double stripe = 0.5 + 0.5 * std::sin(10.0 * d.y() + 3.0 * std::atan2(d.z(), d.x()));
    s.rgb = Eigen::Vector3d(0.9, 0.35 + 0.5 * stripe, 0.15 + 0.2 * (1 - stripe));
    s.size = 0.016 * density;
    s.opacity_logit = rng.Uniform(1.0, 4.0);
  } else if (pick < 0.82) {
    const double u = rng.Uniform(0, 2 * M_PI), v = rng.Uniform(0, 2 * M_PI);
    const double R = 1.35, r = 0.12;
    const Eigen::Vector3d ring(std::cos(u), 0, std::sin(u));
    s.normal = std::cos(v) * ring + Eigen::Vector3d(0, std::sin(v), 0);
    s.position = Eigen::Vector3d(0, -1.2, 0) + R * ring + r * s.normal;
    const double band = 0.5 + 0.5 * std::cos(6.0 * u);
    s.rgb = Eigen::Vector3d(0.15 + 0.2 * band, 0.45 + 0.4 * band, 0.85);
    s.size = 0.011 * density;
    s.opacity_logit = rng.Uniform(1.0, 4.0);
  } else if (pick < 0.95) {
    const double rad = 2.4 * std::sqrt(rng.Uniform()), a = rng.Uniform(0, 2 * M_PI);
    s.position = Eigen::Vector3d(rad * std::cos(a), 0.0, rad * std::sin(a));
    s.normal = Eigen::Vector3d(0, -1, 0);
    const int checker =
        (static_cast<int>(std::floor(s.position.x() * 2.5)) + static_cast<int>(std::floor(s.position.z() * 2.5))) & 1;
    s.rgb = checker ? Eigen::Vector3d(0.85, 0.85, 0.8) : Eigen::Vector3d(0.2, 0.22, 0.25);
    s.size = 0.011 * density;
    s.opacity_logit = rng.Uniform(-1.0, 1.0);
  } else {
    const double a = rng.Uniform(0, 2 * M_PI), h = rng.Uniform(0, 0.45);
    s.normal = Eigen::Vector3d(std::cos(a), 0, std::sin(a));
    s.position = Eigen::Vector3d(0.25 * std::cos(a), -h, 0.25 * std::sin(a));
    s.rgb = Eigen::Vector3d(0.55, 0.5, 0.45);
    s.size = 0.01 * density;
    s.opacity_logit = rng.Uniform(1.0, 4.0);
  }
  return s;
}

}  // namespace

GaussianCloud MakeSyntheticScene(const SyntheticSceneOptions& options) {
  GaussianCloud cloud;
  cloud.sh_degree = options.sh_degree < 0 ? 0 : (options.sh_degree > kMaxShDegree ? kMaxShDegree : options.sh_degree);
  cloud.Resize(options.count);
  SplitMix64 rng(options.seed);
  const int k = cloud.rest_coeffs();
  for (size_t i = 0; i < options.count; ++i) {
    const Surfel s = SampleSurface(rng, options.count);
    const Eigen::Quaterniond q = AlignZ(s.normal, rng.Uniform(0, 2 * M_PI));
    const double aniso = rng.Uniform(0.6, 1.6);
    for (int d = 0; d < 3; ++d) cloud.positions[i * 3 + d] = static_cast<float>(s.position[d]);
    cloud.log_scales[i * 3 + 0] = static_cast<float>(std::log(s.size * aniso));
    cloud.log_scales[i * 3 + 1] = static_cast<float>(std::log(s.size / aniso));
    cloud.log_scales[i * 3 + 2] = static_cast<float>(std::log(s.size * 0.15));  // flat along the normal
    cloud.rotations[i * 4 + 0] = static_cast<float>(q.w());
    cloud.rotations[i * 4 + 1] = static_cast<float>(q.x());
    cloud.rotations[i * 4 + 2] = static_cast<float>(q.y());
    cloud.rotations[i * 4 + 3] = static_cast<float>(q.z());
    cloud.opacity_logits[i] = static_cast<float>(s.opacity_logit);
    for (int c = 0; c < 3; ++c) {
      const double jitter = 0.06 * rng.Normal();
      cloud.sh_dc[i * 3 + c] = static_cast<float>((s.rgb[c] + jitter - 0.5) / kShC0);
      for (int j = 0; j < k; ++j)
        cloud.sh_rest[i * 3 * k + c * k + j] = static_cast<float>(0.05 * rng.Normal() / (1 + j));
    }
  }
  return cloud;
}

}  // namespace flexgs

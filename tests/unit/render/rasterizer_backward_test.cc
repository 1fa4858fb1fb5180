// DifferentiableRasterizer: analytic gradients against central finite differences of a
// float64 re-implementation of the CPU forward, for every parameter kind; plus
// bit-identity with CpuRasterizer::Render, thread-count determinism and the error contract.
#include "render/rasterizer_backward.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scene/synthetic_scene.h"

namespace flexgs {
namespace {

// ----------------------------------------------------------------------------------------
// Float64 reference forward. The same function as raster::ProjectGaussian +
// raster::EvalShColor + BlendTile, written naively: no tiles, no footprint skipping, every
// pixel blends every kept Gaussian in (depth, index) order. Skipping radii and tiles is
// exact for the opacity-aware radius, which covers every pixel where alpha >= 1/255 (see
// RasterizerTest.TiledRenderEqualsNaiveReference); ReferenceMatchesCpuForward checks it.
// ----------------------------------------------------------------------------------------

enum Kind { kPos, kLogScale, kRot, kLogit, kDc, kRest, kScale, kBackground, kNumKinds };
const char* const kKindNames[kNumKinds] = {"position", "log_scale", "rotation",      "opacity_logit",
                                           "sh_dc",    "sh_rest",   "opacity_scale", "background"};

struct Params64 {
  std::array<std::vector<double>, kNumKinds> v;  // kScale empty = no opacity scale
  int sh_degree = 0;                             // the cloud's
  int rest_coeffs() const { return ShRestCoeffs(sh_degree); }
};

struct Reference {
  std::vector<double> image;
  std::vector<uint32_t> contributors;
  uint64_t signature = 0;  // hash of every discrete decision the forward took
};

struct Hash {
  uint64_t h = 1469598103934665603ull;
  void Mix(uint64_t x) {
    h ^= x + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 1099511628211ull;
  }
};

int ShBasis(int degree, double x, double y, double z, double* basis) {
  int n = 0;
  if (degree >= 1) {
    const double C1 = raster::kShC1;
    basis[0] = -C1 * y;
    basis[1] = C1 * z;
    basis[2] = -C1 * x;
    n = 3;
  }
  if (degree >= 2) {
    const float* c2 = raster::kShC2;
    basis[3] = c2[0] * x * y;
    basis[4] = c2[1] * y * z;
    basis[5] = c2[2] * (2 * z * z - x * x - y * y);
    basis[6] = c2[3] * x * z;
    basis[7] = c2[4] * (x * x - y * y);
    n = 8;
  }
  if (degree >= 3) {
    const float* c3 = raster::kShC3;
    basis[8] = c3[0] * y * (3 * x * x - y * y);
    basis[9] = c3[1] * x * y * z;
    basis[10] = c3[2] * y * (4 * z * z - x * x - y * y);
    basis[11] = c3[3] * z * (2 * z * z - 3 * x * x - 3 * y * y);
    basis[12] = c3[4] * x * (4 * z * z - x * x - y * y);
    basis[13] = c3[5] * z * (x * x - y * y);
    basis[14] = c3[6] * x * (x * x - 3 * y * y);
    n = 15;
  }
  return n;
}

Reference RenderReference(const Params64& P, const raster::CameraParams& cam, int max_sh_degree) {
  struct Splat {
    double depth;
    size_t id;
    double mx, my, ca, cb, cc, o, rgb[3];
  };
  Hash hash;
  std::vector<Splat> splats;
  const size_t n = P.v[kLogit].size();
  const int degree = std::max(0, std::min(max_sh_degree, P.sh_degree));
  const int k = P.rest_coeffs();
  double R[9];
  for (int i = 0; i < 9; ++i) R[i] = cam.R[i];
  for (size_t i = 0; i < n; ++i) {
    const double* p = &P.v[kPos][i * 3];
    const double tx = R[0] * p[0] + R[1] * p[1] + R[2] * p[2] + cam.t[0];
    const double ty = R[3] * p[0] + R[4] * p[1] + R[5] * p[2] + cam.t[1];
    const double tz = R[6] * p[0] + R[7] * p[1] + R[8] * p[2] + cam.t[2];
    if (!(tz > cam.near_plane)) {
      hash.Mix(1);
      continue;
    }
    const double m = P.v[kScale].empty() ? 1.0 : P.v[kScale][i];
    const double o = m / (1.0 + std::exp(-P.v[kLogit][i]));
    if (!(o >= raster::kAlphaMin)) {
      hash.Mix(2);
      continue;
    }
    const double* q = &P.v[kRot][i * 4];
    const double qn = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const double w = q[0] / qn, x = q[1] / qn, y = q[2] / qn, z = q[3] / qn;
    const double Rq[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                          2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                          2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
    const double* ls = &P.v[kLogScale][i * 3];
    const double s[3] = {std::exp(ls[0]), std::exp(ls[1]), std::exp(ls[2])};
    double M[9], Sig[9];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) M[r * 3 + c] = Rq[r * 3 + c] * s[c];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c)
        Sig[r * 3 + c] = M[r * 3] * M[c * 3] + M[r * 3 + 1] * M[c * 3 + 1] + M[r * 3 + 2] * M[c * 3 + 2];
    const double fx = cam.fx, fy = cam.fy, W = cam.width, H = cam.height;
    const double tan_fovx = 0.5 * W / fx, tan_fovy = 0.5 * H / fy;
    const double guard = raster::kFovGuard;
    const double lim_x_pos = (W - cam.cx) / fx + guard * tan_fovx, lim_x_neg = cam.cx / fx + guard * tan_fovx;
    const double lim_y_pos = (H - cam.cy) / fy + guard * tan_fovy, lim_y_neg = cam.cy / fy + guard * tan_fovy;
    const double u = tx / tz, v = ty / tz;
    const double ucl = std::min(lim_x_pos, std::max(-lim_x_neg, u));
    const double vcl = std::min(lim_y_pos, std::max(-lim_y_neg, v));
    hash.Mix(10 + (ucl != u) + 2 * (vcl != v));  // the Jacobian clamp is a kink
    const double J00 = fx / tz, J02 = -fx * ucl / tz, J11 = fy / tz, J12 = -fy * vcl / tz;
    double T[2][3];
    for (int c = 0; c < 3; ++c) {
      T[0][c] = J00 * R[c] + J02 * R[6 + c];
      T[1][c] = J11 * R[3 + c] + J12 * R[6 + c];
    }
    double cov[2][2];
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b) {
        double acc = 0;
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 3; ++c) acc += T[a][r] * Sig[r * 3 + c] * T[b][c];
        cov[a][b] = acc;
      }
    const double a = cov[0][0] + raster::kDilation, b = cov[0][1], c = cov[1][1] + raster::kDilation;
    const double det = a * c - b * b;
    if (!(det > 0)) {
      hash.Mix(3);
      continue;
    }
    Splat sp;
    sp.depth = tz;
    sp.id = i;
    sp.mx = fx * u + cam.cx;
    sp.my = fy * v + cam.cy;
    sp.ca = c / det;
    sp.cb = -b / det;
    sp.cc = a / det;
    sp.o = o;
    const double d[3] = {p[0] - cam.campos[0], p[1] - cam.campos[1], p[2] - cam.campos[2]};
    const double dn = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    double basis[15];
    const int nb = ShBasis(degree, d[0] / dn, d[1] / dn, d[2] / dn, basis);
    for (int ch = 0; ch < 3; ++ch) {
      double val = raster::kShC0 * P.v[kDc][i * 3 + ch] + 0.5;
      for (int j = 0; j < nb; ++j) val += basis[j] * P.v[kRest][i * 3 * k + ch * k + j];
      sp.rgb[ch] = val > 0 ? val : 0;
      hash.Mix(20 + (val > 0));  // the colour clamp is a kink
    }
    splats.push_back(sp);
  }
  std::sort(splats.begin(), splats.end(),
            [](const Splat& x, const Splat& y) { return x.depth != y.depth ? x.depth < y.depth : x.id < y.id; });
  for (const Splat& sp : splats) hash.Mix(100 + sp.id);

  const std::vector<double>& bg = P.v[kBackground];
  Reference ref;
  ref.image.assign(static_cast<size_t>(cam.width) * cam.height * 3, 0.0);
  ref.contributors.assign(static_cast<size_t>(cam.width) * cam.height, 0);
  for (int py = 0; py < cam.height; ++py) {
    for (int px = 0; px < cam.width; ++px) {
      const size_t pix = static_cast<size_t>(py) * cam.width + px;
      double T = 1, C[3] = {0, 0, 0};
      for (size_t s = 0; s < splats.size(); ++s) {
        const Splat& sp = splats[s];
        const double dx = sp.mx - (px + 0.5), dy = sp.my - (py + 0.5);
        const double power = -0.5 * (sp.ca * dx * dx + sp.cc * dy * dy) - sp.cb * dx * dy;
        if (power > 0 || power < -60) continue;
        const double raw = sp.o * std::exp(power);
        const double alpha = std::min<double>(raster::kAlphaMax, raw);
        if (alpha < raster::kAlphaMin) continue;
        if (T * (1 - alpha) < raster::kTransmittanceMin) {
          hash.Mix((pix << 20) ^ (s << 1) ^ 1);  // early termination
          break;
        }
        hash.Mix((pix << 20) ^ (s << 2) ^ (raw >= raster::kAlphaMax ? 2 : 0));  // contribution, clamped?
        for (int ch = 0; ch < 3; ++ch) C[ch] += sp.rgb[ch] * alpha * T;
        T *= 1 - alpha;
        ++ref.contributors[pix];
      }
      for (int ch = 0; ch < 3; ++ch) ref.image[pix * 3 + ch] = C[ch] + T * bg[ch];
    }
  }
  ref.signature = hash.h;
  return ref;
}

// ----------------------------------------------------------------------------------------
// Scenes
// ----------------------------------------------------------------------------------------

struct TestScene {
  GaussianCloud cloud;
  Camera camera;
  RenderOptions options;
  std::vector<float> opacity_scale;  // empty = none
  // Indices of RandomScene's hand-placed Gaussians.
  size_t off_screen = 0, guard_x = 0, guard_y = 0, opaque = 0, stack = 0, clamped_colour = 0, masked = 0;
};

Params64 ToParams64(const TestScene& s) {
  Params64 P;
  P.sh_degree = s.cloud.sh_degree;
  auto cast = [](const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); };
  P.v[kPos] = cast(s.cloud.positions);
  P.v[kLogScale] = cast(s.cloud.log_scales);
  P.v[kRot] = cast(s.cloud.rotations);
  P.v[kLogit] = cast(s.cloud.opacity_logits);
  P.v[kDc] = cast(s.cloud.sh_dc);
  P.v[kRest] = cast(s.cloud.sh_rest);
  P.v[kScale] = cast(s.opacity_scale);
  P.v[kBackground] = {s.options.background[0], s.options.background[1], s.options.background[2]};
  return P;
}

std::vector<double> AnalyticByKind(const CloudGradients& g, Kind kind) {
  const std::vector<float>* src[kNumKinds] = {&g.positions, &g.log_scales, &g.rotations,     &g.opacity_logits,
                                              &g.sh_dc,     &g.sh_rest,    &g.opacity_scale, nullptr};
  if (kind == kBackground) return {g.background[0], g.background[1], g.background[2]};
  return std::vector<double>(src[kind]->begin(), src[kind]->end());
}

// Appends a Gaussian given in camera space (position, linear scales) with a random-ish
// rotation, colour from linear RGB, and an opacity.
void AddCameraSpaceGaussian(TestScene& s, Eigen::Vector3d p_cam, Eigen::Vector3d scale, Eigen::Vector4d quat,
                            double opacity, Eigen::Vector3d rgb) {
  const Eigen::Vector3d p = s.camera.R.transpose() * (p_cam - s.camera.t);
  GaussianCloud& c = s.cloud;
  const size_t i = c.size();
  c.Resize(i + 1);
  for (int d = 0; d < 3; ++d) {
    c.positions[i * 3 + d] = static_cast<float>(p[d]);
    c.log_scales[i * 3 + d] = static_cast<float>(std::log(scale[d]));
    c.sh_dc[i * 3 + d] = static_cast<float>((rgb[d] - 0.5) / raster::kShC0);
  }
  for (int d = 0; d < 4; ++d) c.rotations[i * 4 + d] = static_cast<float>(quat[d]);
  c.opacity_logits[i] = static_cast<float>(std::log(opacity / (1 - opacity)));
}

// A random scene in front of a tilted camera, plus hand-placed Gaussians that exercise the
// special cases: partly off-screen, beyond the Jacobian guard band (x and y), an opaque
// one (alpha clamped at 0.99), a stack that terminates pixels early, and a clamped colour.
TestScene RandomScene(uint64_t seed, int count, int width, int height, int sh_degree, bool with_scale) {
  SplitMix64 rng(seed);
  TestScene s;
  s.camera = Camera::LookAt({0.4, -0.6, -4.0}, {0.1, 0.05, 0.0}, {0, -1, 0}, width, height, 62);
  s.cloud.sh_degree = sh_degree;
  s.options.background = {0.3f, 0.55f, 0.8f};
  s.options.max_sh_degree = sh_degree;
  // (Draws are sequenced explicitly: argument evaluation order is unspecified.)
  auto rand_quat = [&]() -> Eigen::Vector4d {
    Eigen::Vector4d q;
    for (int d = 0; d < 4; ++d) q[d] = rng.Uniform(-1, 1);
    return q * rng.Uniform(0.5, 2.0);  // deliberately not unit: the gradient goes through normalisation
  };
  auto rand_vec3 = [&](double lo, double hi) -> Eigen::Vector3d {
    Eigen::Vector3d v;
    for (int d = 0; d < 3; ++d) v[d] = rng.Uniform(lo, hi);
    return v;
  };
  auto rand_rgb = [&] { return rand_vec3(0.1, 0.9); };
  auto add_special = [&](const Eigen::Vector3d& p_cam, const Eigen::Vector3d& sc, double opacity) {
    const Eigen::Vector4d q = rand_quat();
    AddCameraSpaceGaussian(s, p_cam, sc, q, opacity, rand_rgb());
  };
  const double fx = s.camera.fx;
  for (int g = 0; g < count; ++g) {
    const double z = rng.Uniform(3.0, 5.5);
    // Centres spread over the image and a little beyond its edges.
    const double u = rng.Uniform(-0.15, 1.15) * width;
    const double v = rng.Uniform(-0.15, 1.15) * height;
    const Eigen::Vector3d p((u - s.camera.cx) * z / fx, (v - s.camera.cy) * z / fx, z);
    const Eigen::Vector3d sc = rand_vec3(0.6, 5.0) * (z / fx);  // 0.6-5 px at that depth
    const Eigen::Vector4d q = rand_quat();
    const double opacity = rng.Uniform(0.05, 0.95);
    AddCameraSpaceGaussian(s, p, sc, q, opacity, rand_rgb());
  }
  // (Distinct depths throughout: a float32 vs float64 tie could order them differently.)
  const double pxs = 4.0 / fx;
  const double tan_x = 0.5 * width / fx, tan_y = 0.5 * height / fx;
  // Partly off-screen (centre 3 px left of the image).
  s.off_screen = s.cloud.size();
  add_special({(-3 - s.camera.cx) * pxs, 0.1, 4.0}, {4 * pxs, 2.5 * pxs, 3 * pxs}, 0.8);
  // Beyond the guard band to the right and above: the Jacobian uses the clamped position.
  s.guard_x = s.cloud.size();
  add_special({((width - s.camera.cx) / fx + 1.3 * 0.3 * tan_x) * 4.25, 0.0, 4.25}, {9 * pxs, 6 * pxs, 7 * pxs}, 0.9);
  s.guard_y = s.cloud.size();
  add_special({0.0, -(s.camera.cy / fx + 1.3 * 0.3 * tan_y) * 4.5, 4.5}, {5 * pxs, 9 * pxs, 6 * pxs}, 0.9);
  // Opaque: alpha = min(0.99, 0.998 G) is clamped near its centre.
  s.opaque = s.cloud.size();
  add_special({0.2, 0.1, 3.2}, {2.5 * pxs, 3 * pxs, 2 * pxs}, 0.998);
  // A stack on one ray: T = 0.03, 9e-4, then 2.7e-5 < 1e-4 ends the pixel at the third.
  s.stack = s.cloud.size();
  for (int d = 0; d < 3; ++d) add_special({-0.3, 0.25, 3.0 + 0.4 * d}, {3 * pxs, 3 * pxs, 3 * pxs}, 0.97);
  // Clamped colour: channel 0 is 0.5 + C0 * dc + (view-dependent part) < 0.
  s.clamped_colour = s.cloud.size();
  const Eigen::Vector4d q = rand_quat();
  AddCameraSpaceGaussian(s, {0.35, -0.3, 3.6}, {3 * pxs, 2 * pxs, 2 * pxs}, q, 0.7, {-2.0, 0.5, 0.5});
  // In plain view; masked out (opacity scale 0) when the scene has a scale.
  s.masked = s.cloud.size();
  add_special({-0.1, -0.2, 3.3}, {3 * pxs, 4 * pxs, 2 * pxs}, 0.8);
  const int k = s.cloud.rest_coeffs();
  for (size_t i = 0; i < s.cloud.size(); ++i)
    for (int j = 0; j < 3 * k; ++j) s.cloud.sh_rest[i * 3 * k + j] = static_cast<float>(rng.Uniform(-0.25, 0.25));
  if (with_scale) {
    s.opacity_scale.resize(s.cloud.size());
    for (float& m : s.opacity_scale) m = static_cast<float>(rng.Uniform(0.3, 1.0));
    s.opacity_scale[s.masked] = 0.0f;  // masked out entirely: culled, zero gradients
    s.opacity_scale[s.opaque] = 1.0f;  // keep the 0.99 clamp in play
  }
  return s;
}

std::vector<float> RandomWeights(uint64_t seed, const Camera& cam) {
  SplitMix64 rng(seed);
  std::vector<float> w(static_cast<size_t>(cam.width) * cam.height * 3);
  for (float& x : w) x = static_cast<float>(rng.Uniform(-1, 1));
  return w;
}

// Loss weights on a single pixel (all channels), zero elsewhere.
std::vector<float> PixelWeights(const Camera& cam, int x, int y) {
  std::vector<float> w(static_cast<size_t>(cam.width) * cam.height * 3, 0.0f);
  for (int ch = 0; ch < 3; ++ch) w[(static_cast<size_t>(y) * cam.width + x) * 3 + ch] = 1.0f - 0.3f * ch;
  return w;
}

// ----------------------------------------------------------------------------------------
// Gradient check
// ----------------------------------------------------------------------------------------

struct GradCheck {
  CloudGradients analytic;
  RenderResult forward;
  std::array<double, kNumKinds> max_fd{};     // largest |finite difference| per kind
  std::array<double, kNumKinds> worst_rel{};  // largest error / tolerance scale per kind
  int one_sided = 0;                          // parameters whose +-h changed a discrete decision
};

double Loss(const Reference& r, const std::vector<float>& w) {
  double l = 0;
  for (size_t i = 0; i < w.size(); ++i) l += static_cast<double>(w[i]) * r.image[i];
  return l;
}

// Checks every parameter of `scene` under the loss sum(w * image).
//
// Finite differences: central, in float64, step 1e-6 (parameters are O(1)). Truncation
// error is ~h^2 L''' <~ 1e-9 and round-off ~1e-16 |L| / h <~ 1e-8, both far below the
// tolerance. When the step flips a discrete decision of the forward (the 1/255 or 0.99
// alpha tests, early termination, a clamp, the depth order -- detected through the
// reference's decision signature), the step shrinks 10x (to 1e-9 at most) and finally
// falls back to the one-sided difference on the side that keeps every decision.
//
// Tolerance: the analytic gradients are float32 (each term ~1e-7 relative, sums of a few
// hundred pixel terms); measured errors are <= 2e-5 of the scale, and ~1.3e-4 where the
// exact gradient cancels to 0 (the rotation of an isotropic Gaussian leaves a float32
// residue of ~1e-6). 1e-3 keeps a margin over that, yet any missing or wrong term of the
// chain rule (a dropped clamp, the dilation, the normalisation, a sign) is off by 1e-2 to
// 1. The scale for an entry is the largest |gradient| of the same kind on the same
// Gaussian, floored at 1e-2 of the kind's largest, so small Gaussians are checked against
// their own magnitude.
GradCheck CheckGradients(const TestScene& scene, const std::vector<float>& weights, double rel_tol = 1e-3) {
  GradCheck out;
  DifferentiableRasterizer dr(2);
  ForwardInputs in;
  in.opacity_scale = scene.opacity_scale;
  auto fwd = dr.Forward(scene.cloud, scene.camera, scene.options, in);
  EXPECT_TRUE(fwd.ok()) << fwd.status();
  if (!fwd.ok()) return out;
  out.forward = *std::move(fwd);
  const absl::Status st = dr.Backward(weights, &out.analytic);
  EXPECT_TRUE(st.ok()) << st;

  const raster::CameraParams cam = ToCameraParams(scene.camera, scene.options.near_plane);
  Params64 P = ToParams64(scene);
  const Reference base = RenderReference(P, cam, scene.options.max_sh_degree);
  // The reference is only trusted if it is the CPU forward's function: same contributors
  // everywhere and the same image up to float32 rounding.
  double max_diff = 0;
  for (size_t i = 0; i < base.image.size(); ++i)
    max_diff = std::max(max_diff, std::abs(base.image[i] - out.forward.color.pixels[i]));
  EXPECT_LT(max_diff, 1e-5) << "float64 reference differs from the CPU forward";
  EXPECT_EQ(base.contributors, out.forward.contributors);

  const int k = scene.cloud.rest_coeffs();
  const int group[kNumKinds] = {3, 3, 4, 1, 3, 3 * std::max(k, 1), 1, 3};
  for (int kind = 0; kind < kNumKinds; ++kind) {
    std::vector<double>& theta = P.v[kind];
    const std::vector<double> analytic = AnalyticByKind(out.analytic, static_cast<Kind>(kind));
    EXPECT_EQ(analytic.size(), theta.size()) << kKindNames[kind];
    if (analytic.size() != theta.size()) continue;
    std::vector<double> fd(theta.size(), 0.0);
    for (size_t idx = 0; idx < theta.size(); ++idx) {
      const double t0 = theta[idx];
      double lp = 0, lm = 0, h = 1e-6;
      bool plus_ok = false, minus_ok = false;
      for (int attempt = 0; attempt < 4; ++attempt, h *= 0.1) {
        theta[idx] = t0 + h;
        const Reference rp = RenderReference(P, cam, scene.options.max_sh_degree);
        theta[idx] = t0 - h;
        const Reference rm = RenderReference(P, cam, scene.options.max_sh_degree);
        theta[idx] = t0;
        lp = Loss(rp, weights);
        lm = Loss(rm, weights);
        plus_ok = rp.signature == base.signature;
        minus_ok = rm.signature == base.signature;
        if (plus_ok && minus_ok) break;
      }
      h *= plus_ok && minus_ok ? 1.0 : 10.0;  // undo the last shrink when the loop ran out
      if (plus_ok && minus_ok) {
        fd[idx] = (lp - lm) / (2 * h);
      } else {
        ++out.one_sided;
        const double l0 = Loss(base, weights);
        EXPECT_TRUE(plus_ok || minus_ok) << kKindNames[kind] << "[" << idx << "]: both sides change the forward";
        fd[idx] = plus_ok ? (lp - l0) / h : (l0 - lm) / h;
      }
    }
    const double kind_max =
        std::accumulate(fd.begin(), fd.end(), 0.0, [](double m, double x) { return std::max(m, std::abs(x)); });
    out.max_fd[kind] = kind_max;
    const size_t gsize = kind == kBackground ? 3 : group[kind];
    for (size_t g0 = 0; g0 < fd.size(); g0 += gsize) {
      double group_max = 0;
      for (size_t idx = g0; idx < std::min(fd.size(), g0 + gsize); ++idx)
        group_max = std::max(group_max, std::abs(fd[idx]));
      const double scale = std::max({group_max, 1e-2 * kind_max, 1e-12});
      for (size_t idx = g0; idx < std::min(fd.size(), g0 + gsize); ++idx) {
        const double rel = std::abs(analytic[idx] - fd[idx]) / scale;
        out.worst_rel[kind] = std::max(out.worst_rel[kind], rel);
        EXPECT_LE(rel, rel_tol) << kKindNames[kind] << "[" << idx << "]: analytic " << analytic[idx] << ", finite "
                                << "difference " << fd[idx] << " (scale " << scale << ")";
      }
    }
  }
  std::printf("  grad check:");
  for (int kind = 0; kind < kNumKinds; ++kind)
    std::printf(" %s max %.3g err %.2g;", kKindNames[kind], out.max_fd[kind], out.worst_rel[kind]);
  std::printf(" one-sided %d\n", out.one_sided);
  return out;
}

void ExpectAllZero(const std::vector<float>& v, size_t begin, size_t end, const char* what) {
  for (size_t i = begin; i < end; ++i) EXPECT_EQ(v[i], 0.0f) << what << "[" << i << "]";
}

// ----------------------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------------------

TEST(RasterizerBackwardTest, ReferenceMatchesCpuForward) {
  // The float64 reference must be the function the CPU rasterizer computes, or the
  // gradient checks below would test the wrong thing.
  for (int sh : {0, 3}) {
    const TestScene s = RandomScene(100 + sh, 20, 64, 48, sh, sh == 3);
    CpuRasterizer cpu(2);
    DifferentiableRasterizer dr(2);
    ForwardInputs in;
    in.opacity_scale = s.opacity_scale;
    auto r = dr.Forward(s.cloud, s.camera, s.options, in);
    ASSERT_TRUE(r.ok()) << r.status();
    const Reference ref = RenderReference(ToParams64(s), ToCameraParams(s.camera, s.options.near_plane), sh);
    double max_diff = 0;
    for (size_t i = 0; i < ref.image.size(); ++i)
      max_diff = std::max(max_diff, std::abs(ref.image[i] - r->color.pixels[i]));
    EXPECT_LT(max_diff, 1e-5) << "sh " << sh;
    EXPECT_EQ(ref.contributors, r->contributors) << "sh " << sh;
    // The scene does exercise termination and the clamp (a non-vacuous reference check).
    EXPECT_GT(r->visible, 15u);
    EXPECT_GT(*std::max_element(r->contributors.begin(), r->contributors.end()), 3u);
  }
}

TEST(RasterizerBackwardTest, GradientsShDegree0) {
  const TestScene s = RandomScene(1, 12, 64, 48, 0, false);
  const GradCheck g = CheckGradients(s, RandomWeights(2, s.camera));
  for (Kind kind : {kPos, kLogScale, kRot, kLogit, kDc, kBackground})
    EXPECT_GT(g.max_fd[kind], 1e-3) << kKindNames[kind];
  EXPECT_TRUE(g.analytic.opacity_scale.empty());
  EXPECT_TRUE(g.analytic.sh_rest.empty());
}

TEST(RasterizerBackwardTest, GradientsShDegree3WithOpacityScaleAndPartialTiles) {
  // 50x37: edge tiles are partial. Opacity scale in [0.3, 1], one Gaussian masked out.
  const TestScene s = RandomScene(3, 20, 50, 37, 3, true);
  const GradCheck g = CheckGradients(s, RandomWeights(4, s.camera));
  for (int kind = 0; kind < kNumKinds; ++kind) EXPECT_GT(g.max_fd[kind], 1e-3) << kKindNames[kind];
  // Masked out (m = 0): culled, so nothing, m included, gets a gradient -- unlike the
  // same scene without the mask, where that Gaussian is in plain view.
  const size_t m = s.masked;
  EXPECT_EQ(g.analytic.opacity_scale[m], 0.0f);
  ExpectAllZero(g.analytic.positions, m * 3, m * 3 + 3, "position of the masked Gaussian");
  EXPECT_EQ(g.analytic.opacity_logits[m], 0.0f);
  {
    TestScene unmasked = s;
    unmasked.opacity_scale.clear();
    DifferentiableRasterizer dr(1);
    ASSERT_TRUE(dr.Forward(unmasked.cloud, unmasked.camera, unmasked.options).ok());
    CloudGradients gu;
    ASSERT_TRUE(dr.Backward(RandomWeights(4, s.camera), &gu).ok());
    EXPECT_NE(gu.opacity_logits[m], 0.0f);
  }
  // The clamped-colour Gaussian's red channel is 0: no gradient to its red coefficients.
  const size_t c = s.clamped_colour;
  EXPECT_EQ(g.analytic.sh_dc[c * 3], 0.0f);
  ExpectAllZero(g.analytic.sh_rest, c * 45, c * 45 + 15, "red sh_rest of the clamped Gaussian");
  EXPECT_NE(g.analytic.sh_dc[c * 3 + 1], 0.0f);
}

TEST(RasterizerBackwardTest, GradientsSmallSceneWithTruncatedShBands) {
  // 3 random Gaussians + the special ones at 32x32; a degree-3 cloud rendered with
  // max_sh_degree 1, so bands 2-3 are unused and get exactly zero gradient.
  TestScene s = RandomScene(5, 3, 32, 32, 3, false);
  s.options.max_sh_degree = 1;
  const GradCheck g = CheckGradients(s, RandomWeights(6, s.camera));
  EXPECT_GT(g.max_fd[kRest], 1e-3);
  for (size_t i = 0; i < s.cloud.size(); ++i)
    for (int ch = 0; ch < 3; ++ch)
      ExpectAllZero(g.analytic.sh_rest, i * 45 + ch * 15 + 3, i * 45 + ch * 15 + 15, "SH bands 2-3");
}

TEST(RasterizerBackwardTest, JacobianClampIsDifferentiatedAsTheForwardComputesIt) {
  // Only the two guard-band Gaussians (and the off-screen one), big enough to reach into
  // the image: their covariance uses the clamped x/z (y/z), so d cov / d t_x is zero
  // while d cov / d t_z is not.
  TestScene full = RandomScene(7, 0, 64, 48, 0, false);
  TestScene s = full;
  s.cloud = full.cloud.Gather(std::vector<uint32_t>{static_cast<uint32_t>(full.off_screen),
                                                    static_cast<uint32_t>(full.guard_x),
                                                    static_cast<uint32_t>(full.guard_y)});
  const raster::CameraParams cam = ToCameraParams(s.camera, s.options.near_plane);
  int clamped = 0;
  for (size_t i = 1; i < 3; ++i) {
    const float* p = &s.cloud.positions[i * 3];
    const double tx = cam.R[0] * p[0] + cam.R[1] * p[1] + cam.R[2] * p[2] + cam.t[0];
    const double ty = cam.R[3] * p[0] + cam.R[4] * p[1] + cam.R[5] * p[2] + cam.t[1];
    const double tz = cam.R[6] * p[0] + cam.R[7] * p[1] + cam.R[8] * p[2] + cam.t[2];
    const double lim_x = (cam.width - cam.cx) / cam.fx + 0.3 * 0.5 * cam.width / cam.fx;
    const double lim_y = cam.cy / cam.fy + 0.3 * 0.5 * cam.height / cam.fy;
    clamped += (tx / tz > lim_x) + (-ty / tz > lim_y);
  }
  ASSERT_EQ(clamped, 2) << "the scene must put both Gaussians beyond the guard band";
  const GradCheck g = CheckGradients(s, RandomWeights(8, s.camera));
  EXPECT_EQ(g.forward.visible, 3u);
  for (size_t i = 1; i < 3; ++i) {
    double mag = 0;
    for (int d = 0; d < 3; ++d) mag += std::abs(g.analytic.log_scales[i * 3 + d]);
    EXPECT_GT(mag, 1e-2) << "Gaussian " << i << " must be visible enough to test";
  }
}

// Identity camera whose principal point sits on a pixel centre: a Gaussian at (0, 0, z)
// is centred exactly on pixel (w/2, h/2).
TestScene AxisScene(int w = 48, int h = 48, double f = 48) {
  TestScene s;
  s.camera.width = w;
  s.camera.height = h;
  s.camera.fx = s.camera.fy = f;
  s.camera.cx = w / 2 + 0.5;
  s.camera.cy = h / 2 + 0.5;
  s.options.background = {0.2f, 0.4f, 0.6f};
  return s;
}

// Adds an isotropic Gaussian on the axis at depth z whose screen sigma is `sigma_px`
// (dilation included), so alpha at pixel offset (dx, 0) is opacity * exp(-dx^2 / (2 sigma^2)).
void AddAxisGaussian(TestScene& s, double z, double sigma_px, double opacity, Eigen::Vector3d rgb) {
  const double sw = std::sqrt(sigma_px * sigma_px - raster::kDilation) * z / s.camera.fx;
  AddCameraSpaceGaussian(s, {0, 0, z}, {sw, sw, sw}, {1, 0, 0, 0}, opacity, rgb);
}

TEST(RasterizerBackwardTest, AlphaThresholdIsRespected) {
  // Pixel 4 px right of the centre: alpha = opacity * exp(-1/2). Just above 1/255 it is
  // blended and differentiated; just below it is skipped by forward and backward alike.
  for (double side : {+1.0, -1.0}) {
    SCOPED_TRACE(side > 0 ? "alpha just above 1/255" : "alpha just below 1/255");
    TestScene s = AxisScene();
    const double opacity = raster::kAlphaMin * std::exp(0.5) * (1 + side * 2e-3);
    AddAxisGaussian(s, 5.0, 4.0, opacity, {0.9, 0.6, 0.3});
    const int px = 24 + 4, py = 24;
    const GradCheck g = CheckGradients(s, PixelWeights(s.camera, px, py));
    EXPECT_EQ(g.forward.contributors[py * 48 + px], side > 0 ? 1u : 0u);
    if (side > 0) {
      EXPECT_GT(std::abs(g.analytic.opacity_logits[0]), 1e-4);
      EXPECT_GT(std::abs(g.analytic.positions[0]), 1e-4);
    } else {
      EXPECT_EQ(g.analytic.opacity_logits[0], 0.0f);
      ExpectAllZero(g.analytic.positions, 0, 3, "position");
      ExpectAllZero(g.analytic.log_scales, 0, 3, "log_scale");
      ExpectAllZero(g.analytic.sh_dc, 0, 3, "sh_dc");
    }
    EXPECT_EQ(g.one_sided, 0);
  }
}

TEST(RasterizerBackwardTest, AlphaClampAt099HasNoGradient) {
  // Screen sigma 10 px, pixel 1 px right of the centre: alpha = min(0.99, opacity * exp(-1/200)).
  for (double side : {-1.0, +1.0}) {
    SCOPED_TRACE(side < 0 ? "just below the clamp" : "clamped");
    TestScene s = AxisScene();
    const double opacity = raster::kAlphaMax * std::exp(1.0 / 200) * (1 + side * 2e-3);
    AddAxisGaussian(s, 5.0, 10.0, opacity, {0.9, 0.6, 0.3});
    const int px = 24 + 1, py = 24;
    const GradCheck g = CheckGradients(s, PixelWeights(s.camera, px, py));
    // T = 1 - 0.99 (1 - 2e-3) = 0.01198 below the clamp, exactly 1 - 0.99 when clamped.
    EXPECT_NEAR(g.forward.final_transmittance[py * 48 + px], side < 0 ? 0.01198 : 0.01, 1e-5);
    if (side < 0) {
      EXPECT_GT(std::abs(g.analytic.opacity_logits[0]), 1e-4);
      EXPECT_GT(std::abs(g.analytic.positions[0]), 1e-4);
    } else {
      // alpha is the constant 0.99: only the colour (and background) gradients remain.
      EXPECT_EQ(g.analytic.opacity_logits[0], 0.0f);
      ExpectAllZero(g.analytic.positions, 0, 3, "position");
      ExpectAllZero(g.analytic.log_scales, 0, 3, "log_scale");
      ExpectAllZero(g.analytic.rotations, 0, 4, "rotation");
      EXPECT_GT(std::abs(g.analytic.sh_dc[0]), 1e-3);
    }
  }
}

TEST(RasterizerBackwardTest, EarlyTerminationIsRespected) {
  // Three Gaussians on the axis, alphas 0.95, 0.95 and a3 at the centre pixel. After two,
  // T = 0.0025; the third is blended iff 0.0025 (1 - a3) >= 1e-4, i.e. a3 <= 0.96.
  for (double side : {-1.0, +1.0}) {
    SCOPED_TRACE(side < 0 ? "third Gaussian kept" : "pixel terminates before the third");
    TestScene s = AxisScene();
    AddAxisGaussian(s, 4.0, 3.0, 0.95, {0.9, 0.2, 0.2});
    AddAxisGaussian(s, 5.0, 3.0, 0.95, {0.2, 0.9, 0.2});
    AddAxisGaussian(s, 6.0, 3.0, 0.96 * (1 + side * 2e-3), {0.2, 0.2, 0.9});
    const int px = 24, py = 24;
    const GradCheck g = CheckGradients(s, PixelWeights(s.camera, px, py));
    EXPECT_EQ(g.forward.contributors[py * 48 + px], side < 0 ? 3u : 2u);
    if (side < 0) {
      EXPECT_GT(std::abs(g.analytic.opacity_logits[2]), 1e-6);
      EXPECT_GT(std::abs(g.analytic.sh_dc[2 * 3 + 2]), 1e-6);
    } else {
      EXPECT_EQ(g.analytic.opacity_logits[2], 0.0f);
      ExpectAllZero(g.analytic.sh_dc, 6, 9, "sh_dc of the excluded Gaussian");
    }
    // The front Gaussians' gradients (through T) are checked against finite differences.
    EXPECT_GT(std::abs(g.analytic.opacity_logits[0]), 1e-4);
  }
}

TEST(RasterizerBackwardTest, ForwardIsBitIdenticalToCpuRasterizer) {
  const GaussianCloud cloud = MakeSyntheticScene({.count = 20000, .sh_degree = 3, .seed = 3});
  const Camera cam = Camera::LookAt({0.5, -2.5, -6}, {0, -1, 0}, {0, -1, 0}, 150, 110, 60);
  for (auto mode : {raster::RadiusMode::kOpacityAware, raster::RadiusMode::kThreeSigma}) {
    RenderOptions opt;
    opt.background = {0.1f, 0.7f, 0.35f};
    opt.radius_mode = mode;
    for (int threads : {1, 3}) {
      CpuRasterizer cpu(threads);
      DifferentiableRasterizer dr(threads);
      auto a = cpu.Render(cloud, cam, opt);
      auto b = dr.Forward(cloud, cam, opt);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_GT(a->visible, 1000u);
      EXPECT_EQ(a->color.pixels, b->color.pixels);
      EXPECT_EQ(a->final_transmittance, b->final_transmittance);
      EXPECT_EQ(a->contributors, b->contributors);
      EXPECT_EQ(a->visible, b->visible);
      EXPECT_EQ(a->intersections, b->intersections);
      // An all-ones opacity scale multiplies by exactly 1: still the same image.
      const std::vector<float> ones(cloud.size(), 1.0f);
      ForwardInputs in;
      in.opacity_scale = ones;
      auto c = dr.Forward(cloud, cam, opt, in);
      ASSERT_TRUE(c.ok());
      EXPECT_EQ(a->color.pixels, c->color.pixels);
    }
  }
}

TEST(RasterizerBackwardTest, GradientsAreBitIdenticalAcrossThreadCounts) {
  const GaussianCloud cloud = MakeSyntheticScene({.count = 20000, .sh_degree = 3, .seed = 9});
  const Camera cam = Camera::LookAt({0.5, -2.5, -6}, {0, -1, 0}, {0, -1, 0}, 130, 100, 60);
  std::vector<float> scale(cloud.size());
  SplitMix64 rng(10);
  for (float& m : scale) m = static_cast<float>(rng.Uniform(0.0, 1.0));
  const std::vector<float> w = RandomWeights(11, cam);
  RenderOptions opt;
  opt.background = {0.5f, 0.5f, 0.5f};
  std::vector<CloudGradients> grads;
  for (int threads : {1, 2, 4}) {
    DifferentiableRasterizer dr(threads);
    ForwardInputs in;
    in.opacity_scale = scale;
    ASSERT_TRUE(dr.Forward(cloud, cam, opt, in).ok());
    CloudGradients g;
    ASSERT_TRUE(dr.Backward(w, &g).ok());
    grads.push_back(std::move(g));
    // A second Backward on the same Forward reuses the scratch and gives the same result.
    CloudGradients again;
    ASSERT_TRUE(dr.Backward(w, &again).ok());
    EXPECT_EQ(grads.back().positions, again.positions);
  }
  size_t nonzero = 0;
  for (float v : grads[0].positions) nonzero += v != 0.0f;
  EXPECT_GT(nonzero, 3000u);
  for (size_t t = 1; t < grads.size(); ++t) {
    EXPECT_EQ(grads[0].positions, grads[t].positions);
    EXPECT_EQ(grads[0].log_scales, grads[t].log_scales);
    EXPECT_EQ(grads[0].rotations, grads[t].rotations);
    EXPECT_EQ(grads[0].opacity_logits, grads[t].opacity_logits);
    EXPECT_EQ(grads[0].sh_dc, grads[t].sh_dc);
    EXPECT_EQ(grads[0].sh_rest, grads[t].sh_rest);
    EXPECT_EQ(grads[0].opacity_scale, grads[t].opacity_scale);
    EXPECT_EQ(grads[0].background, grads[t].background);
  }
}

TEST(RasterizerBackwardTest, OpacityScaleOfOneMatchesNoScale) {
  // m = 1 everywhere is the unscaled forward: same gradients, plus d/dm = g_opacity * sigmoid.
  const TestScene s = RandomScene(12, 10, 48, 40, 1, false);
  const std::vector<float> w = RandomWeights(13, s.camera);
  const std::vector<float> ones(s.cloud.size(), 1.0f);
  DifferentiableRasterizer dr(2);
  ASSERT_TRUE(dr.Forward(s.cloud, s.camera, s.options).ok());
  CloudGradients plain, scaled;
  ASSERT_TRUE(dr.Backward(w, &plain).ok());
  ForwardInputs in;
  in.opacity_scale = ones;
  ASSERT_TRUE(dr.Forward(s.cloud, s.camera, s.options, in).ok());
  ASSERT_TRUE(dr.Backward(w, &scaled).ok());
  EXPECT_TRUE(plain.opacity_scale.empty());
  ASSERT_EQ(scaled.opacity_scale.size(), s.cloud.size());
  EXPECT_EQ(plain.positions, scaled.positions);
  EXPECT_EQ(plain.opacity_logits, scaled.opacity_logits);
  size_t nonzero = 0;
  for (size_t i = 0; i < s.cloud.size(); ++i) {
    // d/dlogit = g_o * m * sig (1 - sig) and d/dm = g_o * sig, with the forward's float sigmoid.
    const float sig = raster::Sigmoid(s.cloud.opacity_logits[i]);
    EXPECT_NEAR(scaled.opacity_scale[i] * (1.0f - sig), scaled.opacity_logits[i],
                1e-5 * std::abs(scaled.opacity_logits[i]) + 1e-12);
    nonzero += scaled.opacity_scale[i] != 0.0f;
  }
  EXPECT_GT(nonzero, 5u);
}

TEST(RasterizerBackwardTest, ErrorContract) {
  const TestScene s = RandomScene(14, 4, 32, 32, 0, false);
  DifferentiableRasterizer dr(1);
  CloudGradients g;
  const std::vector<float> w(32 * 32 * 3, 1.0f);
  EXPECT_EQ(dr.Backward(w, &g).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(dr.Forward(s.cloud, s.camera, s.options).ok());
  const absl::Status wrong = dr.Backward(absl::MakeConstSpan(w).subspan(3), &g);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.message()), testing::HasSubstr("grad_image"));
  EXPECT_EQ(dr.Backward(w, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(dr.Backward(w, &g).ok());
  // Bad opacity scales are rejected, and a failed Forward leaves nothing to differentiate.
  std::vector<float> scale(s.cloud.size() + 1, 1.0f);
  ForwardInputs in;
  in.opacity_scale = scale;
  auto st = dr.Forward(s.cloud, s.camera, s.options, in).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), testing::HasSubstr("opacity_scale"));
  EXPECT_EQ(dr.Backward(w, &g).code(), absl::StatusCode::kFailedPrecondition);
  scale.assign(s.cloud.size(), 1.0f);
  scale[0] = 1.5f;
  in.opacity_scale = scale;
  EXPECT_EQ(dr.Forward(s.cloud, s.camera, s.options, in).status().code(), absl::StatusCode::kInvalidArgument);
  scale[0] = std::nanf("");
  EXPECT_EQ(dr.Forward(s.cloud, s.camera, s.options, in).status().code(), absl::StatusCode::kInvalidArgument);
  Camera bad = s.camera;
  bad.fx = 0;
  EXPECT_EQ(dr.Forward(s.cloud, bad, s.options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dr.Backward(w, &g).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace flexgs

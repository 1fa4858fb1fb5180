// CPU rasterizer: analytic checks against hand-derived values.
#include <algorithm>
#include <array>
#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "render/cpu_rasterizer.h"
#include "scene/synthetic_scene.h"

namespace flexgs {
namespace {

constexpr double kC0 = 0.28209479177387814;

// Identity pose, centred principal point on a pixel centre (so the Gaussian's
// centre falls exactly on pixel (w/2, h/2)).
Camera TestCamera(int w = 64, int h = 64, double f = 64) {
  Camera c;
  c.width = w;
  c.height = h;
  c.fx = c.fy = f;
  c.cx = w / 2 + 0.5;
  c.cy = h / 2 + 0.5;
  return c;
}

float Logit(double p) { return static_cast<float>(std::log(p / (1 - p))); }

// Appends an isotropic Gaussian with linear-RGB colour `rgb` (SH DC only).
void AddGaussian(GaussianCloud& cloud, Eigen::Vector3d pos, double sigma, double opacity, Eigen::Vector3d rgb) {
  const size_t i = cloud.size();
  cloud.Resize(i + 1);
  for (int d = 0; d < 3; ++d) {
    cloud.positions[i * 3 + d] = static_cast<float>(pos[d]);
    cloud.log_scales[i * 3 + d] = static_cast<float>(std::log(sigma));
    cloud.sh_dc[i * 3 + d] = static_cast<float>((rgb[d] - 0.5) / kC0);
  }
  cloud.rotations[i * 4] = 1.0f;
  cloud.opacity_logits[i] = Logit(opacity);
}

RenderResult MustRender(const GaussianCloud& cloud, const Camera& cam, RenderOptions opt = {}, int threads = 2) {
  CpuRasterizer r(threads);
  auto res = r.Render(cloud, cam, opt);
  EXPECT_TRUE(res.ok()) << res.status();
  return *std::move(res);
}

TEST(RasterizerTest, EmptySceneIsBackground) {
  GaussianCloud cloud;
  RenderOptions opt;
  opt.background = {0.25f, 0.5f, 1.0f};
  const RenderResult r = MustRender(cloud, TestCamera(40, 24), opt);
  ASSERT_EQ(r.color.width, 40);
  ASSERT_EQ(r.color.height, 24);
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 40; ++x) {
      EXPECT_EQ(r.color.at(x, y, 0), 0.25f);
      EXPECT_EQ(r.color.at(x, y, 1), 0.5f);
      EXPECT_EQ(r.color.at(x, y, 2), 1.0f);
      EXPECT_EQ(r.final_transmittance[y * 40 + x], 1.0f);
      EXPECT_EQ(r.contributors[y * 40 + x], 0u);
    }
}

TEST(RasterizerTest, IsotropicGaussianMatchesAnalyticAlpha) {
  // Screen sigma: (f*s/z)^2 + 0.3 dilation = 16 px^2, so one sigma is 4 pixels.
  const double f = 64, z = 5;
  const double s = std::sqrt(16.0 - 0.3) * z / f;
  const double opacity = 0.8;
  GaussianCloud cloud;
  AddGaussian(cloud, {0, 0, z}, s, opacity, {0.9, 0.6, 0.3});
  const RenderResult r = MustRender(cloud, TestCamera());
  const int cx = 32, cy = 32;
  // Centre: alpha = opacity; black background.
  EXPECT_NEAR(r.color.at(cx, cy, 0), 0.9 * opacity, 1e-5);
  EXPECT_NEAR(r.color.at(cx, cy, 1), 0.6 * opacity, 1e-5);
  EXPECT_NEAR(r.final_transmittance[cy * 64 + cx], 1 - opacity, 1e-6);
  EXPECT_EQ(r.contributors[cy * 64 + cx], 1u);
  // One sigma along x and along y: alpha = opacity * exp(-1/2).
  const double a1 = opacity * std::exp(-0.5);
  EXPECT_NEAR(r.color.at(cx + 4, cy, 0), 0.9 * a1, 1e-5);
  EXPECT_NEAR(r.color.at(cx, cy - 4, 2), 0.3 * a1, 1e-5);
  EXPECT_NEAR(r.final_transmittance[cy * 64 + cx - 4], 1 - a1, 1e-6);
  // Two sigma diagonal: power = -(2^2+2^2)/2 / (sigma=4 -> 1 per 4 px) ... (dx,dy)=(4,4) -> -1.
  EXPECT_NEAR(r.color.at(cx + 4, cy + 4, 0), 0.9 * opacity * std::exp(-1.0), 1e-5);
  // Far away the Gaussian is below 1/255 and leaves the pixel untouched.
  EXPECT_EQ(r.contributors[2 * 64 + 2], 0u);
  EXPECT_EQ(r.color.at(2, 2, 0), 0.0f);
}

TEST(RasterizerTest, TwoGaussiansBlendInDepthOrderNotIndexOrder) {
  const Eigen::Vector3d red(1, 0, 0), green(0, 1, 0);
  const double a_front = 0.6, a_back = 0.7;
  RenderOptions opt;
  opt.background = {0.0f, 0.0f, 1.0f};
  for (bool back_first : {false, true}) {
    GaussianCloud cloud;
    if (back_first) AddGaussian(cloud, {0, 0, 8}, 0.5, a_back, green);
    AddGaussian(cloud, {0, 0, 4}, 0.25, a_front, red);
    if (!back_first) AddGaussian(cloud, {0, 0, 8}, 0.5, a_back, green);
    const RenderResult r = MustRender(cloud, TestCamera(), opt);
    SCOPED_TRACE(back_first ? "back Gaussian stored first" : "front Gaussian stored first");
    EXPECT_NEAR(r.color.at(32, 32, 0), a_front, 1e-5);
    EXPECT_NEAR(r.color.at(32, 32, 1), a_back * (1 - a_front), 1e-5);
    EXPECT_NEAR(r.color.at(32, 32, 2), (1 - a_front) * (1 - a_back), 1e-5);
    EXPECT_EQ(r.contributors[32 * 64 + 32], 2u);
  }
}

TEST(RasterizerTest, OpaqueStackStopsAtTransmittanceThreshold) {
  GaussianCloud cloud;
  for (int i = 0; i < 6; ++i) AddGaussian(cloud, {0, 0, 3.0 + i}, 0.3, 0.95, {0.5, 0.5, 0.5});
  const RenderResult r = MustRender(cloud, TestCamera());
  // T: 1 -> 0.05 -> 0.0025 -> 1.25e-4; the 4th would drop below 1e-4 and is excluded.
  EXPECT_EQ(r.contributors[32 * 64 + 32], 3u);
  EXPECT_NEAR(r.final_transmittance[32 * 64 + 32], 1.25e-4, 1e-9);
}

TEST(RasterizerTest, AlphaIsClampedAt099) {
  GaussianCloud cloud;
  AddGaussian(cloud, {0, 0, 4}, 0.5, 0.999, {1, 1, 1});
  const RenderResult r = MustRender(cloud, TestCamera());
  EXPECT_NEAR(r.final_transmittance[32 * 64 + 32], 0.01, 1e-6);
  EXPECT_NEAR(r.color.at(32, 32, 0), 0.99, 1e-5);
}

TEST(RasterizerTest, GaussiansBehindOrOutsideAreCulled) {
  GaussianCloud cloud;
  AddGaussian(cloud, {0, 0, -4}, 0.5, 0.9, {1, 1, 1});   // behind the camera
  AddGaussian(cloud, {100, 0, 4}, 0.1, 0.9, {1, 1, 1});  // far off-screen
  AddGaussian(cloud, {0, 0, 4}, 0.5, 0.001, {1, 1, 1});  // below 1/255 opacity
  const RenderResult r = MustRender(cloud, TestCamera());
  EXPECT_EQ(r.visible, 0u);
  for (float v : r.color.pixels) EXPECT_EQ(v, 0.0f);
}

// Direct evaluation of the real SH basis (Condon-Shortley, as in 3DGS) in double.
double DirectSh(const double* coeffs /*16*/, Eigen::Vector3d d) {
  d.normalize();
  const double x = d.x(), y = d.y(), z = d.z();
  const double pi = M_PI;
  const double b[16] = {0.5 * std::sqrt(1 / pi),
                        -std::sqrt(3 / (4 * pi)) * y,
                        std::sqrt(3 / (4 * pi)) * z,
                        -std::sqrt(3 / (4 * pi)) * x,
                        0.5 * std::sqrt(15 / pi) * x * y,
                        -0.5 * std::sqrt(15 / pi) * y * z,
                        0.25 * std::sqrt(5 / pi) * (2 * z * z - x * x - y * y),
                        -0.5 * std::sqrt(15 / pi) * x * z,
                        0.25 * std::sqrt(15 / pi) * (x * x - y * y),
                        -0.25 * std::sqrt(35 / (2 * pi)) * y * (3 * x * x - y * y),
                        0.5 * std::sqrt(105 / pi) * x * y * z,
                        -0.25 * std::sqrt(21 / (2 * pi)) * y * (4 * z * z - x * x - y * y),
                        0.25 * std::sqrt(7 / pi) * z * (2 * z * z - 3 * x * x - 3 * y * y),
                        -0.25 * std::sqrt(21 / (2 * pi)) * x * (4 * z * z - x * x - y * y),
                        0.25 * std::sqrt(105 / pi) * z * (x * x - y * y),
                        -0.25 * std::sqrt(35 / (2 * pi)) * x * (x * x - 3 * y * y)};
  double v = 0;
  for (int j = 0; j < 16; ++j) v += b[j] * coeffs[j];
  return std::max(0.0, v + 0.5);
}

TEST(RasterizerTest, ShDegree3ColourMatchesDirectEvaluation) {
  SplitMix64 rng(11);
  GaussianCloud cloud;
  cloud.sh_degree = 3;
  const Eigen::Vector3d pos(0.7, -0.4, 6.0);  // off-axis: a non-trivial view direction
  AddGaussian(cloud, pos, 0.4, 0.9, {0.5, 0.5, 0.5});
  double coeffs[3][16];
  for (int c = 0; c < 3; ++c) {
    for (int j = 0; j < 16; ++j) coeffs[c][j] = rng.Uniform(-0.4, 0.4);
    cloud.sh_dc[c] = static_cast<float>(coeffs[c][0]);
    for (int j = 1; j < 16; ++j) cloud.sh_rest[c * 15 + (j - 1)] = static_cast<float>(coeffs[c][j]);
    for (int j = 0; j < 16; ++j) coeffs[c][j] = static_cast<float>(coeffs[c][j]);  // same rounding
  }
  // Direction from the camera centre (origin) to the Gaussian.
  float rgb[3];
  raster::EvalShColor(3, cloud.sh_dc.data(), cloud.sh_rest.data(), 15, pos.x(), pos.y(), pos.z(), rgb);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(rgb[c], DirectSh(coeffs[c], pos), 2e-6) << "channel " << c;

  // And through the renderer: the pixel under the Gaussian centre gets alpha * colour.
  Camera cam = TestCamera(128, 128, 128);
  cam.cx = 64;
  cam.cy = 64;
  const RenderResult r = MustRender(cloud, cam);
  const double u = 128 * pos.x() / pos.z() + 64 - 0.5, v = 128 * pos.y() / pos.z() + 64 - 0.5;
  const int px = static_cast<int>(std::lround(u)), py = static_cast<int>(std::lround(v));
  ASSERT_NEAR(u, px, 0.5);
  const float t = r.final_transmittance[py * 128 + px];
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(r.color.at(px, py, c), (1 - t) * DirectSh(coeffs[c], pos), 1e-5);
  // max_sh_degree = 0 ignores the higher bands.
  RenderOptions dc_only;
  dc_only.max_sh_degree = 0;
  const RenderResult r0 = MustRender(cloud, cam, dc_only);
  EXPECT_NEAR(r0.color.at(px, py, 0), (1 - t) * (kC0 * coeffs[0][0] + 0.5), 1e-5);
}

TEST(RasterizerTest, DeterministicAcrossThreadCounts) {
  const GaussianCloud cloud = MakeSyntheticScene({.count = 20000, .sh_degree = 1, .seed = 3});
  const Camera cam = Camera::LookAt({0, -2.5, -6}, {0, -1, 0}, {0, -1, 0}, 160, 120, 60);
  const RenderResult a = MustRender(cloud, cam, {}, 1);
  const RenderResult b = MustRender(cloud, cam, {}, 2);
  const RenderResult c = MustRender(cloud, cam, {}, 5);
  EXPECT_GT(a.visible, 1000u);
  EXPECT_EQ(a.color.pixels, b.color.pixels);
  EXPECT_EQ(a.color.pixels, c.color.pixels);
  EXPECT_EQ(a.contributors, c.contributors);
  EXPECT_EQ(a.final_transmittance, c.final_transmittance);
}

TEST(RasterizerTest, ThreeSigmaAndOpacityAwareRadiiAgreeOnOpaqueGaussians) {
  // For opacity near 1 both binning rules cover every pixel that passes alpha >= 1/255
  // inside 3 sigma; images agree to within the tiny tail the 3-sigma rule cuts off.
  const GaussianCloud cloud = MakeSyntheticScene({.count = 5000, .sh_degree = 0, .seed = 5});
  const Camera cam = Camera::LookAt({0, -2.5, -6}, {0, -1, 0}, {0, -1, 0}, 96, 96, 60);
  RenderOptions three;
  three.radius_mode = raster::RadiusMode::kThreeSigma;
  const RenderResult a = MustRender(cloud, cam, three);
  const RenderResult b = MustRender(cloud, cam, {});
  double max_diff = 0;
  for (size_t i = 0; i < a.color.pixels.size(); ++i)
    max_diff = std::max(max_diff, std::abs<double>(a.color.pixels[i] - b.color.pixels[i]));
  EXPECT_LT(max_diff, 0.06);
}

// Naive reference: every pixel blends every projected Gaussian in global (depth, id)
// order, with no tiles and no footprint skipping.
Image NaiveRender(const GaussianCloud& cloud, const Camera& cam) {
  const raster::CameraParams p = ToCameraParams(cam, 0.01f);
  std::vector<std::pair<std::pair<float, uint32_t>, raster::Projected>> list;
  std::vector<std::array<float, 3>> colors;
  for (size_t i = 0; i < cloud.size(); ++i) {
    raster::Projected pr;
    if (!raster::ProjectGaussian(&cloud.positions[i * 3], &cloud.log_scales[i * 3], &cloud.rotations[i * 4],
                                 cloud.opacity_logits[i], p, raster::RadiusMode::kOpacityAware, &pr))
      continue;
    list.push_back({{pr.depth, static_cast<uint32_t>(colors.size())}, pr});
    std::array<float, 3> rgb;
    const float* x = &cloud.positions[i * 3];
    raster::EvalShColor(0, &cloud.sh_dc[i * 3], nullptr, 0, x[0] - p.campos[0], x[1] - p.campos[1], x[2] - p.campos[2],
                        rgb.data());
    colors.push_back(rgb);
  }
  std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.first < b.first; });
  Image img(cam.width, cam.height, 3);
  for (int y = 0; y < cam.height; ++y)
    for (int x = 0; x < cam.width; ++x) {
      float T = 1, C[3] = {0, 0, 0};
      for (auto& [key, pr] : list) {
        const float power = raster::FalloffPower(pr, x, y);
        if (power > 0) continue;
        const float alpha = std::min(raster::kAlphaMax, pr.opacity * expf(power));
        if (alpha < raster::kAlphaMin) continue;
        if (T * (1 - alpha) < raster::kTransmittanceMin) break;
        for (int c = 0; c < 3; ++c) C[c] += colors[key.second][c] * alpha * T;
        T *= 1 - alpha;
      }
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = C[c];
    }
  return img;
}

TEST(RasterizerTest, TiledRenderEqualsNaiveReference) {
  // Opacities stay below 0.99 so the opacity-aware radius covers every pixel where
  // alpha >= 1/255: tiling and footprint skipping must then change nothing.
  GaussianCloud cloud = MakeSyntheticScene({.count = 3000, .sh_degree = 0, .seed = 8});
  for (float& o : cloud.opacity_logits) o = std::min(o, 4.0f);
  const Camera cam = Camera::LookAt({0.3, -2.0, -5}, {0, -1, 0}, {0, -1, 0}, 72, 56, 55);
  const RenderResult r = MustRender(cloud, cam);
  const Image ref = NaiveRender(cloud, cam);
  double max_diff = 0;
  for (size_t i = 0; i < ref.pixels.size(); ++i)
    max_diff = std::max(max_diff, std::abs<double>(ref.pixels[i] - r.color.pixels[i]));
  EXPECT_LT(max_diff, 1e-5);
}

TEST(RasterizerTest, RejectsInvalidInputs) {
  CpuRasterizer r(1);
  GaussianCloud cloud;
  AddGaussian(cloud, {0, 0, 4}, 0.5, 0.9, {1, 1, 1});
  Camera bad = TestCamera();
  bad.fx = 0;
  EXPECT_EQ(r.Render(cloud, bad, {}).status().code(), absl::StatusCode::kInvalidArgument);
  GaussianCloud broken = cloud;
  broken.positions.pop_back();
  auto st = r.Render(broken, TestCamera(), {}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), testing::HasSubstr("position"));
}

}  // namespace
}  // namespace flexgs

// CUDA rasterizer (forward and backward) vs the CPU reference, plus the device-choice API.
//
// The equality tests need a working GPU and skip with the reason otherwise; the
// device-choice tests run everywhere (on a machine without a GPU they check the
// fallback and the FAILED_PRECONDITION for an explicit --device=cuda).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/ply_io.h"
#include "kernels/backend.h"
#include "render/cpu_rasterizer.h"
#include "render/rasterizer_backward.h"
#include "scene/synthetic_scene.h"
#include "scene/view_sampler.h"
#include "tests/support/test_util.h"
#include "train/elastic_trainer.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

// Skips the current test, visibly, when no usable GPU is present.
#define FLEXGS_REQUIRE_CUDA()                                                                \
  do {                                                                                       \
    std::string flexgs_why_;                                                                 \
    if (!CudaAvailable(&flexgs_why_)) GTEST_SKIP() << "CUDA not available: " << flexgs_why_; \
  } while (0)

// ---------------------------------------------------------------------------
// Device choice (runs with or without a GPU).

TEST(BackendTest, ParseDeviceAcceptsTheThreeNames) {
  EXPECT_EQ(*ParseDevice("auto"), Device::kAuto);
  EXPECT_EQ(*ParseDevice("cpu"), Device::kCpu);
  EXPECT_EQ(*ParseDevice("cuda"), Device::kCuda);
}

TEST(BackendTest, ParseDeviceRejectsOthersNamingTheValue) {
  for (const std::string bad : {"gpu", "", "CUDA ", "metal"}) {
    const auto parsed = ParseDevice(bad);
    ASSERT_FALSE(parsed.ok()) << "'" << bad << "'";
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr("'" + bad + "'"));
  }
}

TEST(BackendTest, AvailabilityIsConsistentWithTheBuild) {
  std::string why;
  const bool available = CudaAvailable(&why);
  if (!BuiltWithCuda()) {
    EXPECT_FALSE(available);
    EXPECT_EQ(why, "this binary was built without CUDA");
  }
  if (!available) {
    EXPECT_FALSE(why.empty()) << "an unavailable device must come with a reason";
  }
  EXPECT_EQ(CudaAvailable(nullptr), available);  // null `why` is allowed
}

TEST(BackendTest, AutoAlwaysGivesARenderer) {
  const auto backend = CreateRasterBackend(Device::kAuto, 2);
  ASSERT_TRUE(backend.ok()) << backend.status();
  ASSERT_NE(*backend, nullptr);
  EXPECT_EQ((*backend)->name(), CudaAvailable() ? "cuda" : "cpu");
}

TEST(BackendTest, CpuIsAlwaysTheCpuRasterizer) {
  const auto backend = CreateRasterBackend(Device::kCpu, 1);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->name(), "cpu");
}

TEST(BackendTest, ExplicitCudaFailsPreconditionWithoutAGpu) {
  std::string why;
  const bool available = CudaAvailable(&why);
  const auto backend = CreateRasterBackend(Device::kCuda);
  if (available) {
    ASSERT_TRUE(backend.ok()) << backend.status();
    EXPECT_EQ((*backend)->name(), "cuda");
  } else {
    ASSERT_FALSE(backend.ok());
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(backend.status().message(), HasSubstr(why));
  }
}

// ---------------------------------------------------------------------------
// Scenes and cameras.

// Identity pose, fx = fy = width (a ~53 degree horizontal field of view), centred
// principal point. The odd size leaves partial tiles on the right and bottom.
Camera IdentityCamera(int width = 333, int height = 250) {
  Camera c;
  c.width = width;
  c.height = height;
  c.fx = c.fy = width;
  c.cx = 0.5 * width;
  c.cy = 0.5 * height;
  return c;
}

// Random Gaussians in a box in front of the identity camera. The box is wider than
// the view frustum (some Gaussians are partly or wholly off-screen) and starts
// behind the camera (z < 0: culled by the near plane).
GaussianCloud RandomScene(uint64_t seed, size_t count, int sh_degree, bool equal_depths = false) {
  SplitMix64 rng(seed);
  GaussianCloud cloud;
  cloud.sh_degree = sh_degree;
  cloud.Resize(count);
  const int k = cloud.rest_coeffs();
  for (size_t i = 0; i < count; ++i) {
    const double z = equal_depths ? 3.0 : rng.Uniform(-0.5, 6.0);
    cloud.positions[i * 3 + 0] = static_cast<float>(rng.Uniform(-1.6, 1.6) * std::max(z, 0.5) / 2.0);
    cloud.positions[i * 3 + 1] = static_cast<float>(rng.Uniform(-1.2, 1.2) * std::max(z, 0.5) / 2.0);
    cloud.positions[i * 3 + 2] = static_cast<float>(z);
    for (int d = 0; d < 3; ++d) cloud.log_scales[i * 3 + d] = static_cast<float>(std::log(0.05) + 0.6 * rng.Normal());
    // Deliberately not normalised: both backends must normalise the same way.
    for (int d = 0; d < 4; ++d) cloud.rotations[i * 4 + d] = static_cast<float>(rng.Normal());
    cloud.opacity_logits[i] = static_cast<float>(rng.Uniform(-2.0, 4.0));
    for (int c = 0; c < 3; ++c) {
      cloud.sh_dc[i * 3 + c] = static_cast<float>(rng.Uniform(-0.5, 0.5));
      for (int j = 0; j < k; ++j) cloud.sh_rest[i * 3 * k + c * k + j] = static_cast<float>(rng.Uniform(-0.5, 0.5));
    }
  }
  return cloud;
}

// Many opaque Gaussians stacked on few pixels of IdentityCamera(160, 120): early
// termination (T*(1-alpha) < 1e-4) and tiles with > 256 Gaussians (several batches).
GaussianCloud DenseScene() {
  GaussianCloud cloud = RandomScene(9, 20000, 0);
  for (size_t i = 0; i < cloud.size(); ++i) {
    cloud.positions[i * 3 + 0] *= 0.2f;
    cloud.positions[i * 3 + 1] *= 0.2f;
    cloud.positions[i * 3 + 2] = std::abs(cloud.positions[i * 3 + 2]) + 1.0f;
    cloud.opacity_logits[i] = std::abs(cloud.opacity_logits[i]) + 1.0f;
  }
  return cloud;
}

// A camera looking at the robust centre of a real scene from 2.5 robust radii away,
// slightly from above (3DGS scenes are y-down, so "up" is -y).
Camera CameraForScene(const GaussianCloud& cloud, int width, int height) {
  const size_t n = cloud.size();
  std::vector<float> coord(n);
  Eigen::Vector3d centre;
  for (int d = 0; d < 3; ++d) {
    for (size_t i = 0; i < n; ++i) coord[i] = cloud.positions[i * 3 + d];
    std::nth_element(coord.begin(), coord.begin() + n / 2, coord.end());
    centre[d] = coord[n / 2];
  }
  std::vector<float> dist(n);
  for (size_t i = 0; i < n; ++i) {
    const Eigen::Vector3d p(cloud.positions[i * 3], cloud.positions[i * 3 + 1], cloud.positions[i * 3 + 2]);
    dist[i] = static_cast<float>((p - centre).norm());
  }
  std::nth_element(dist.begin(), dist.begin() + n * 9 / 10, dist.end());
  const double radius = std::max<double>(dist[n * 9 / 10], 1e-3);
  const Eigen::Vector3d eye = centre + radius * Eigen::Vector3d(0.8, -0.9, -2.2);
  return Camera::LookAt(eye, centre, Eigen::Vector3d(0, -1, 0), width, height, 55.0);
}

// ---------------------------------------------------------------------------
// CPU vs CUDA comparison.

struct Comparison {
  int max_rgb8_diff = 0;
  double same_contributors = 0;  // fraction of pixels
  double mean_t_diff = 0;
};

Comparison Compare(const RenderResult& cpu, const RenderResult& gpu) {
  Comparison out;
  const std::vector<uint8_t> a = cpu.color.ToRgb8(), b = gpu.color.ToRgb8();
  for (size_t i = 0; i < a.size(); ++i) out.max_rgb8_diff = std::max(out.max_rgb8_diff, std::abs(a[i] - b[i]));
  const size_t pixels = cpu.contributors.size();
  size_t same = 0;
  double t_diff = 0;
  for (size_t i = 0; i < pixels; ++i) {
    same += cpu.contributors[i] == gpu.contributors[i];
    t_diff += std::abs(static_cast<double>(cpu.final_transmittance[i]) - gpu.final_transmittance[i]);
  }
  out.same_contributors = pixels ? static_cast<double>(same) / pixels : 1.0;
  out.mean_t_diff = pixels ? t_diff / pixels : 0.0;
  return out;
}

// Renders with both backends and checks the documented tolerance:
//  * 8-bit colour within 2 levels. The two paths evaluate the same expressions in
//    the same order, but device expf (<= 2 ulp) differs from libm and nvcc fuses
//    multiply-adds; a pixel blending hundreds of Gaussians can accumulate enough
//    of that to move a rounding boundary by a level or two. A real bug (wrong
//    order, wrong tile, wrong test) shows up as tens of levels.
//  * >= 99.9% of pixels with the same contributor count: a count can only differ
//    where an alpha lands within rounding of 1/255 or T*(1-alpha) of 1e-4.
//  * mean |T_cpu - T_gpu| < 1e-4.
void ExpectBackendsAgree(const GaussianCloud& cloud, const Camera& camera, const RenderOptions& options,
                         RasterBackend& gpu_backend, const std::string& label) {
  SCOPED_TRACE(label);
  CpuRasterizer cpu_backend(2);
  const auto cpu = cpu_backend.Render(cloud, camera, options);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const auto gpu = gpu_backend.Render(cloud, camera, options);
  ASSERT_TRUE(gpu.ok()) << gpu.status();

  ASSERT_EQ(gpu->color.width, camera.width);
  ASSERT_EQ(gpu->color.height, camera.height);
  ASSERT_EQ(gpu->color.channels, 3);
  ASSERT_EQ(gpu->color.pixels.size(), cpu->color.pixels.size());
  const size_t pixels = static_cast<size_t>(camera.width) * camera.height;
  ASSERT_EQ(gpu->final_transmittance.size(), pixels);
  ASSERT_EQ(gpu->contributors.size(), pixels);
  ASSERT_EQ(cpu->final_transmittance.size(), pixels);
  ASSERT_EQ(cpu->contributors.size(), pixels);

  const Comparison c = Compare(*cpu, *gpu);
  std::cout << "[" << label << "] gaussians=" << cloud.size() << " visible cpu/gpu=" << cpu->visible << "/"
            << gpu->visible << " intersections cpu/gpu=" << cpu->intersections << "/" << gpu->intersections
            << " max_rgb8_diff=" << c.max_rgb8_diff << " same_contributors=" << c.same_contributors
            << " mean_T_diff=" << c.mean_t_diff << "\n";
  EXPECT_LE(c.max_rgb8_diff, 2);
  EXPECT_GE(c.same_contributors, 0.999);
  EXPECT_LT(c.mean_t_diff, 1e-4);
  // Culling and binning can only flip on a float boundary (opacity at 1/255, a
  // radius at an integer): allow a handful, not a systematic difference.
  const double visible_slack = 2 + 1e-4 * static_cast<double>(cpu->visible);
  EXPECT_LE(std::abs(static_cast<double>(cpu->visible) - static_cast<double>(gpu->visible)), visible_slack);
  const double isect_slack = 4 + 1e-3 * static_cast<double>(cpu->intersections);
  EXPECT_LE(std::abs(static_cast<double>(cpu->intersections) - static_cast<double>(gpu->intersections)), isect_slack);
}

std::unique_ptr<RasterBackend> MustCreateCuda() {
  auto backend = CreateRasterBackend(Device::kCuda);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *std::move(backend) : nullptr;
}

TEST(CudaRasterizerTest, RandomScenesMatchCpu) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  const Camera camera = IdentityCamera();
  for (const int sh_degree : {0, 3}) {
    for (const uint64_t seed : {1u, 2u, 3u}) {
      const GaussianCloud cloud = RandomScene(seed * 101 + sh_degree, 3000, sh_degree);
      RenderOptions options;
      options.background = {0.1f, 0.2f, 0.3f};
      options.radius_mode = seed == 2 ? raster::RadiusMode::kThreeSigma : raster::RadiusMode::kOpacityAware;
      ExpectBackendsAgree(cloud, camera, options, *gpu,
                          "random seed=" + std::to_string(seed) + " sh=" + std::to_string(sh_degree));
    }
  }
}

TEST(CudaRasterizerTest, ShDegreeLimitMatchesCpu) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  const GaussianCloud cloud = RandomScene(42, 2000, 3);
  for (const int limit : {0, 1, 2}) {
    RenderOptions options;
    options.max_sh_degree = limit;
    ExpectBackendsAgree(cloud, IdentityCamera(), options, *gpu, "max_sh_degree=" + std::to_string(limit));
  }
}

TEST(CudaRasterizerTest, EqualDepthsBreakTiesByIdLikeCpu) {
  // Every Gaussian at exactly the same depth: the blend order is then decided by
  // the id tie-break alone (stable sort on the GPU, (depth, id) on the CPU).
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  const GaussianCloud cloud = RandomScene(7, 1500, 0, /*equal_depths=*/true);
  ExpectBackendsAgree(cloud, IdentityCamera(), RenderOptions{}, *gpu, "equal depths");
}

TEST(CudaRasterizerTest, DenseSceneSaturatesLikeCpu) {
  // Many opaque Gaussians stacked on few pixels: exercises early termination
  // (T*(1-alpha) < 1e-4) and multi-batch tiles (> 256 Gaussians per tile).
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  const GaussianCloud cloud = DenseScene();
  ExpectBackendsAgree(cloud, IdentityCamera(160, 120), RenderOptions{}, *gpu, "dense");
}

TEST(CudaRasterizerTest, Synthetic100kMatchesCpu) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  SyntheticSceneOptions scene;
  scene.count = 100'000;
  scene.sh_degree = 3;
  const GaussianCloud cloud = MakeSyntheticScene(scene);
  const Camera camera = Camera::LookAt({0.0, -2.2, -4.8}, {0.0, -1.0, 0.0}, {0.0, -1.0, 0.0}, 640, 480, 60.0);
  ExpectBackendsAgree(cloud, camera, RenderOptions{}, *gpu, "synthetic 100k sh3");
}

TEST(CudaRasterizerTest, GuitarMatchesCpu) {
  FLEXGS_REQUIRE_CUDA();
  FLEXGS_REQUIRE_DATA(path, "guitar.ply");
  auto cloud = ReadGaussianPly(path);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  RenderOptions options;
  options.background = {1.0f, 1.0f, 1.0f};
  ExpectBackendsAgree(*cloud, CameraForScene(*cloud, 512, 512), options, *gpu, "guitar.ply");
}

TEST(CudaRasterizerTest, Sh3RealSceneMatchesCpu) {
  FLEXGS_REQUIRE_CUDA();
  FLEXGS_REQUIRE_DATA(path, "sh3-9k.ply");
  auto cloud = ReadGaussianPly(path);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  ExpectBackendsAgree(*cloud, CameraForScene(*cloud, 400, 300), RenderOptions{}, *gpu, "sh3-9k.ply");
}

TEST(CudaRasterizerTest, ReusedBuffersGiveTheSameResultAsAFreshBackend) {
  // Grow-only buffers: a big render followed by smaller ones (fewer Gaussians,
  // fewer tiles, another image size) must not see stale data.
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  ExpectBackendsAgree(RandomScene(11, 20000, 3), IdentityCamera(640, 480), RenderOptions{}, *gpu, "big first");
  ExpectBackendsAgree(RandomScene(12, 500, 0), IdentityCamera(97, 61), RenderOptions{}, *gpu, "small after");
  ExpectBackendsAgree(RandomScene(13, 4000, 3), IdentityCamera(333, 250), RenderOptions{}, *gpu, "medium after");
}

TEST(CudaRasterizerTest, EmptyAndInvisibleScenesAreBackground) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  RenderOptions options;
  options.background = {0.25f, 0.5f, 1.0f};
  GaussianCloud behind = RandomScene(5, 100, 0);
  for (size_t i = 0; i < behind.size(); ++i) behind.positions[i * 3 + 2] = -1.0f - static_cast<float>(i);
  const GaussianCloud empty;
  for (const GaussianCloud* cloud : {&empty, static_cast<const GaussianCloud*>(&behind)}) {
    const auto r = gpu->Render(*cloud, IdentityCamera(40, 24), options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->visible, 0u);
    EXPECT_EQ(r->intersections, 0u);
    ASSERT_EQ(r->final_transmittance.size(), 40u * 24u);
    ASSERT_EQ(r->contributors.size(), 40u * 24u);
    for (size_t p = 0; p < 40u * 24u; ++p) {
      for (int c = 0; c < 3; ++c) ASSERT_EQ(r->color.pixels[p * 3 + c], options.background[c]);
      ASSERT_EQ(r->final_transmittance[p], 1.0f);
      ASSERT_EQ(r->contributors[p], 0u);
    }
  }
}

TEST(CudaRasterizerTest, WithoutAuxOnlyColourIsReturned) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  const GaussianCloud cloud = RandomScene(21, 2000, 0);
  RenderOptions options;
  const auto with_aux = gpu->Render(cloud, IdentityCamera(), options);
  options.want_aux = false;
  const auto without = gpu->Render(cloud, IdentityCamera(), options);
  ASSERT_TRUE(with_aux.ok()) << with_aux.status();
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_TRUE(without->final_transmittance.empty());
  EXPECT_TRUE(without->contributors.empty());
  EXPECT_EQ(without->color.pixels, with_aux->color.pixels);  // same device, same result
}

TEST(CudaRasterizerTest, InvalidInputsAreRejected) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  GaussianCloud broken = RandomScene(3, 10, 0);
  broken.positions.pop_back();
  EXPECT_FALSE(gpu->Render(broken, IdentityCamera(), RenderOptions{}).ok());
  Camera bad = IdentityCamera();
  bad.width = 0;
  EXPECT_FALSE(gpu->Render(RandomScene(3, 10, 0), bad, RenderOptions{}).ok());
}

// ---------------------------------------------------------------------------
// Differentiable rasterizer: choice, then CUDA gradients vs the CPU reference.

TEST(BackendTest, DifferentiableChoiceFollowsAvailability) {
  std::string why;
  const bool available = CudaAvailable(&why);
  const auto cpu = CreateDifferentiableRasterBackend(Device::kCpu, 2);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*cpu)->name(), "cpu");
  const auto automatic = CreateDifferentiableRasterBackend(Device::kAuto, 2);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ((*automatic)->name(), available ? "cuda" : "cpu");
  const auto cuda = CreateDifferentiableRasterBackend(Device::kCuda, 2);
  if (available) {
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    EXPECT_EQ((*cuda)->name(), "cuda");
  } else {
    ASSERT_FALSE(cuda.ok());
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(cuda.status().message(), HasSubstr(why));
  }
}

// A deterministic dL/dImage with both signs, like an L1 loss's.
std::vector<float> RandomImageGradient(uint64_t seed, const Camera& camera) {
  SplitMix64 rng(seed);
  std::vector<float> g(static_cast<size_t>(camera.width) * camera.height * 3);
  for (float& v : g) v = static_cast<float>(rng.Uniform(-1.0, 1.0));
  return g;
}

struct GradientDiff {
  double relative_l2 = 0;  // ||cuda - cpu|| / ||cpu||
  double norm_cpu = 0;
};

GradientDiff Diff(const std::vector<float>& cpu, const std::vector<float>& gpu) {
  double num = 0, den = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double d = static_cast<double>(gpu[i]) - cpu[i];
    num += d * d;
    den += static_cast<double>(cpu[i]) * cpu[i];
  }
  GradientDiff out;
  out.norm_cpu = std::sqrt(den);
  out.relative_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return out;
}

// Forward and backward on both backends; checks the images like ExpectBackendsAgree and
// every gradient kind to a relative L2 error of 1e-3. Where the two can legitimately
// differ: device expf and FMA (as in the forward), float atomics in a varying order,
// and the transmittance the CUDA backward recovers by division (T / (1 - alpha), as
// INRIA and gsplat do) where the CPU replays it exactly. A wrong term, sign, pixel or
// Gaussian gives errors of order 1.
void ExpectGradientsAgree(const GaussianCloud& cloud, const Camera& camera, const RenderOptions& options,
                          const std::vector<float>& opacity_scale, DifferentiableRasterBackend& gpu,
                          const std::string& label, double tolerance = 1e-3) {
  SCOPED_TRACE(label);
  DifferentiableRasterizer cpu(2);
  ForwardInputs inputs;
  inputs.opacity_scale = opacity_scale;
  const auto cpu_image = cpu.Forward(cloud, camera, options, inputs);
  ASSERT_TRUE(cpu_image.ok()) << cpu_image.status();
  const auto gpu_image = gpu.Forward(cloud, camera, options, inputs);
  ASSERT_TRUE(gpu_image.ok()) << gpu_image.status();
  ASSERT_EQ(gpu_image->color.pixels.size(), cpu_image->color.pixels.size());
  int max_rgb8_diff = 0;
  const std::vector<uint8_t> a = cpu_image->color.ToRgb8(), b = gpu_image->color.ToRgb8();
  for (size_t i = 0; i < a.size(); ++i) max_rgb8_diff = std::max(max_rgb8_diff, std::abs(a[i] - b[i]));
  EXPECT_LE(max_rgb8_diff, 2);

  const std::vector<float> grad_image = RandomImageGradient(cloud.size() * 31 + camera.width, camera);
  CloudGradients g_cpu, g_gpu;
  ASSERT_TRUE(cpu.Backward(grad_image, &g_cpu).ok());
  const absl::Status st = gpu.Backward(grad_image, &g_gpu);
  ASSERT_TRUE(st.ok()) << st;
  const std::pair<const char*, std::pair<const std::vector<float>*, const std::vector<float>*>> kinds[] = {
      {"positions", {&g_cpu.positions, &g_gpu.positions}},
      {"log_scales", {&g_cpu.log_scales, &g_gpu.log_scales}},
      {"rotations", {&g_cpu.rotations, &g_gpu.rotations}},
      {"opacity_logits", {&g_cpu.opacity_logits, &g_gpu.opacity_logits}},
      {"sh_dc", {&g_cpu.sh_dc, &g_gpu.sh_dc}},
      {"sh_rest", {&g_cpu.sh_rest, &g_gpu.sh_rest}},
      {"opacity_scale", {&g_cpu.opacity_scale, &g_gpu.opacity_scale}}};
  std::cout << "[" << label << "] gaussians=" << cloud.size() << " max_rgb8_diff=" << max_rgb8_diff;
  for (const auto& [name, pair] : kinds) {
    const std::vector<float>& c = *pair.first;
    const std::vector<float>& g = *pair.second;
    ASSERT_EQ(c.size(), g.size()) << name;
    if (c.empty()) continue;
    const GradientDiff d = Diff(c, g);
    std::cout << " " << name << "=" << d.relative_l2;
    EXPECT_GT(d.norm_cpu, 0.0) << name << ": the scene must exercise every gradient";
    EXPECT_LT(d.relative_l2, tolerance) << name;
  }
  const GradientDiff bg =
      Diff({g_cpu.background.begin(), g_cpu.background.end()}, {g_gpu.background.begin(), g_gpu.background.end()});
  std::cout << " background=" << bg.relative_l2 << "\n";
  EXPECT_LT(bg.relative_l2, tolerance);
}

std::unique_ptr<DifferentiableRasterBackend> MustCreateCudaDifferentiable() {
  auto backend = CreateDifferentiableRasterBackend(Device::kCuda);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *std::move(backend) : nullptr;
}

std::vector<float> RandomOpacityScale(uint64_t seed, size_t n) {
  SplitMix64 rng(seed);
  std::vector<float> m(n);
  // A mix of hard-mask values (0 and 1, as the trainer passes) and soft ones.
  for (float& v : m) {
    const double u = rng.Uniform();
    v = u < 0.3 ? 0.0f : u < 0.7 ? 1.0f : static_cast<float>(rng.Uniform(0.05, 1.0));
  }
  return m;
}

TEST(CudaDifferentiableTest, RandomScenesMatchCpu) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  ASSERT_NE(gpu, nullptr);
  for (const int sh_degree : {0, 3}) {
    for (const bool with_scale : {false, true}) {
      const GaussianCloud cloud = RandomScene(sh_degree * 7 + with_scale + 1, 3000, sh_degree);
      RenderOptions options;
      options.background = {0.1f, 0.2f, 0.3f};
      options.want_aux = false;
      ExpectGradientsAgree(cloud, IdentityCamera(), options,
                           with_scale ? RandomOpacityScale(5, cloud.size()) : std::vector<float>{}, *gpu,
                           "random sh=" + std::to_string(sh_degree) + (with_scale ? " scaled" : ""));
    }
  }
}

TEST(CudaDifferentiableTest, TruncatedShBandsMatchCpu) {
  // Colour evaluated below the cloud's degree: sh_rest keeps its full stride and the
  // unused bands get zero gradient.
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  ASSERT_NE(gpu, nullptr);
  const GaussianCloud cloud = RandomScene(17, 3000, 3);
  RenderOptions options;
  options.max_sh_degree = 1;
  ExpectGradientsAgree(cloud, IdentityCamera(), options, {}, *gpu, "sh 3 rendered at 1");
  // And the CUDA gradient of every coefficient above band 1 is exactly zero.
  CloudGradients g;
  ASSERT_TRUE(gpu->Forward(cloud, IdentityCamera(), options, {}).ok());
  ASSERT_TRUE(gpu->Backward(RandomImageGradient(3, IdentityCamera()), &g).ok());
  const int k = cloud.rest_coeffs();
  for (size_t i = 0; i < cloud.size(); ++i)
    for (int ch = 0; ch < 3; ++ch)
      for (int j = 3; j < k; ++j) ASSERT_EQ(g.sh_rest[(i * 3 + ch) * k + j], 0.0f);
}

TEST(CudaDifferentiableTest, RepeatedBackwardAndShrinkingInputsReuseBuffersCleanly) {
  // Backward twice for one Forward gives the same gradients up to atomic ordering (the
  // accumulators are cleared), and a big frame followed by smaller ones sees no stale data.
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  ASSERT_NE(gpu, nullptr);
  const GaussianCloud cloud = RandomScene(23, 3000, 3);
  const std::vector<float> grad = RandomImageGradient(4, IdentityCamera());
  ASSERT_TRUE(gpu->Forward(cloud, IdentityCamera(), RenderOptions{}, {}).ok());
  CloudGradients first, second;
  ASSERT_TRUE(gpu->Backward(grad, &first).ok());
  ASSERT_TRUE(gpu->Backward(grad, &second).ok());
  EXPECT_LT(Diff(first.positions, second.positions).relative_l2, 1e-5);
  EXPECT_LT(Diff(first.opacity_logits, second.opacity_logits).relative_l2, 1e-5);
  EXPECT_LT(Diff(first.sh_rest, second.sh_rest).relative_l2, 1e-5);
  ExpectGradientsAgree(RandomScene(11, 20000, 3), IdentityCamera(640, 480), RenderOptions{},
                       RandomOpacityScale(6, 20000), *gpu, "big first");
  ExpectGradientsAgree(RandomScene(12, 500, 0), IdentityCamera(97, 61), RenderOptions{}, {}, *gpu, "small after");
}

TEST(CudaDifferentiableTest, DenseSceneMatchesCpu) {
  // > 256 Gaussians per tile (several shared-memory batches, walked back to front) and
  // early termination.
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  ASSERT_NE(gpu, nullptr);
  const GaussianCloud cloud = DenseScene();
  ExpectGradientsAgree(cloud, IdentityCamera(160, 120), RenderOptions{}, {}, *gpu, "dense");
}

TEST(CudaDifferentiableTest, RealScenesMatchCpu) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  ASSERT_NE(gpu, nullptr);
  for (const char* name : {"guitar.ply", "sh3-9k.ply"}) {
    const std::string path = ::flexgs::testing::DataFile(name);
    if (path.empty()) {
      std::cout << "shared scene " << name << " not found; skipped\n";
      continue;
    }
    auto cloud = ReadGaussianPly(path);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    ExpectGradientsAgree(*cloud, CameraForScene(*cloud, 256, 256), RenderOptions{}, {}, *gpu, name);
  }
}

TEST(CudaDifferentiableTest, ForwardEqualsTheCudaRenderer) {
  // One pipeline: the differentiable forward is the renderer's image, bit for bit.
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  auto render = MustCreateCuda();
  ASSERT_NE(gpu, nullptr);
  ASSERT_NE(render, nullptr);
  const GaussianCloud cloud = RandomScene(33, 4000, 3);
  const auto a = gpu->Forward(cloud, IdentityCamera(), RenderOptions{}, {});
  const auto b = render->Render(cloud, IdentityCamera(), RenderOptions{});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->color.pixels, b->color.pixels);
  EXPECT_EQ(a->contributors, b->contributors);
}

TEST(CudaDifferentiableTest, EmptyViewGivesOnlyTheBackgroundGradient) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  ASSERT_NE(gpu, nullptr);
  GaussianCloud behind = RandomScene(5, 100, 0);
  for (size_t i = 0; i < behind.size(); ++i) behind.positions[i * 3 + 2] = -1.0f - static_cast<float>(i);
  const Camera camera = IdentityCamera(40, 24);
  ASSERT_TRUE(gpu->Forward(behind, camera, RenderOptions{}, {}).ok());
  const std::vector<float> grad(40 * 24 * 3, 0.5f);
  CloudGradients g;
  ASSERT_TRUE(gpu->Backward(grad, &g).ok());
  for (float v : g.positions) ASSERT_EQ(v, 0.0f);
  for (float v : g.opacity_logits) ASSERT_EQ(v, 0.0f);
  for (int ch = 0; ch < 3; ++ch) EXPECT_FLOAT_EQ(g.background[ch], 0.5f * 40 * 24);
}

TEST(CudaDifferentiableTest, ErrorContractMatchesCpu) {
  FLEXGS_REQUIRE_CUDA();
  auto gpu = MustCreateCudaDifferentiable();
  ASSERT_NE(gpu, nullptr);
  DifferentiableRasterizer cpu(2);
  CloudGradients g;
  for (DifferentiableRasterBackend* backend : {static_cast<DifferentiableRasterBackend*>(&cpu), gpu.get()}) {
    SCOPED_TRACE(std::string(backend->name()));
    EXPECT_EQ(backend->Backward(std::vector<float>(3), &g).code(), absl::StatusCode::kFailedPrecondition);
    const GaussianCloud cloud = RandomScene(3, 50, 0);
    std::vector<float> bad_scale(cloud.size(), 0.5f);
    bad_scale[7] = 1.5f;
    ForwardInputs inputs;
    inputs.opacity_scale = bad_scale;
    const auto rejected = backend->Forward(cloud, IdentityCamera(40, 24), RenderOptions{}, inputs);
    ASSERT_FALSE(rejected.ok());
    EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(rejected.status().message(), HasSubstr("opacity_scale[7] = 1.5"));
    ASSERT_TRUE(backend->Forward(cloud, IdentityCamera(40, 24), RenderOptions{}, {}).ok());
    const absl::Status wrong_size = backend->Backward(std::vector<float>(5), &g);
    EXPECT_EQ(wrong_size.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(wrong_size.message(), HasSubstr("expected width*height*3"));
  }
}

TEST(CudaDifferentiableTest, TrainerOnCudaFollowsTheCpuTrajectory) {
  // The stage-2 loop with its renders on the GPU takes the CPU run's path: losses of
  // the first steps agree to rounding (later steps may drift as Adam amplifies it).
  FLEXGS_REQUIRE_CUDA();
  SyntheticSceneOptions so;
  so.count = 2000;
  so.sh_degree = 1;
  const GaussianCloud cloud = MakeSyntheticScene(so);
  TrainOptions options;
  options.iters = 5;
  options.width = options.height = 64;
  options.orbit_views = 4;
  options.threads = 2;
  auto targets = MakeOrbitTargets(cloud, options);
  ASSERT_TRUE(targets.ok()) << targets.status();
  // Both recipes: joint tuning on fixed targets, and the default's sampled views (the
  // teacher rendered on the device each step) with nested poses fixed at insertion.
  for (const bool sampled : {false, true}) {
    TrainOptions recipe = options;
    if (sampled) {
      ViewDistribution views;
      views.width = views.height = 64;
      recipe.view_sampling = views;
      recipe.nested = recipe.pose_at_insertion = true;
    } else {
      recipe.tune_gaussians = true;
    }
    std::vector<double> losses[2];
    for (const bool cuda : {false, true}) {
      TrainOptions o = recipe;
      if (cuda) o.raster_factory = [] { return CreateDifferentiableRasterBackend(Device::kCuda); };
      auto model = InitialElasticModel(cloud, *targets, o);
      ASSERT_TRUE(model.ok()) << model.status();
      auto trainer = ElasticTrainer::Create(*std::move(model), *targets, o);
      ASSERT_TRUE(trainer.ok()) << trainer.status();
      for (int it = 0; it < 5; ++it) {
        const auto step = (*trainer)->Step();
        ASSERT_TRUE(step.ok()) << step.status();
        losses[cuda].push_back(step->loss);
      }
    }
    for (int it = 0; it < 5; ++it) {
      std::cout << (sampled ? "sampled" : "tuned") << " step " << it + 1 << ": loss cpu " << losses[0][it] << " cuda "
                << losses[1][it] << "\n";
      EXPECT_NEAR(losses[1][it], losses[0][it], 1e-3 * std::abs(losses[0][it]))
          << (sampled ? "sampled" : "tuned") << " step " << it + 1;
    }
  }
}

}  // namespace
}  // namespace flexgs

// Transform field: forward pass against an independent float64 reference (bilinear,
// corner-aligned, border-clamped sampling; product over planes; concatenation over
// levels; trunk and heads), initialisation, delta application, validation and
// thread-count independence.
#include "elastic/transform_field.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scene/synthetic_scene.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

// Small, deliberately non-square shapes so that any swapped axis or stride shows.
TransformFieldConfig SmallConfig() {
  TransformFieldConfig c;
  c.channels = 5;
  c.base_resolution = 6;
  c.multires = {1, 3};
  c.ratio_resolution = 7;
  c.hidden = 24;
  return c;
}

void Randomize(std::vector<float>& v, SplitMix64& rng, double lo, double hi) {
  for (float& x : v) x = static_cast<float>(rng.Uniform(lo, hi));
}

// Init, then every tensor random (planes included, so the init constants don't hide
// indexing mistakes; last layers non-zero).
TransformFieldWeights RandomField(const TransformFieldConfig& config, uint64_t seed) {
  TransformFieldWeights f = TransformFieldWeights::Init(config, seed);
  SplitMix64 rng(seed ^ 0xABCDEF);
  for (auto& level : f.levels) {
    for (auto& plane : level.planes) Randomize(plane, rng, -1.3, 1.3);
  }
  const double w = 1.0 / std::sqrt(static_cast<double>(config.hidden));
  Randomize(f.trunk.weight, rng, -0.5, 0.5);
  Randomize(f.trunk.bias, rng, -0.5, 0.5);
  for (int h = 0; h < 3; ++h) {
    Randomize(f.fc1[h].weight, rng, -2 * w, 2 * w);
    Randomize(f.fc1[h].bias, rng, -0.3, 0.3);
    Randomize(f.fc2[h].weight, rng, -2 * w, 2 * w);
    Randomize(f.fc2[h].bias, rng, -0.3, 0.3);
  }
  return f;
}

FieldNormalization TestNormalization() {
  FieldNormalization norm;
  norm.aabb_min = {-2.0f, -1.0f, 0.5f};
  norm.aabb_max = {2.0f, 3.0f, 1.5f};
  return norm;
}

// Positions in the box enlarged by 60% on every side, so about half fall outside (border
// clamp), plus the exact corners and centre.
std::vector<float> RandomPositions(size_t n, const FieldNormalization& norm, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> p(3 * n);
  for (size_t i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) {
      const double lo = norm.aabb_min[d], hi = norm.aabb_max[d], pad = 0.6 * (hi - lo);
      p[3 * i + d] = static_cast<float>(rng.Uniform(lo - pad, hi + pad));
    }
  }
  if (n >= 3) {
    for (int d = 0; d < 3; ++d) {
      p[d] = norm.aabb_min[d];
      p[3 + d] = norm.aabb_max[d];
      p[6 + d] = 0.5f * (norm.aabb_min[d] + norm.aabb_max[d]);
    }
  }
  return p;
}

// ---------------------------------------------------------------------------
// float64 reference, written from torch.grid_sample's definition.

// grid_sample(align_corners=True, padding_mode="border") of channel c of a [C, rb, ra]
// plane at normalised coordinates (ca, cb).
double GridSample(const std::vector<float>& plane, int ra, int rb, int c, double ca, double cb) {
  auto unnormalize = [](double coord, int res) {
    const double u = (coord + 1.0) / 2.0 * (res - 1);
    return std::clamp(u, 0.0, static_cast<double>(res - 1));
  };
  const double x = unnormalize(ca, ra), y = unnormalize(cb, rb);
  const int x0 = static_cast<int>(std::floor(x)), y0 = static_cast<int>(std::floor(y));
  const int x1 = std::min(x0 + 1, ra - 1), y1 = std::min(y0 + 1, rb - 1);
  const double wx = x - x0, wy = y - y0;
  auto at = [&](int yy, int xx) {
    return static_cast<double>(plane[static_cast<size_t>(c) * ra * rb + static_cast<size_t>(yy) * ra + xx]);
  };
  return (1 - wx) * (1 - wy) * at(y0, x0) + wx * (1 - wy) * at(y0, x1) + (1 - wx) * wy * at(y1, x0) +
         wx * wy * at(y1, x1);
}

std::vector<double> Linear(const DenseLayer& layer, const std::vector<double>& x) {
  std::vector<double> y(layer.out);
  for (int o = 0; o < layer.out; ++o) {
    double acc = layer.bias[o];
    for (int i = 0; i < layer.in; ++i) acc += static_cast<double>(layer.weight[o * layer.in + i]) * x[i];
    y[o] = acc;
  }
  return y;
}

std::vector<double> Relu(std::vector<double> v) {
  for (double& x : v) x = std::max(x, 0.0);
  return v;
}

std::vector<double> ReferenceDeltas(const TransformFieldWeights& f, const FieldNormalization& norm, const float* p,
                                    double ratio) {
  double coord[4];
  for (int d = 0; d < 3; ++d) {
    const double lo = norm.aabb_min[d], hi = norm.aabb_max[d];
    coord[d] = hi > lo ? 2.0 * (p[d] - lo) / (hi - lo) - 1.0 : 0.0;
  }
  coord[3] = ratio * norm.ratio_scale + norm.ratio_offset;
  std::vector<double> features;
  for (const HexPlaneLevel& level : f.levels) {
    for (int c = 0; c < f.config.channels; ++c) {
      double prod = 1.0;
      for (int pl = 0; pl < 6; ++pl) {
        const int a = kPlaneAxes[pl][0], b = kPlaneAxes[pl][1];
        prod *= GridSample(level.planes[pl], level.Resolution(a), level.Resolution(b), c, coord[a], coord[b]);
      }
      features.push_back(prod);
    }
  }
  const std::vector<double> trunk = Linear(f.trunk, features);
  std::vector<double> out;
  for (int h = 0; h < 3; ++h) {
    const auto head = Linear(f.fc2[h], Relu(Linear(f.fc1[h], Relu(trunk))));
    out.insert(out.end(), head.begin(), head.end());
  }
  return out;
}

void ExpectMatchesReference(const TransformFieldWeights& f, const FieldNormalization& norm,
                            const std::vector<float>& positions, float ratio, ThreadPool* pool) {
  const size_t n = positions.size() / 3;
  std::vector<float> deltas(n * kDeltaStride);
  EvalTransformField(f, norm, positions, ratio, absl::MakeSpan(deltas), pool);
  for (size_t i = 0; i < n; ++i) {
    const auto ref = ReferenceDeltas(f, norm, &positions[3 * i], ratio);
    ASSERT_EQ(ref.size(), static_cast<size_t>(kDeltaStride));
    for (int k = 0; k < kDeltaStride; ++k) {
      ASSERT_NEAR(deltas[i * kDeltaStride + k], ref[k], 1e-4 * (1.0 + std::abs(ref[k])))
          << "Gaussian " << i << " output " << k << " ratio " << ratio << " at (" << positions[3 * i] << ", "
          << positions[3 * i + 1] << ", " << positions[3 * i + 2] << ")";
    }
  }
}

// ---------------------------------------------------------------------------

TEST(TransformFieldTest, ExtentNormalizationIsThePositionsBoxWithFlatAxesWidened) {
  GaussianCloud cloud;
  cloud.Resize(3);
  // x spans [-2, 4], y is flat at 1.5, z spans [0, 0.25].
  const float positions[9] = {4.0f, 1.5f, 0.0f, -2.0f, 1.5f, 0.25f, 1.0f, 1.5f, 0.1f};
  std::copy(positions, positions + 9, cloud.positions.begin());
  const FieldNormalization n = ExtentNormalization(cloud);
  EXPECT_EQ(n.aabb_min, (std::array<float, 3>{-2.0f, 1.0f, 0.0f}));
  EXPECT_EQ(n.aabb_max, (std::array<float, 3>{4.0f, 2.0f, 0.25f}));
  const FieldNormalization defaults;
  EXPECT_EQ(n.ratio_scale, defaults.ratio_scale);
  EXPECT_EQ(n.ratio_offset, defaults.ratio_offset);
  const FieldNormalization empty = ExtentNormalization(GaussianCloud{});
  EXPECT_EQ(empty.aabb_min, defaults.aabb_min);
  EXPECT_EQ(empty.aabb_max, defaults.aabb_max);
}

TEST(TransformFieldTest, ForwardMatchesFloat64Reference) {
  const TransformFieldConfig config = SmallConfig();
  const TransformFieldWeights f = RandomField(config, 3);
  ASSERT_TRUE(f.Validate().ok()) << f.Validate();
  const FieldNormalization norm = TestNormalization();
  const std::vector<float> positions = RandomPositions(1500, norm, 21);
  ThreadPool pool(2);
  // In-range ratios, one between texels, and ratios outside [0, 1] (border clamp on e).
  for (float ratio : {0.01f, 0.05f, 0.1337f, 0.2f, 0.5f, 1.0f, -0.4f, 1.8f}) {
    ExpectMatchesReference(f, norm, positions, ratio, &pool);
  }
}

TEST(TransformFieldTest, ForwardMatchesReferenceWithTheDefaultConfig) {
  TransformFieldConfig config;  // C=16, 64/128/256 x 150, width 64 (the reference's)
  const TransformFieldWeights f = RandomField(config, 4);
  FieldNormalization norm = TestNormalization();
  norm.ratio_scale = 1.0f;  // the reference's raw-e mapping
  norm.ratio_offset = 0.0f;
  ExpectMatchesReference(f, norm, RandomPositions(300, norm, 22), 0.1f, nullptr);
}

TEST(TransformFieldTest, DegenerateAxisSamplesThePlaneCentre) {
  const TransformFieldWeights f = RandomField(SmallConfig(), 5);
  FieldNormalization norm = TestNormalization();
  norm.aabb_min[2] = norm.aabb_max[2] = 0.75f;  // flat scene
  ExpectMatchesReference(f, norm, RandomPositions(200, norm, 23), 0.1f, nullptr);
  // ...and so z does not matter at all.
  std::vector<float> a = {0.1f, 0.2f, -5.0f}, b = {0.1f, 0.2f, 9.0f};
  std::vector<float> da(kDeltaStride), db(kDeltaStride);
  EvalTransformField(f, norm, a, 0.1f, absl::MakeSpan(da), nullptr);
  EvalTransformField(f, norm, b, 0.1f, absl::MakeSpan(db), nullptr);
  EXPECT_EQ(da, db);
}

TEST(TransformFieldTest, SingleTexelAxesAreConstant) {
  TransformFieldConfig config = SmallConfig();
  config.base_resolution = 1;
  config.multires = {1, 2};  // resolutions 1 and 2
  config.ratio_resolution = 1;
  const TransformFieldWeights f = RandomField(config, 6);
  ASSERT_TRUE(f.Validate().ok()) << f.Validate();
  const FieldNormalization norm = TestNormalization();
  ExpectMatchesReference(f, norm, RandomPositions(200, norm, 24), 0.3f, nullptr);
}

TEST(TransformFieldTest, FreshlyInitialisedFieldIsTheIdentity) {
  const TransformFieldWeights f = TransformFieldWeights::Init(TransformFieldConfig{}, 1);
  ASSERT_TRUE(f.Validate().ok()) << f.Validate();
  const FieldNormalization norm = TestNormalization();
  const std::vector<float> positions = RandomPositions(1000, norm, 25);
  std::vector<float> deltas(1000 * kDeltaStride, 123.0f);
  ThreadPool pool(2);
  for (float ratio : {0.01f, 0.15f, 2.0f}) {
    EvalTransformField(f, norm, positions, ratio, absl::MakeSpan(deltas), &pool);
    for (size_t i = 0; i < deltas.size(); ++i) ASSERT_EQ(deltas[i], 0.0f) << i;
  }
}

TEST(TransformFieldTest, InitFollowsTheReferenceScheme) {
  TransformFieldConfig config = SmallConfig();
  const TransformFieldWeights f = TransformFieldWeights::Init(config, 9);
  ASSERT_EQ(f.levels.size(), 2u);
  for (size_t l = 0; l < f.levels.size(); ++l) {
    const HexPlaneLevel& level = f.levels[l];
    EXPECT_EQ(level.spatial_resolution, 6 * config.multires[l]);
    EXPECT_EQ(level.ratio_resolution, 7);
    for (int p = 0; p < 6; ++p) {
      const int ra = level.Resolution(kPlaneAxes[p][0]), rb = level.Resolution(kPlaneAxes[p][1]);
      ASSERT_EQ(level.planes[p].size(), static_cast<size_t>(5 * ra * rb)) << kPlaneNames[p];
      const auto [lo, hi] = std::minmax_element(level.planes[p].begin(), level.planes[p].end());
      if (kPlaneAxes[p][1] == 3) {
        EXPECT_EQ(*lo, 1.0f) << kPlaneNames[p];
        EXPECT_EQ(*hi, 1.0f) << kPlaneNames[p];
      } else {
        EXPECT_GE(*lo, 0.1f) << kPlaneNames[p];
        EXPECT_LT(*hi, 0.5f) << kPlaneNames[p];
        EXPECT_LT(*lo, 0.15f) << kPlaneNames[p];
        EXPECT_GT(*hi, 0.45f) << kPlaneNames[p];
      }
    }
  }
  auto max_abs = [](const std::vector<float>& v) {
    float m = 0;
    for (float x : v) m = std::max(m, std::abs(x));
    return m;
  };
  const int features = config.feature_dim(), hidden = config.hidden;
  EXPECT_LE(max_abs(f.trunk.weight), std::sqrt(6.0f / (features + hidden)));
  EXPECT_GT(max_abs(f.trunk.weight), 0.8f * std::sqrt(6.0f / (features + hidden)));
  EXPECT_LE(max_abs(f.trunk.bias), 1.0f / std::sqrt(static_cast<float>(features)));
  for (int h = 0; h < 3; ++h) {
    EXPECT_LE(max_abs(f.fc1[h].weight), std::sqrt(6.0f / (2 * hidden)));
    EXPECT_GT(max_abs(f.fc1[h].weight), 0.8f * std::sqrt(6.0f / (2 * hidden)));
    EXPECT_LE(max_abs(f.fc1[h].bias), 1.0f / std::sqrt(static_cast<float>(hidden)));
    EXPECT_EQ(max_abs(f.fc2[h].weight), 0.0f);
    EXPECT_EQ(max_abs(f.fc2[h].bias), 0.0f);
    EXPECT_EQ(f.fc2[h].out, TransformFieldWeights::kHeadOutputs[h]);
  }

  const TransformFieldWeights same = TransformFieldWeights::Init(config, 9);
  const TransformFieldWeights other = TransformFieldWeights::Init(config, 10);
  EXPECT_EQ(f.levels[1].planes[3], same.levels[1].planes[3]);
  EXPECT_EQ(f.fc1[2].weight, same.fc1[2].weight);
  EXPECT_NE(f.levels[1].planes[3], other.levels[1].planes[3]);
  EXPECT_NE(f.trunk.weight, other.trunk.weight);
}

TEST(TransformFieldTest, DefaultConfigHasTheReferenceSize) {
  const TransformFieldWeights f = TransformFieldWeights::Init(TransformFieldConfig{}, 1);
  size_t planes = 0;
  for (const auto& level : f.levels) {
    for (const auto& plane : level.planes) planes += plane.size();
  }
  EXPECT_EQ(planes, 7354368u);  // 657,408 + 1,708,032 + 4,988,928
  size_t mlp = f.trunk.weight.size() + f.trunk.bias.size();
  for (int h = 0; h < 3; ++h) {
    mlp += f.fc1[h].weight.size() + f.fc1[h].bias.size() + f.fc2[h].weight.size() + f.fc2[h].bias.size();
  }
  EXPECT_EQ(mlp, 16266u);
}

TEST(TransformFieldTest, IdenticalAcrossThreadCounts) {
  const TransformFieldWeights f = RandomField(SmallConfig(), 7);
  const FieldNormalization norm = TestNormalization();
  const std::vector<float> positions = RandomPositions(3001, norm, 26);
  std::vector<float> serial(3001 * kDeltaStride);
  EvalTransformField(f, norm, positions, 0.07f, absl::MakeSpan(serial), nullptr);
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    std::vector<float> parallel(serial.size());
    EvalTransformField(f, norm, positions, 0.07f, absl::MakeSpan(parallel), &pool);
    EXPECT_EQ(0, std::memcmp(serial.data(), parallel.data(), serial.size() * sizeof(float))) << threads << " threads";
  }
}

TEST(TransformFieldTest, EmptyInputIsFine) {
  const TransformFieldWeights f = RandomField(SmallConfig(), 7);
  std::vector<float> none;
  EvalTransformField(f, TestNormalization(), none, 0.1f, absl::MakeSpan(none), nullptr);
  SUCCEED();
}

// ---------------------------------------------------------------------------
// ApplyTransformDeltas

GaussianCloud OneGaussian(std::vector<float> q) {
  GaussianCloud cloud;
  cloud.Resize(1);
  cloud.positions = {1.0f, 2.0f, 3.0f};
  cloud.log_scales = {0.0f, -1.0f, 0.5f};
  cloud.rotations = std::move(q);
  cloud.opacity_logits = {0.7f};
  cloud.sh_dc = {0.1f, 0.2f, 0.3f};
  return cloud;
}

TEST(ApplyTransformDeltasTest, MatchesHandComputedValues) {
  GaussianCloud cloud = OneGaussian({2.0f, 0.0f, 0.0f, 0.0f});  // non-unit: normalised first
  const std::vector<float> d = {0.5f, -1.0f, 0.25f, 0.1f, 0.2f, -0.3f, 0.0f, 1.0f, 0.0f, 0.0f};
  ApplyTransformDeltas(d, cloud);
  EXPECT_FLOAT_EQ(cloud.positions[0], 1.5f);
  EXPECT_FLOAT_EQ(cloud.positions[1], 1.0f);
  EXPECT_FLOAT_EQ(cloud.positions[2], 3.25f);
  EXPECT_FLOAT_EQ(cloud.log_scales[0], 0.1f);
  EXPECT_FLOAT_EQ(cloud.log_scales[1], -0.8f);
  EXPECT_FLOAT_EQ(cloud.log_scales[2], 0.2f);
  const float h = 1.0f / std::sqrt(2.0f);  // normalize((1,0,0,0) + (0,1,0,0))
  EXPECT_FLOAT_EQ(cloud.rotations[0], h);
  EXPECT_FLOAT_EQ(cloud.rotations[1], h);
  EXPECT_FLOAT_EQ(cloud.rotations[2], 0.0f);
  EXPECT_FLOAT_EQ(cloud.rotations[3], 0.0f);
  // Opacity and colour are never transformed.
  EXPECT_EQ(cloud.opacity_logits[0], 0.7f);
  EXPECT_EQ(cloud.sh_dc, (std::vector<float>{0.1f, 0.2f, 0.3f}));
}

TEST(ApplyTransformDeltasTest, CancellingRotationDeltaKeepsTheInputRotation) {
  GaussianCloud cloud = OneGaussian({0.0f, 0.0f, 3.0f, 0.0f});
  const std::vector<float> d = {0, 0, 0, 0, 0, 0, 0.0f, 0.0f, -1.0f, 0.0f};  // -normalize(q)
  ApplyTransformDeltas(d, cloud);
  EXPECT_EQ(cloud.rotations, (std::vector<float>{0.0f, 0.0f, 1.0f, 0.0f}));
}

TEST(ApplyTransformDeltasTest, ZeroQuaternionIsTreatedAsIdentity) {
  GaussianCloud cloud = OneGaussian({0.0f, 0.0f, 0.0f, 0.0f});
  const std::vector<float> d = {0, 0, 0, 0, 0, 0, 0.0f, 0.0f, 0.0f, 0.75f};
  ApplyTransformDeltas(d, cloud);
  EXPECT_FLOAT_EQ(cloud.rotations[0], 0.8f);  // (1, 0, 0, 0.75) / 1.25
  EXPECT_FLOAT_EQ(cloud.rotations[1], 0.0f);
  EXPECT_FLOAT_EQ(cloud.rotations[2], 0.0f);
  EXPECT_FLOAT_EQ(cloud.rotations[3], 0.6f);
}

TEST(ApplyTransformDeltasTest, KeepsQuaternionsUnitAndScalesPositive) {
  SplitMix64 rng(77);
  const size_t n = 2000;
  GaussianCloud cloud;
  cloud.Resize(n);
  std::vector<float> d(n * kDeltaStride);
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 3; ++k) cloud.log_scales[3 * i + k] = static_cast<float>(rng.Uniform(-6, 1));
    for (int k = 0; k < 4; ++k) cloud.rotations[4 * i + k] = static_cast<float>(rng.Uniform(-2, 2));
  }
  Randomize(d, rng, -3, 3);  // large deltas: scale shrinks by up to e^-3, quaternions flip
  ApplyTransformDeltas(d, cloud);
  for (size_t i = 0; i < n; ++i) {
    const float* q = &cloud.rotations[4 * i];
    EXPECT_NEAR(std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]), 1.0f, 1e-6f) << i;
    for (int k = 0; k < 3; ++k) {
      const float s = std::exp(cloud.log_scales[3 * i + k]);
      EXPECT_TRUE(s > 0.0f && std::isfinite(s)) << i;
    }
  }
}

// ---------------------------------------------------------------------------
// Validate

TEST(TransformFieldValidateTest, AcceptsInitAndRejectsBadConfigs) {
  EXPECT_TRUE(TransformFieldWeights::Init(SmallConfig(), 1).Validate().ok());
  TransformFieldConfig c = SmallConfig();
  c.channels = 0;
  EXPECT_THAT(c.Validate().message(), HasSubstr("channels = 0"));
  c = SmallConfig();
  c.multires = {};
  EXPECT_THAT(c.Validate().message(), HasSubstr("multires has 0 levels"));
  c = SmallConfig();
  c.multires = {1, 0};
  EXPECT_THAT(c.Validate().message(), HasSubstr("level 1 resolution"));
  c = SmallConfig();
  c.hidden = -3;
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kInvalidArgument);
  c = SmallConfig();
  c.base_resolution = 1 << 20;
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TransformFieldValidateTest, NamesAPlaneWithTheWrongSize) {
  TransformFieldWeights f = TransformFieldWeights::Init(SmallConfig(), 1);
  f.levels[1].planes[2].pop_back();
  const absl::Status s = f.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // level 1: spatial 18, ratio 7, xe plane is [C, res_e, res_x] = [5, 7, 18].
  EXPECT_THAT(s.message(), HasSubstr("field.level1.xe has 629 values, expected 630 (shape [5, 7, 18])"));
}

TEST(TransformFieldValidateTest, NamesANonFiniteValue) {
  TransformFieldWeights f = TransformFieldWeights::Init(SmallConfig(), 1);
  f.levels[0].planes[3][7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(f.Validate().message(), HasSubstr("field.level0.yz contains a non-finite value at index 7"));

  TransformFieldWeights g = TransformFieldWeights::Init(SmallConfig(), 1);
  g.fc2[2].bias[1] = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(g.Validate().message(), HasSubstr("field.fc2.rotation.bias contains a non-finite value at index 1"));
}

TEST(TransformFieldValidateTest, NamesALayerWithTheWrongShape) {
  TransformFieldWeights f = TransformFieldWeights::Init(SmallConfig(), 1);
  f.trunk = DenseLayer(11, 24);
  EXPECT_THAT(f.Validate().message(), HasSubstr("field.trunk.weight has shape [24, 11], expected [24, 10]"));

  TransformFieldWeights g = TransformFieldWeights::Init(SmallConfig(), 1);
  g.fc2[0] = DenseLayer(24, 4);
  EXPECT_THAT(g.Validate().message(), HasSubstr("field.fc2.position.weight has shape [4, 24], expected [3, 24]"));

  TransformFieldWeights h = TransformFieldWeights::Init(SmallConfig(), 1);
  h.levels.pop_back();
  EXPECT_THAT(h.Validate().message(), HasSubstr("field has 1 levels, expected 2"));

  TransformFieldWeights r = TransformFieldWeights::Init(SmallConfig(), 1);
  r.levels[0].spatial_resolution = 7;
  EXPECT_THAT(r.Validate().message(), HasSubstr("field.level0 has resolution 7"));
}

}  // namespace
}  // namespace flexgs

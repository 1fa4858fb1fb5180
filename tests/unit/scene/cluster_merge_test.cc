#include "scene/cluster_merge.h"

#include <cmath>
#include <numeric>

#include "Eigen/Dense"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scene/synthetic_scene.h"
#include "tests/support/cloud_equality.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

using ::flexgs::testing::ExpectSameCloud;

// An axis-aligned Gaussian at `pos` with per-axis std `s`, opacity `alpha`, DC `dc`.
void Add(GaussianCloud& c, Eigen::Vector3d pos, Eigen::Vector3d s, double alpha, Eigen::Vector3d dc) {
  for (int a = 0; a < 3; ++a) {
    c.positions.push_back(static_cast<float>(pos[a]));
    c.log_scales.push_back(static_cast<float>(std::log(s[a])));
    c.sh_dc.push_back(static_cast<float>(dc[a]));
  }
  for (float q : {1.0f, 0.0f, 0.0f, 0.0f}) c.rotations.push_back(q);
  c.opacity_logits.push_back(static_cast<float>(std::log(alpha / (1 - alpha))));
}

double Area(Eigen::Vector3d s) {  // Thomsen's approximation, as the module uses
  const double p = 1.6075;
  const double a = std::pow(s[0], p), b = std::pow(s[1], p), c = std::pow(s[2], p);
  return 4 * M_PI * std::pow((a * b + a * c + b * c) / 3, 1 / p);
}

Eigen::Matrix3d Covariance(const GaussianCloud& c, size_t i) {
  const Eigen::Quaterniond q(c.rotations[4 * i], c.rotations[4 * i + 1], c.rotations[4 * i + 2],
                             c.rotations[4 * i + 3]);
  const Eigen::Matrix3d R = q.normalized().toRotationMatrix();
  Eigen::Vector3d var;
  for (int a = 0; a < 3; ++a) var[a] = std::exp(2.0 * c.log_scales[3 * i + a]);
  return R * var.asDiagonal() * R.transpose();
}

TEST(ClusterMergeTest, EveryGaussianItsOwnRepresentativeReturnsTheInputBitForBit) {
  const GaussianCloud scene = MakeSyntheticScene({.count = 3000, .sh_degree = 2, .seed = 3});
  std::vector<uint32_t> all(scene.size());
  std::iota(all.begin(), all.end(), 0u);
  ThreadPool pool(2);
  auto merged = MergeIntoRepresentatives(scene, all, MergeOptions{}, &pool);
  ASSERT_TRUE(merged.ok()) << merged.status();
  ExpectSameCloud(*merged, scene);
}

TEST(ClusterMergeTest, TwoGaussiansMergeByInkWeightedMomentMatching) {
  GaussianCloud c;
  Add(c, {0, 0, 0}, {0.1, 0.2, 0.3}, 0.8, {0.5, 0.1, -0.2});
  Add(c, {1, 0.5, 0}, {0.3, 0.1, 0.1}, 0.4, {0.3, 0.2, 0.0});
  const uint32_t rep[] = {1};
  auto m = MergeIntoRepresentatives(c, rep, MergeOptions{}, nullptr);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 1u);
  const double w0 = 0.8 * Area({0.1, 0.2, 0.3}), w1 = 0.4 * Area({0.3, 0.1, 0.1});
  const Eigen::Vector3d p0(0, 0, 0), p1(1, 0.5, 0);
  const Eigen::Vector3d mean = (w0 * p0 + w1 * p1) / (w0 + w1);
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(m->positions[a], mean[a], 1e-6);
  // Law of total variance.
  const Eigen::Matrix3d expected = (w0 * (Covariance(c, 0) + (p0 - mean) * (p0 - mean).transpose()) +
                                    w1 * (Covariance(c, 1) + (p1 - mean) * (p1 - mean).transpose())) /
                                   (w0 + w1);
  EXPECT_LT((Covariance(*m, 0) - expected).norm(), 1e-5 * expected.norm());
  // Ink conserved: opacity * area of the merged Gaussian = w0 + w1 (below the cap here).
  Eigen::Vector3d s;
  for (int a = 0; a < 3; ++a) s[a] = std::exp(double{m->log_scales[a]});
  const double alpha = 1 / (1 + std::exp(-double{m->opacity_logits[0]}));
  EXPECT_NEAR(alpha * Area(s), w0 + w1, 1e-4 * (w0 + w1));
  const double dc0[] = {0.5, 0.1, -0.2}, dc1[] = {0.3, 0.2, 0.0};
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(m->sh_dc[a], (w0 * dc0[a] + w1 * dc1[a]) / (w0 + w1), 1e-6);
}

TEST(ClusterMergeTest, OverlappingInkCapsOpacityAtOne) {
  GaussianCloud c;
  for (int i = 0; i < 5; ++i) Add(c, {0.001 * i, 0, 0}, {0.1, 0.1, 0.1}, 0.99, {0, 0, 0});
  const uint32_t rep[] = {2};
  auto m = MergeIntoRepresentatives(c, rep, MergeOptions{}, nullptr);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->opacity_logits[0], kOpacityLogitLimit);
}

TEST(ClusterMergeTest, AGaussianJoinsTheRepresentativeOfItsColourWhenBothAreNear) {
  GaussianCloud c;
  Add(c, {0, 0, 0}, {0.1, 0.1, 0.1}, 0.9, {1, 1, 1});        // bright representative
  Add(c, {1, 0, 0}, {0.1, 0.1, 0.1}, 0.9, {-1, -1, -1});     // dark representative
  Add(c, {0.45, 0, 0}, {0.1, 0.1, 0.1}, 0.9, {-1, -1, -1});  // nearer the bright one, dark
  const uint32_t reps[] = {0, 1};
  auto colour = NearestRepresentative(c, reps, MergeOptions{}, nullptr);
  ASSERT_TRUE(colour.ok()) << colour.status();
  EXPECT_THAT(*colour, ::testing::ElementsAre(0u, 1u, 1u));
  auto blind = NearestRepresentative(c, reps, MergeOptions{.colour_weight = 0, .opacity_weight = 0}, nullptr);
  ASSERT_TRUE(blind.ok()) << blind.status();
  EXPECT_THAT(*blind, ::testing::ElementsAre(0u, 1u, 0u));
}

TEST(ClusterMergeTest, AFaintGaussianJoinsAFaintRepresentativeWhenBothAreNear) {
  GaussianCloud c;
  Add(c, {0, 0, 0}, {0.1, 0.1, 0.1}, 0.99, {0, 0, 0});     // solid
  Add(c, {1, 0, 0}, {0.1, 0.1, 0.1}, 0.05, {0, 0, 0});     // faint
  Add(c, {0.45, 0, 0}, {0.1, 0.1, 0.1}, 0.05, {0, 0, 0});  // nearer the solid one, faint
  const uint32_t reps[] = {0, 1};
  auto assigned = NearestRepresentative(c, reps, MergeOptions{}, nullptr);
  ASSERT_TRUE(assigned.ok()) << assigned.status();
  EXPECT_THAT(*assigned, ::testing::ElementsAre(0u, 1u, 1u));
  auto blind = NearestRepresentative(c, reps, MergeOptions{.opacity_weight = 0}, nullptr);
  ASSERT_TRUE(blind.ok()) << blind.status();
  EXPECT_THAT(*blind, ::testing::ElementsAre(0u, 1u, 0u));
}

TEST(ClusterMergeTest, AssignmentIsNearestCentreWithoutColourAndTheSameForAnyThreadCount) {
  const GaussianCloud scene = MakeSyntheticScene({.count = 20000, .sh_degree = 1, .seed = 5});
  std::vector<uint32_t> reps;
  for (uint32_t i = 0; i < scene.size(); i += 97) reps.push_back(i);
  auto blind = NearestRepresentative(scene, reps, MergeOptions{.colour_weight = 0, .opacity_weight = 0}, nullptr);
  ASSERT_TRUE(blind.ok());
  for (size_t i = 0; i < scene.size(); i += 37) {  // brute force on a sample
    float best = INFINITY;
    uint32_t arg = 0;
    for (uint32_t k = 0; k < reps.size(); ++k) {
      float d2 = 0;
      for (int a = 0; a < 3; ++a) {
        const float d = scene.positions[3 * reps[k] + a] - scene.positions[3 * i + a];
        d2 += d * d;
      }
      if (d2 < best) best = d2, arg = k;
    }
    ASSERT_EQ((*blind)[i], arg) << "Gaussian " << i;
  }
  auto one = MergeIntoRepresentatives(scene, reps, MergeOptions{}, nullptr);
  ThreadPool pool(2);
  auto two = MergeIntoRepresentatives(scene, reps, MergeOptions{}, &pool);
  ASSERT_TRUE(one.ok() && two.ok());
  ExpectSameCloud(*one, *two);
  ASSERT_TRUE(one->Validate().ok());
  for (float v : one->log_scales) ASSERT_TRUE(std::isfinite(v));
  for (float v : one->opacity_logits) ASSERT_TRUE(std::isfinite(v));
}

TEST(ClusterMergeTest, BadRepresentativesAreRefusedByName) {
  const GaussianCloud scene = MakeSyntheticScene({.count = 10, .sh_degree = 0, .seed = 1});
  const uint32_t dup[] = {3, 3};
  const uint32_t out[] = {1, 10};
  auto empty = MergeIntoRepresentatives(scene, {}, MergeOptions{}, nullptr);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  auto twice = MergeIntoRepresentatives(scene, dup, MergeOptions{}, nullptr);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.status().message(), HasSubstr("representative 3 is listed twice"));
  auto range = NearestRepresentative(scene, out, MergeOptions{}, nullptr);
  EXPECT_EQ(range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(range.status().message(), HasSubstr("representative 10 is out of range"));
}

}  // namespace
}  // namespace flexgs

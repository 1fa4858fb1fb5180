#include "scene/gaussian_cloud.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "scene/synthetic_scene.h"

namespace flexgs {
namespace {

TEST(GaussianCloudTest, GatherKeepsOrderAndAllAttributes) {
  const GaussianCloud cloud = MakeSyntheticScene({.count = 100, .sh_degree = 2, .seed = 1});
  ASSERT_TRUE(cloud.Validate().ok());
  const std::vector<uint32_t> idx = {7, 3, 99};
  const GaussianCloud sub = cloud.Gather(idx);
  ASSERT_EQ(sub.size(), 3u);
  ASSERT_TRUE(sub.Validate().ok());
  for (size_t o = 0; o < idx.size(); ++o) {
    EXPECT_EQ(sub.opacity_logits[o], cloud.opacity_logits[idx[o]]);
    EXPECT_EQ(sub.positions[o * 3 + 2], cloud.positions[idx[o] * 3 + 2]);
    EXPECT_EQ(sub.rotations[o * 4 + 3], cloud.rotations[idx[o] * 4 + 3]);
    EXPECT_EQ(sub.sh_rest[o * 24 + 23], cloud.sh_rest[idx[o] * 24 + 23]);
  }
}

// Scatter undoes Gather, and Append of two gathered halves rebuilds the whole.
TEST(GaussianCloudTest, ScatterAndAppendInvertGather) {
  const GaussianCloud c = MakeSyntheticScene({.count = 50, .sh_degree = 2, .seed = 4});
  std::vector<uint32_t> odd, even;
  for (uint32_t i = 0; i < 50; ++i) (i % 2 ? odd : even).push_back(i);
  GaussianCloud zeroed = c;
  zeroed.Scatter(odd, MakeSyntheticScene({.count = 25, .sh_degree = 2, .seed = 5}));
  EXPECT_NE(zeroed.positions, c.positions);
  zeroed.Scatter(odd, c.Gather(odd));
  EXPECT_EQ(zeroed.positions, c.positions);
  EXPECT_EQ(zeroed.sh_rest, c.sh_rest);
  EXPECT_EQ(zeroed.opacity_logits, c.opacity_logits);

  std::vector<uint32_t> first, second;
  for (uint32_t i = 0; i < 50; ++i) (i < 20 ? first : second).push_back(i);
  GaussianCloud joined = c.Gather(first);
  joined.Append(c.Gather(second));
  joined.Append(GaussianCloud{.sh_degree = 2});  // empty: nothing changes
  ASSERT_TRUE(joined.Validate().ok());
  EXPECT_EQ(joined.positions, c.positions);
  EXPECT_EQ(joined.rotations, c.rotations);
  EXPECT_EQ(joined.sh_dc, c.sh_dc);
  EXPECT_EQ(joined.sh_rest, c.sh_rest);
}

TEST(GaussianCloudTest, WithShDegreeKeepsLowBandsChannelMajor) {
  const GaussianCloud cloud = MakeSyntheticScene({.count = 10, .sh_degree = 3, .seed = 2});
  const GaussianCloud low = cloud.WithShDegree(1);
  ASSERT_TRUE(low.Validate().ok());
  ASSERT_EQ(low.rest_coeffs(), 3);
  for (size_t i = 0; i < 10; ++i)
    for (int c = 0; c < 3; ++c)
      for (int j = 0; j < 3; ++j) EXPECT_EQ(low.sh_rest[i * 9 + c * 3 + j], cloud.sh_rest[i * 45 + c * 15 + j]);
}

TEST(GaussianCloudTest, ValidateNamesTheBadAttribute) {
  GaussianCloud cloud = MakeSyntheticScene({.count = 4, .sh_degree = 1, .seed = 3});
  cloud.sh_rest.resize(5);
  const absl::Status st = cloud.Validate();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sh_rest"), std::string::npos) << st;
  cloud = MakeSyntheticScene({.count = 4, .sh_degree = 1, .seed = 3});
  cloud.sh_degree = 4;
  EXPECT_FALSE(cloud.Validate().ok());
}

TEST(GaussianCloudTest, SanitizeClampsInfiniteOpacityAndDropsNaN) {
  GaussianCloud cloud = MakeSyntheticScene({.count = 6, .sh_degree = 0, .seed = 4});
  const float inf = std::numeric_limits<float>::infinity();
  cloud.opacity_logits[0] = inf;
  cloud.opacity_logits[1] = -inf;
  cloud.positions[2 * 3 + 1] = std::nanf("");
  cloud.log_scales[3 * 3] = inf;
  const float kept_pos = cloud.positions[4 * 3];
  const NonFiniteReport rep = SanitizeNonFinite(cloud);
  EXPECT_EQ(rep.opacity_clamped, 2u);
  EXPECT_EQ(rep.dropped, 2u);
  ASSERT_EQ(cloud.size(), 4u);
  EXPECT_EQ(cloud.opacity_logits[0], kOpacityLogitLimit);
  EXPECT_EQ(cloud.opacity_logits[1], -kOpacityLogitLimit);
  EXPECT_EQ(cloud.positions[2 * 3], kept_pos);  // old index 4 is now 2
  for (float v : cloud.positions) EXPECT_TRUE(std::isfinite(v));
}

TEST(GaussianCloudTest, SyntheticSceneIsDeterministic) {
  const GaussianCloud a = MakeSyntheticScene({.count = 1000, .sh_degree = 3, .seed = 9});
  const GaussianCloud b = MakeSyntheticScene({.count = 1000, .sh_degree = 3, .seed = 9});
  const GaussianCloud c = MakeSyntheticScene({.count = 1000, .sh_degree = 3, .seed = 10});
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.sh_rest, b.sh_rest);
  EXPECT_NE(a.positions, c.positions);
}

}  // namespace
}  // namespace flexgs

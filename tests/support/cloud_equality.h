// Bit-for-bit comparison of Gaussian clouds, for tests whose contract is "the same
// bits" (lossless streams, replays, device copies): value equality would let -0 pass
// for 0 and fail on equal NaNs.
#pragma once

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "scene/gaussian_cloud.h"

namespace flexgs::testing {

inline bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

inline bool BitEqual(const GaussianCloud& a, const GaussianCloud& b) {
  return a.sh_degree == b.sh_degree && BitEqual(a.positions, b.positions) && BitEqual(a.log_scales, b.log_scales) &&
         BitEqual(a.rotations, b.rotations) && BitEqual(a.opacity_logits, b.opacity_logits) &&
         BitEqual(a.sh_dc, b.sh_dc) && BitEqual(a.sh_rest, b.sh_rest);
}

// Expects equal bits attribute by attribute, so a failure names the attribute.
inline void ExpectSameCloud(const GaussianCloud& a, const GaussianCloud& b) {
  EXPECT_EQ(a.sh_degree, b.sh_degree);
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(BitEqual(a.positions, b.positions)) << "positions differ";
  EXPECT_TRUE(BitEqual(a.log_scales, b.log_scales)) << "log-scales differ";
  EXPECT_TRUE(BitEqual(a.rotations, b.rotations)) << "rotations differ";
  EXPECT_TRUE(BitEqual(a.opacity_logits, b.opacity_logits)) << "opacity logits differ";
  EXPECT_TRUE(BitEqual(a.sh_dc, b.sh_dc)) << "SH DC differs";
  EXPECT_TRUE(BitEqual(a.sh_rest, b.sh_rest)) << "SH rest differs";
}

}  // namespace flexgs::testing

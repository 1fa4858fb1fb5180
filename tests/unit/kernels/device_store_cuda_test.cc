// The CUDA DeviceGaussianStore (kernels/device_gaussian_store.cu) against the same
// operations on a host GaussianCloud: appends, geometry patches and whole-Gaussian
// replacements (merged levels) must leave exactly the same bits on the device. Skips,
// saying why, where there is no usable GPU.
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/device_gaussian_store.h"
#include "scene/synthetic_scene.h"
#include "stream/wire_layout.h"
#include "tests/support/cloud_equality.h"

namespace flexgs {
namespace {

using ::flexgs::testing::ExpectSameCloud;

std::vector<uint32_t> Range(uint32_t begin, uint32_t end) {
  std::vector<uint32_t> r(end - begin);
  std::iota(r.begin(), r.end(), begin);
  return r;
}

TEST(DeviceStoreCudaTest, AppendPatchAndReplaceLeaveTheHostResult) {
  std::string why;
  if (!CudaAvailable(&why)) GTEST_SKIP() << "CUDA not available: " << why;
  auto store = NewDeviceGaussianStore();
  ASSERT_TRUE(store.ok()) << store.status();
  for (int sh : {0, 3}) {
    SCOPED_TRACE(::testing::Message() << "SH " << sh);
    const GaussianCloud scene = MakeSyntheticScene({.count = 5000, .sh_degree = sh, .seed = 17});
    ASSERT_TRUE((*store)->Reset(scene.size(), sh).ok());
    GaussianCloud want = scene.Gather(Range(0, 3000));
    ASSERT_TRUE((*store)->Append(scene.Gather(Range(0, 1000))).ok());
    ASSERT_TRUE((*store)->Append(scene.Gather(Range(1000, 3000))).ok());
    // Geometry patches: Gaussians [500, 2500) take the geometry of [2000, 4000).
    std::vector<float> patches;
    for (uint32_t i = 2000; i < 4000; ++i) {
      patches.insert(patches.end(), &scene.positions[3 * i], &scene.positions[3 * i + 3]);
      patches.insert(patches.end(), &scene.log_scales[3 * i], &scene.log_scales[3 * i + 3]);
      patches.insert(patches.end(), &scene.rotations[4 * i], &scene.rotations[4 * i + 4]);
    }
    ASSERT_TRUE((*store)->Patch(500, patches).ok());
    for (uint32_t i = 0; i < 2000; ++i) {
      std::memcpy(&want.positions[3 * (500 + i)], &patches[kPatchStride * i], 3 * sizeof(float));
      std::memcpy(&want.log_scales[3 * (500 + i)], &patches[kPatchStride * i + 3], 3 * sizeof(float));
      std::memcpy(&want.rotations[4 * (500 + i)], &patches[kPatchStride * i + 6], 4 * sizeof(float));
    }
    // Replacements: every 7th held Gaussian becomes one from the tail of the scene.
    std::vector<uint32_t> indices;
    for (uint32_t i = 3; i < 3000; i += 7) indices.push_back(i);
    const GaussianCloud values = scene.Gather(Range(5000 - static_cast<uint32_t>(indices.size()), 5000));
    ASSERT_TRUE((*store)->Replace(indices, values).ok());
    want.Scatter(indices, values);
    auto held = (*store)->Download();
    ASSERT_TRUE(held.ok()) << held.status();
    ExpectSameCloud(*held, want);
    // Out of range, or a count or degree that disagrees: refused, nothing changed.
    const std::vector<uint32_t> past = {2999, 3000};
    EXPECT_EQ((*store)->Replace(past, scene.Gather(Range(0, 2))).code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ((*store)->Replace(past, scene.Gather(Range(0, 1))).code(), absl::StatusCode::kInvalidArgument);
    held = (*store)->Download();
    ASSERT_TRUE(held.ok());
    ExpectSameCloud(*held, want);
  }
}

}  // namespace
}  // namespace flexgs

// CUDA GsNet and transform field vs the CPU implementations.
//
// Needs a working GPU; every test skips visibly with the reason otherwise (including
// in builds without CUDA, where the kernels are not compiled at all).
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "elastic/gsnet.h"
#include "elastic/transform_field.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "scene/synthetic_scene.h"

#if defined(FLEXGS_HAS_CUDA)
#include "kernels/elastic_kernels.h"
#endif

namespace flexgs {
namespace {

#define FLEXGS_REQUIRE_CUDA()                                                                \
  do {                                                                                       \
    std::string flexgs_why_;                                                                 \
    if (!CudaAvailable(&flexgs_why_)) GTEST_SKIP() << "CUDA not available: " << flexgs_why_; \
  } while (0)

#if defined(FLEXGS_HAS_CUDA)

GaussianCloud RandomCloud(size_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  GaussianCloud cloud;
  cloud.Resize(n);
  for (size_t i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) {
      cloud.positions[3 * i + d] = static_cast<float>(rng.Uniform(-6, 6));
      cloud.log_scales[3 * i + d] = static_cast<float>(rng.Uniform(-7, 1.5));
    }
    for (int d = 0; d < 4; ++d) cloud.rotations[4 * i + d] = static_cast<float>(rng.Uniform(-3, 3));
  }
  for (size_t i = 0; i < n; i += 997) {
    for (int d = 0; d < 4; ++d) cloud.rotations[4 * i + d] = 0.0f;  // degenerate -> identity
  }
  return cloud;
}

TransformFieldWeights RandomField(const TransformFieldConfig& config, uint64_t seed) {
  TransformFieldWeights f = TransformFieldWeights::Init(config, seed);
  SplitMix64 rng(seed + 1000);
  auto fill = [&rng](std::vector<float>& v, double lo, double hi) {
    for (float& x : v) x = static_cast<float>(rng.Uniform(lo, hi));
  };
  for (auto& level : f.levels) {
    for (auto& plane : level.planes) fill(plane, -1.3, 1.3);
  }
  const double w = 2.0 / std::sqrt(static_cast<double>(config.hidden));
  fill(f.trunk.weight, -0.5, 0.5);
  fill(f.trunk.bias, -0.5, 0.5);
  for (int h = 0; h < 3; ++h) {
    fill(f.fc1[h].weight, -w, w);
    fill(f.fc1[h].bias, -0.3, 0.3);
    fill(f.fc2[h].weight, -w, w);
    fill(f.fc2[h].bias, -0.3, 0.3);
  }
  return f;
}

std::vector<float> RandomPositions(size_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> p(3 * n);
  for (float& x : p) x = static_cast<float>(rng.Uniform(-3.5, 3.5));  // the box is [-2, 2]^3
  return p;
}

FieldNormalization TestNormalization() {
  FieldNormalization norm;
  norm.aabb_min = {-2.0f, -2.0f, -2.0f};
  norm.aabb_max = {2.0f, 2.0f, 2.0f};
  return norm;
}

void ExpectClose(const std::vector<float>& cpu, const std::vector<float>& gpu, const char* what) {
  ASSERT_EQ(cpu.size(), gpu.size());
  double max_err = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_NEAR(gpu[i], cpu[i], 1e-4 * (1.0 + std::abs(cpu[i]))) << what << " index " << i;
    max_err = std::max(max_err, static_cast<double>(std::abs(gpu[i] - cpu[i])));
  }
  std::cout << what << ": max |cuda - cpu| = " << max_err << " over " << cpu.size() << " values\n";
}

TEST(ElasticCudaTest, CreateFailsCleanlyWithoutAGpu) {
  std::string why;
  if (CudaAvailable(&why)) GTEST_SKIP() << "a GPU is present; this test covers the fallback";
  const auto evaluator = CudaElasticEvaluator::Create();
  ASSERT_FALSE(evaluator.ok());
  EXPECT_EQ(evaluator.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(evaluator.status().message(), ::testing::HasSubstr(why));
}

TEST(ElasticCudaTest, GsNetScoresMatchCpu) {
  FLEXGS_REQUIRE_CUDA();
  const GsNetWeights net = GsNetWeights::Init(17);
  const GaussianCloud cloud = RandomCloud(100'003, 5);
  ThreadPool pool(0);
  auto evaluator = CudaElasticEvaluator::Create();
  ASSERT_TRUE(evaluator.ok()) << evaluator.status();
  ASSERT_TRUE((*evaluator)->SetGsNet(net).ok());
  ASSERT_TRUE((*evaluator)->SetCloud(cloud).ok());
  for (float ratio : {0.01f, 0.1f, 0.6f}) {  // resident cloud, several ratios
    std::vector<float> cpu(cloud.size()), gpu(cloud.size());
    GsNetScores(net, cloud, ratio, absl::MakeSpan(cpu), &pool);
    const absl::Status s = (*evaluator)->Scores(ratio, absl::MakeSpan(gpu));
    ASSERT_TRUE(s.ok()) << s;
    ExpectClose(cpu, gpu, "GsNet delta");
  }
  // One-shot path.
  std::vector<float> cpu(cloud.size()), gpu(cloud.size());
  GsNetScores(net, cloud, 0.05f, absl::MakeSpan(cpu), &pool);
  ASSERT_TRUE(CudaGsNetScores(net, cloud, 0.05f, absl::MakeSpan(gpu)).ok());
  ExpectClose(cpu, gpu, "GsNet delta (one-shot)");
}

void CheckField(const TransformFieldConfig& config, size_t n, const char* what) {
  const TransformFieldWeights field = RandomField(config, 8);
  const FieldNormalization norm = TestNormalization();
  const std::vector<float> positions = RandomPositions(n, 9);
  ThreadPool pool(0);
  auto evaluator = CudaElasticEvaluator::Create();
  ASSERT_TRUE(evaluator.ok()) << evaluator.status();
  const absl::Status set = (*evaluator)->SetField(field);
  ASSERT_TRUE(set.ok()) << set;
  for (float ratio : {0.01f, 0.1337f, 0.2f, -0.5f, 1.5f}) {
    std::vector<float> cpu(n * kDeltaStride), gpu(n * kDeltaStride);
    EvalTransformField(field, norm, positions, ratio, absl::MakeSpan(cpu), &pool);
    const absl::Status s = (*evaluator)->EvalField(norm, positions, ratio, absl::MakeSpan(gpu));
    ASSERT_TRUE(s.ok()) << s;
    ExpectClose(cpu, gpu, what);
  }
}

TEST(ElasticCudaTest, TransformFieldMatchesCpuDefaultConfig) {
  FLEXGS_REQUIRE_CUDA();
  CheckField(TransformFieldConfig{}, 50'000, "field deltas (default config)");
}

TEST(ElasticCudaTest, TransformFieldMatchesCpuOtherWidths) {
  FLEXGS_REQUIRE_CUDA();
  TransformFieldConfig narrow;
  narrow.channels = 5;
  narrow.base_resolution = 6;
  narrow.multires = {1, 3};
  narrow.ratio_resolution = 1;
  narrow.hidden = 20;  // FieldMlpKernel<32>
  CheckField(narrow, 20'000, "field deltas (hidden 20)");
  TransformFieldConfig wide = narrow;
  wide.ratio_resolution = 9;
  wide.hidden = 100;  // FieldMlpKernel<128>
  CheckField(wide, 20'000, "field deltas (hidden 100)");
}

TEST(ElasticCudaTest, FreshFieldIsTheIdentityOnGpu) {
  FLEXGS_REQUIRE_CUDA();
  const TransformFieldWeights field = TransformFieldWeights::Init(TransformFieldConfig{}, 1);
  const std::vector<float> positions = RandomPositions(10'000, 3);
  std::vector<float> gpu(10'000 * kDeltaStride, 1.0f);
  ASSERT_TRUE(CudaEvalTransformField(field, TestNormalization(), positions, 0.1f, absl::MakeSpan(gpu)).ok());
  for (size_t i = 0; i < gpu.size(); ++i) ASSERT_EQ(gpu[i], 0.0f) << i;
}

TEST(ElasticCudaTest, RejectsInvalidWeightsAndMissingState) {
  FLEXGS_REQUIRE_CUDA();
  auto evaluator = CudaElasticEvaluator::Create();
  ASSERT_TRUE(evaluator.ok()) << evaluator.status();
  std::vector<float> delta(3);
  EXPECT_EQ((*evaluator)->Scores(0.1f, absl::MakeSpan(delta)).code(), absl::StatusCode::kFailedPrecondition);
  GsNetWeights net = GsNetWeights::Init(1);
  net.head.weight[3] = std::nanf("");
  const absl::Status s = (*evaluator)->SetGsNet(net);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("gsnet.head.weight"));
  std::vector<float> positions = {0, 0, 0};
  std::vector<float> deltas(kDeltaStride);
  EXPECT_EQ((*evaluator)->EvalField(TestNormalization(), positions, 0.1f, absl::MakeSpan(deltas)).code(),
            absl::StatusCode::kFailedPrecondition);
}

#else

TEST(ElasticCudaTest, KernelsNotBuilt) {
  std::string why;
  CudaAvailable(&why);
  GTEST_SKIP() << "CUDA not available: " << why;
}

#endif

}  // namespace
}  // namespace flexgs

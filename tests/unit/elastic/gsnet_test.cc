// GsNet: forward pass against an independent float64 reference, initialisation,
// validation and thread-count independence.
#include "elastic/gsnet.h"

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

// Random GsNet inputs, including the awkward ones: non-unit and zero quaternions,
// tiny and large scales, positions far from the origin.
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
    cloud.opacity_logits[i] = static_cast<float>(rng.Uniform(-4, 4));
  }
  if (n > 3) {
    for (int d = 0; d < 4; ++d) cloud.rotations[4 * 3 + d] = 0.0f;  // degenerate -> identity
  }
  return cloud;
}

// Straightforward float64 forward pass, written from the architecture description
// (not from the implementation).
std::vector<double> Linear(const DenseLayer& layer, const std::vector<double>& x, bool relu) {
  std::vector<double> y(layer.out);
  for (int o = 0; o < layer.out; ++o) {
    double acc = layer.bias[o];
    for (int i = 0; i < layer.in; ++i) acc += static_cast<double>(layer.weight[o * layer.in + i]) * x[i];
    y[o] = relu ? std::max(acc, 0.0) : acc;
  }
  return y;
}

double ReferenceDelta(const GsNetWeights& net, const GaussianCloud& cloud, size_t i, double ratio) {
  std::vector<double> inputs[4];
  for (int d = 0; d < 3; ++d) inputs[0].push_back(cloud.positions[3 * i + d]);
  double qn = 0;
  for (int d = 0; d < 4; ++d) qn += static_cast<double>(cloud.rotations[4 * i + d]) * cloud.rotations[4 * i + d];
  qn = std::sqrt(qn);
  for (int d = 0; d < 4; ++d) inputs[1].push_back(qn > 0 ? cloud.rotations[4 * i + d] / qn : (d == 0 ? 1.0 : 0.0));
  for (int d = 0; d < 3; ++d) inputs[2].push_back(std::exp(static_cast<double>(cloud.log_scales[3 * i + d])));
  inputs[3].push_back(ratio);
  std::vector<double> concat;
  for (int b = 0; b < 4; ++b) {
    const auto h = Linear(net.fc2[b], Linear(net.fc1[b], inputs[b], true), true);
    concat.insert(concat.end(), h.begin(), h.end());
  }
  const auto logits = Linear(net.head, concat, false);
  return logits[1] - logits[0];
}

size_t ParameterCount(const GsNetWeights& net) {
  size_t count = net.head.weight.size() + net.head.bias.size();
  for (int b = 0; b < 4; ++b) {
    count += net.fc1[b].weight.size() + net.fc1[b].bias.size() + net.fc2[b].weight.size() + net.fc2[b].bias.size();
  }
  return count;
}

// Every tensor of `net` (const or mutable, following `Net`).
template <typename Net>
auto AllTensors(Net& net) {
  std::vector<decltype(&net.head.weight)> t;
  for (int b = 0; b < 4; ++b) {
    t.insert(t.end(), {&net.fc1[b].weight, &net.fc1[b].bias, &net.fc2[b].weight, &net.fc2[b].bias});
  }
  t.insert(t.end(), {&net.head.weight, &net.head.bias});
  return t;
}

TEST(GsNetTest, InitHasTheReferenceParameterCountAndShapes) {
  const GsNetWeights net = GsNetWeights::Init(1);
  EXPECT_EQ(ParameterCount(net), 4962u);
  EXPECT_TRUE(net.Validate().ok()) << net.Validate();
  for (int b = 0; b < 4; ++b) {
    EXPECT_EQ(net.fc1[b].in, GsNetWeights::kInputs[b]);
    EXPECT_EQ(net.fc1[b].out, 32);
    EXPECT_EQ(net.fc2[b].in, 32);
    EXPECT_EQ(net.fc2[b].out, 32);
  }
  EXPECT_EQ(net.head.in, 128);
  EXPECT_EQ(net.head.out, 2);
}

TEST(GsNetTest, InitIsDeterministicPerSeedAndWithinTorchBounds) {
  const GsNetWeights a = GsNetWeights::Init(42), b = GsNetWeights::Init(42), c = GsNetWeights::Init(43);
  const auto ta = AllTensors(a), tb = AllTensors(b), tc = AllTensors(c);
  bool any_difference = false;
  for (size_t k = 0; k < ta.size(); ++k) {
    EXPECT_EQ(*ta[k], *tb[k]) << "tensor " << k;
    any_difference |= *ta[k] != *tc[k];
  }
  EXPECT_TRUE(any_difference) << "different seeds gave identical weights";

  // nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
  auto check = [](const DenseLayer& layer) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(layer.in));
    float max_abs = 0;
    for (float w : layer.weight) max_abs = std::max(max_abs, std::abs(w));
    for (float w : layer.bias) max_abs = std::max(max_abs, std::abs(w));
    EXPECT_LE(max_abs, bound);
    EXPECT_GT(max_abs, 0.5f * bound);  // actually spread over the range
  };
  for (int b = 0; b < 4; ++b) {
    check(a.fc1[b]);
    check(a.fc2[b]);
  }
  check(a.head);
}

TEST(GsNetTest, ForwardMatchesFloat64Reference) {
  const GsNetWeights net = GsNetWeights::Init(7);
  const GaussianCloud cloud = RandomCloud(2000, 11);
  ThreadPool pool(2);
  std::vector<float> delta(cloud.size());
  for (float ratio : {0.01f, 0.1f, 0.2f, 0.75f}) {
    GsNetScores(net, cloud, ratio, absl::MakeSpan(delta), &pool);
    double max_err = 0;
    for (size_t i = 0; i < cloud.size(); ++i) {
      const double ref = ReferenceDelta(net, cloud, i, ratio);
      ASSERT_NEAR(delta[i], ref, 1e-4 * (1.0 + std::abs(ref))) << "Gaussian " << i << " ratio " << ratio;
      max_err = std::max(max_err, std::abs(delta[i] - ref));
    }
    RecordProperty("max_abs_error_ratio_" + std::to_string(ratio), std::to_string(max_err));
  }
}

TEST(GsNetTest, ForwardMatchesReferenceWithLargeRandomWeights) {
  // Init's weights are small; scale them up so many ReLUs flip and the logits are large.
  GsNetWeights net = GsNetWeights::Init(3);
  SplitMix64 rng(99);
  for (auto* t : AllTensors(net)) {
    for (float& v : *t) v = static_cast<float>(rng.Uniform(-1, 1));
  }
  const GaussianCloud cloud = RandomCloud(700, 12);
  std::vector<float> delta(cloud.size());
  GsNetScores(net, cloud, 0.05f, absl::MakeSpan(delta), nullptr);
  for (size_t i = 0; i < cloud.size(); ++i) {
    const double ref = ReferenceDelta(net, cloud, i, 0.05);
    ASSERT_NEAR(delta[i], ref, 1e-4 * (1.0 + std::abs(ref))) << "Gaussian " << i;
  }
}

TEST(GsNetTest, QuaternionIsNormalisedAndZeroMeansIdentity) {
  const GsNetWeights net = GsNetWeights::Init(5);
  GaussianCloud cloud = RandomCloud(4, 1);
  const float q[4][4] = {{1, 0, 0, 0}, {0, 0, 0, 0}, {3.5f, 0, 0, 0}, {1e-30f, 0, 0, 0}};
  for (int i = 0; i < 4; ++i) {
    for (int d = 0; d < 3; ++d) {
      cloud.positions[3 * i + d] = 0.25f;
      cloud.log_scales[3 * i + d] = -2.0f;
    }
    for (int d = 0; d < 4; ++d) cloud.rotations[4 * i + d] = q[i][d];
  }
  std::vector<float> delta(4);
  GsNetScores(net, cloud, 0.1f, absl::MakeSpan(delta), nullptr);
  EXPECT_EQ(delta[1], delta[0]);
  EXPECT_EQ(delta[2], delta[0]);
  EXPECT_EQ(delta[3], delta[0]);
}

TEST(GsNetTest, IdenticalAcrossThreadCounts) {
  const GsNetWeights net = GsNetWeights::Init(8);
  const GaussianCloud cloud = RandomCloud(5003, 13);  // not a multiple of the block size
  std::vector<float> serial(cloud.size());
  GsNetScores(net, cloud, 0.15f, absl::MakeSpan(serial), nullptr);
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    std::vector<float> parallel(cloud.size());
    GsNetScores(net, cloud, 0.15f, absl::MakeSpan(parallel), &pool);
    EXPECT_EQ(0, std::memcmp(serial.data(), parallel.data(), serial.size() * sizeof(float))) << threads << " threads";
  }
}

TEST(GsNetTest, EmptyCloudIsFine) {
  const GsNetWeights net = GsNetWeights::Init(8);
  GaussianCloud cloud;
  std::vector<float> delta;
  GsNetScores(net, cloud, 0.1f, absl::MakeSpan(delta), nullptr);
  SUCCEED();
}

TEST(GsNetTest, ValidateNamesATensorWithTheWrongShape) {
  GsNetWeights net = GsNetWeights::Init(1);
  net.fc1[0] = DenseLayer(4, 32);  // xyz branch takes 3 inputs
  const absl::Status s = net.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("gsnet.fc1.xyz.weight has shape [32, 4], expected [32, 3]"));

  GsNetWeights short_bias = GsNetWeights::Init(1);
  short_bias.fc2[1].bias.pop_back();
  EXPECT_THAT(short_bias.Validate().message(), HasSubstr("gsnet.fc2.rotation.bias has 31 values, expected 32"));

  GsNetWeights short_weight = GsNetWeights::Init(1);
  short_weight.head.weight.resize(100);
  EXPECT_THAT(short_weight.Validate().message(), HasSubstr("gsnet.head.weight has 100 values, expected 256"));
}

TEST(GsNetTest, ValidateNamesATensorWithANonFiniteValue) {
  GsNetWeights net = GsNetWeights::Init(1);
  net.fc2[2].weight[17] = std::numeric_limits<float>::quiet_NaN();
  const absl::Status s = net.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("gsnet.fc2.scale.weight contains a non-finite value at index 17"));

  GsNetWeights inf_bias = GsNetWeights::Init(1);
  inf_bias.fc1[3].bias[5] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(inf_bias.Validate().message(), HasSubstr("gsnet.fc1.ratio.bias contains a non-finite value at index 5"));
}

TEST(GsNetDeathTest, MismatchedOutputSizeStopsLoudly) {
  const GsNetWeights net = GsNetWeights::Init(1);
  const GaussianCloud cloud = RandomCloud(10, 1);
  std::vector<float> delta(9);
  EXPECT_DEATH(GsNetScores(net, cloud, 0.1f, absl::MakeSpan(delta), nullptr), "delta.size\\(\\) != cloud.size\\(\\)");
}

}  // namespace
}  // namespace flexgs

// Backward passes of the stage-2 graph against central finite differences of float64
// reference forwards written in this file from the architecture (not from the
// implementation): GsNet (every weight and bias, raw xyz / log-scale / quaternion), the
// straight-through Gumbel mask and the mask losses, ApplyTransformDeltas, the transform
// field (every HexPlane plane of every level, trunk and head weights and biases,
// positions), the chain through both to the input attributes, and the HexPlane
// regularisers. Plus thread-count determinism and the error contract.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scene/synthetic_scene.h"
#include "train/gsnet_backward.h"
#include "train/gumbel_mask.h"
#include "train/transform_field_backward.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

constexpr double kStep = 1e-6;  // central-difference step on the float64 references

void Randomize(std::vector<float>& v, SplitMix64& rng, double lo, double hi) {
  for (float& x : v) x = static_cast<float>(rng.Uniform(lo, hi));
}

std::vector<double> ToDouble(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// Compares an analytic gradient (float, from production code) with central differences
// of `objective` over every entry of `param` (a float64 copy the objective reads).
// Tolerance: relative 1e-4 plus 1e-5 of the largest difference quotient of the tensor.
// Returns the number of entries with a non-zero difference quotient.
size_t CheckTensor(const std::string& name, const std::vector<float>& analytic, std::vector<double>& param,
                   const std::function<double()>& objective) {
  EXPECT_EQ(analytic.size(), param.size()) << name;
  std::vector<double> fd(param.size());
  double max_fd = 0;
  for (size_t i = 0; i < param.size(); ++i) {
    const double x = param[i];
    param[i] = x + kStep;
    const double plus = objective();
    param[i] = x - kStep;
    const double minus = objective();
    param[i] = x;
    fd[i] = (plus - minus) / (2 * kStep);
    max_fd = std::max(max_fd, std::abs(fd[i]));
  }
  size_t nonzero = 0, bad = 0;
  for (size_t i = 0; i < param.size(); ++i) {
    if (fd[i] != 0) ++nonzero;
    const double tol = 1e-4 * std::abs(fd[i]) + 1e-5 * max_fd + 1e-9;
    if (std::abs(analytic[i] - fd[i]) > tol && bad++ < 5) {
      ADD_FAILURE() << name << "[" << i << "]: analytic " << analytic[i] << " vs finite difference " << fd[i];
    }
  }
  EXPECT_EQ(bad, 0u) << name << ": " << bad << " of " << param.size() << " entries differ";
  return nonzero;
}

struct Layer64 {
  int in = 0, out = 0;
  std::vector<double> w, b;
};
Layer64 ToDouble(const DenseLayer& l) { return {l.in, l.out, ToDouble(l.weight), ToDouble(l.bias)}; }

std::vector<double> Apply(const Layer64& l, const std::vector<double>& x, bool relu) {
  std::vector<double> y(l.out);
  for (int o = 0; o < l.out; ++o) {
    double acc = l.b[o];
    for (int i = 0; i < l.in; ++i) acc += l.w[static_cast<size_t>(o) * l.in + i] * x[i];
    y[o] = relu ? std::max(acc, 0.0) : acc;
  }
  return y;
}

std::vector<double> Relu(std::vector<double> v) {
  for (double& x : v) x = std::max(x, 0.0);
  return v;
}

// Raw attributes in float64.
struct Attrs64 {
  std::vector<double> pos, ls, rot;
};
Attrs64 ToDouble(const GaussianCloud& c) {
  return {ToDouble(c.positions), ToDouble(c.log_scales), ToDouble(c.rotations)};
}

// normalize(q), or the identity for a (near-)zero quaternion, as the forward code.
std::array<double, 4> Unit(const double* q) {
  const double n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  if (!(n > 1e-12)) return {1, 0, 0, 0};
  return {q[0] / n, q[1] / n, q[2] / n, q[3] / n};
}

GaussianCloud RandomCloud(size_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  GaussianCloud c;
  c.Resize(n);
  Randomize(c.positions, rng, -2, 2);
  Randomize(c.log_scales, rng, -1.5, 0.5);
  Randomize(c.rotations, rng, -1, 1);
  Randomize(c.opacity_logits, rng, -2, 2);
  return c;
}

// ============================================================================
// GsNet

struct GsNet64 {
  std::array<Layer64, 4> fc1, fc2;
  Layer64 head;
};
GsNet64 ToDouble(const GsNetWeights& n) {
  GsNet64 d;
  for (int b = 0; b < 4; ++b) {
    d.fc1[b] = ToDouble(n.fc1[b]);
    d.fc2[b] = ToDouble(n.fc2[b]);
  }
  d.head = ToDouble(n.head);
  return d;
}

// Every tensor, named, in one order for the float and the float64 network.
template <typename Net, typename Fn>
void ForEachTensor(Net& net, Fn fn) {
  for (int b = 0; b < 4; ++b) {
    const std::string branch = GsNetWeights::kBranchNames[b];
    fn("fc1." + branch + ".weight", net.fc1[b].weight);
    fn("fc1." + branch + ".bias", net.fc1[b].bias);
    fn("fc2." + branch + ".weight", net.fc2[b].weight);
    fn("fc2." + branch + ".bias", net.fc2[b].bias);
  }
  fn("head.weight", net.head.weight);
  fn("head.bias", net.head.bias);
}
template <typename Fn>
void ForEachTensor64(GsNet64& net, Fn fn) {
  for (int b = 0; b < 4; ++b) {
    const std::string branch = GsNetWeights::kBranchNames[b];
    fn("fc1." + branch + ".weight", net.fc1[b].w);
    fn("fc1." + branch + ".bias", net.fc1[b].b);
    fn("fc2." + branch + ".weight", net.fc2[b].w);
    fn("fc2." + branch + ".bias", net.fc2[b].b);
  }
  fn("head.weight", net.head.w);
  fn("head.bias", net.head.b);
}

// (l0, l1) of Gaussian i: branches on raw xyz, normalize(q), exp(log_scale), e.
std::array<double, 2> ReferenceLogits(const GsNet64& net, const Attrs64& a, size_t i, double ratio) {
  std::vector<double> in[4];
  in[0] = {a.pos[3 * i], a.pos[3 * i + 1], a.pos[3 * i + 2]};
  const auto u = Unit(&a.rot[4 * i]);
  in[1] = {u[0], u[1], u[2], u[3]};
  in[2] = {std::exp(a.ls[3 * i]), std::exp(a.ls[3 * i + 1]), std::exp(a.ls[3 * i + 2])};
  in[3] = {ratio};
  std::vector<double> concat;
  for (int b = 0; b < 4; ++b) {
    const auto h = Apply(net.fc2[b], Apply(net.fc1[b], in[b], true), true);
    concat.insert(concat.end(), h.begin(), h.end());
  }
  const auto l = Apply(net.head, concat, false);
  return {l[0], l[1]};
}

double GsNetObjective(const GsNet64& net, const Attrs64& a, double ratio, const std::vector<float>& g) {
  double sum = 0;
  for (size_t i = 0; i < g.size() / 2; ++i) {
    const auto l = ReferenceLogits(net, a, i, ratio);
    sum += g[2 * i] * l[0] + g[2 * i + 1] * l[1];
  }
  return sum;
}

// Weights spread wider than Init's so many ReLUs are off and every term matters.
GsNetWeights RandomNet(uint64_t seed) {
  GsNetWeights net = GsNetWeights::Init(seed);
  SplitMix64 rng(seed + 100);
  ForEachTensor(net, [&](const std::string&, std::vector<float>& t) { Randomize(t, rng, -0.6, 0.6); });
  return net;
}

TEST(GsNetBackwardTest, LogitsMatchGsNetScoresAndTheReference) {
  const GsNetWeights net = RandomNet(1);
  const GaussianCloud cloud = RandomCloud(600, 2);
  std::vector<float> logits(2 * cloud.size()), delta(cloud.size());
  ThreadPool pool(2);
  ASSERT_TRUE(GsNetLogits(net, cloud, 0.15f, absl::MakeSpan(logits), &pool).ok());
  GsNetScores(net, cloud, 0.15f, absl::MakeSpan(delta), &pool);
  const GsNet64 ref = ToDouble(net);
  const Attrs64 a = ToDouble(cloud);
  for (size_t i = 0; i < cloud.size(); ++i) {
    ASSERT_NEAR(logits[2 * i + 1] - logits[2 * i], delta[i], 1e-5 * (1 + std::abs(delta[i]))) << i;
    const auto l = ReferenceLogits(ref, a, i, 0.15f);
    ASSERT_NEAR(logits[2 * i], l[0], 1e-4 * (1 + std::abs(l[0]))) << i;
    ASSERT_NEAR(logits[2 * i + 1], l[1], 1e-4 * (1 + std::abs(l[1]))) << i;
  }
}

TEST(GsNetBackwardTest, MatchesFiniteDifferencesForEveryWeightAndInput) {
  const GsNetWeights net = RandomNet(3);
  GaussianCloud cloud = RandomCloud(7, 4);
  const float ratio = 0.1f;
  SplitMix64 rng(5);
  std::vector<float> g(2 * cloud.size());
  Randomize(g, rng, -1, 1);

  GsNetWeights grad = ZerosLike(net);
  std::vector<float> gp(3 * cloud.size()), gs(3 * cloud.size()), gq(4 * cloud.size());
  ASSERT_TRUE(
      GsNetBackward(net, cloud, ratio, g, &grad, {absl::MakeSpan(gp), absl::MakeSpan(gs), absl::MakeSpan(gq)}, nullptr)
          .ok());

  GsNet64 ref = ToDouble(net);
  Attrs64 a = ToDouble(cloud);
  auto objective = [&] { return GsNetObjective(ref, a, ratio, g); };
  std::vector<std::pair<std::string, const std::vector<float>*>> analytic;
  ForEachTensor(grad, [&](const std::string& name, std::vector<float>& t) { analytic.emplace_back(name, &t); });
  size_t k = 0;
  ForEachTensor64(ref, [&](const std::string& name, std::vector<double>& t) {
    ASSERT_EQ(analytic[k].first, name);
    const size_t nonzero = CheckTensor("gsnet." + name, *analytic[k++].second, t, objective);
    // Every tensor really takes part (the ratio branch included), so a zero gradient would show.
    EXPECT_GE(nonzero, t.size() / 5) << name;
  });
  EXPECT_GT(CheckTensor("positions", gp, a.pos, objective), 10u);
  EXPECT_GT(CheckTensor("log_scales", gs, a.ls, objective), 10u);
  EXPECT_GT(CheckTensor("rotations", gq, a.rot, objective), 15u);
}

TEST(GsNetBackwardTest, DegenerateQuaternionGetsNoGradientAndGradientsAccumulate) {
  const GsNetWeights net = RandomNet(6);
  GaussianCloud cloud = RandomCloud(3, 7);
  for (int k = 0; k < 4; ++k) cloud.rotations[4 + k] = 0.0f;  // Gaussian 1: fed as the identity
  std::vector<float> g = {0.3f, -0.7f, 1.1f, 0.4f, -0.2f, 0.9f};
  GsNetWeights grad = ZerosLike(net);
  std::vector<float> gq(12, 0.0f), gp(9, 0.0f);
  ASSERT_TRUE(GsNetBackward(net, cloud, 0.05f, g, &grad, {absl::MakeSpan(gp), {}, absl::MakeSpan(gq)}, nullptr).ok());
  for (int k = 0; k < 4; ++k) EXPECT_EQ(gq[4 + k], 0.0f);
  EXPECT_NE(gq[0], 0.0f);
  const GsNetWeights once = grad;
  const std::vector<float> gp_once = gp;
  ASSERT_TRUE(GsNetBackward(net, cloud, 0.05f, g, &grad, {absl::MakeSpan(gp), {}, {}}, nullptr).ok());
  for (size_t i = 0; i < gp.size(); ++i) EXPECT_EQ(gp[i], 2 * gp_once[i]);
  for (size_t i = 0; i < grad.head.weight.size(); ++i) EXPECT_EQ(grad.head.weight[i], 2 * once.head.weight[i]);
}

TEST(GsNetBackwardTest, IdenticalAcrossThreadCounts) {
  const GsNetWeights net = RandomNet(8);
  const GaussianCloud cloud = RandomCloud(20011, 9);  // two reduction passes, ragged last block
  SplitMix64 rng(10);
  std::vector<float> g(2 * cloud.size());
  Randomize(g, rng, -1, 1);
  auto run = [&](ThreadPool* pool) {
    GsNetWeights grad = ZerosLike(net);
    std::vector<float> inputs(10 * cloud.size());
    const size_t n = cloud.size();
    EXPECT_TRUE(GsNetBackward(net, cloud, 0.2f, g, &grad,
                              {absl::MakeSpan(inputs).subspan(0, 3 * n), absl::MakeSpan(inputs).subspan(3 * n, 3 * n),
                               absl::MakeSpan(inputs).subspan(6 * n, 4 * n)},
                              pool)
                    .ok());
    ForEachTensor(grad,
                  [&](const std::string&, std::vector<float>& t) { inputs.insert(inputs.end(), t.begin(), t.end()); });
    return inputs;
  };
  const std::vector<float> serial = run(nullptr);
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    const std::vector<float> parallel = run(&pool);
    ASSERT_EQ(serial.size(), parallel.size());
    EXPECT_EQ(0, std::memcmp(serial.data(), parallel.data(), serial.size() * sizeof(float))) << threads << " threads";
  }
}

TEST(GsNetBackwardTest, ErrorContract) {
  const GsNetWeights net = RandomNet(1);
  const GaussianCloud cloud = RandomCloud(4, 1);
  GsNetWeights grad = ZerosLike(net);
  std::vector<float> g(8), short_g(7), logits(7), bad_span(11);
  EXPECT_THAT(GsNetBackward(net, cloud, 0.1f, short_g, &grad, {}, nullptr).message(), HasSubstr("grad_logits"));
  EXPECT_EQ(GsNetBackward(net, cloud, 0.1f, g, nullptr, {}, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(GsNetBackward(net, cloud, 0.1f, g, &grad, {absl::MakeSpan(bad_span), {}, {}}, nullptr).message(),
              HasSubstr("grad_inputs.positions"));
  GsNetWeights wrong = ZerosLike(net);
  wrong.fc1[0] = DenseLayer(4, 32);
  EXPECT_THAT(GsNetBackward(net, cloud, 0.1f, g, &wrong, {}, nullptr).message(), HasSubstr("grad_net.fc1.xyz"));
  EXPECT_EQ(GsNetLogits(net, cloud, 0.1f, absl::MakeSpan(logits), nullptr).code(), absl::StatusCode::kInvalidArgument);
  GaussianCloud empty;
  GsNetWeights grad0 = ZerosLike(net);
  EXPECT_TRUE(GsNetBackward(net, empty, 0.1f, {}, &grad0, {}, nullptr).ok());
  EXPECT_EQ(grad0.head.weight, ZerosLike(net).head.weight);
}

// ============================================================================
// Straight-through Gumbel mask and mask losses

double Sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

TEST(GumbelMaskTest, IsTheHardArgmaxOfNoisyLogitsWithSoftmaxProbability) {
  SplitMix64 rng(11);
  const size_t n = 5000;
  std::vector<float> logits(2 * n), mask(n), soft(n);
  Randomize(logits, rng, -3, 3);
  ASSERT_TRUE(GumbelHardMask(logits, 0.7, 1234, absl::MakeSpan(mask), absl::MakeSpan(soft), nullptr).ok());
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    const double z0 = logits[2 * i] + GumbelNoise(1234, i, 0), z1 = logits[2 * i + 1] + GumbelNoise(1234, i, 1);
    ASSERT_EQ(mask[i], z1 > z0 ? 1.0f : 0.0f) << i;
    ASSERT_NEAR(soft[i], Sigmoid((z1 - z0) / 0.7), 1e-6) << i;
    ASSERT_EQ(mask[i], soft[i] > 0.5f ? 1.0f : 0.0f) << i;  // hard = argmax of the soft sample
    kept += mask[i] == 1.0f;
  }
  EXPECT_GT(kept, n / 4);
  EXPECT_LT(kept, 3 * n / 4);
}

TEST(GumbelMaskTest, KeepFrequencyIsSigmoidOfTheMarginWhateverTheTemperature) {
  const size_t n = 100000;
  for (double margin : {-2.0, 0.0, 1.5}) {
    std::vector<float> logits(2 * n);
    for (size_t i = 0; i < n; ++i) {
      logits[2 * i] = 0.25f;
      logits[2 * i + 1] = static_cast<float>(0.25 + margin);
    }
    std::vector<float> mask(n), soft(n), mask_cold(n);
    ASSERT_TRUE(GumbelHardMask(logits, 1.0, 77, absl::MakeSpan(mask), absl::MakeSpan(soft), nullptr).ok());
    ASSERT_TRUE(GumbelHardMask(logits, 0.1, 77, absl::MakeSpan(mask_cold), absl::MakeSpan(soft), nullptr).ok());
    EXPECT_EQ(mask, mask_cold) << "tau must only shape the gradient";
    double kept = 0;
    for (float m : mask) kept += m;
    const double p = Sigmoid(margin), sigma = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(kept / n, p, 5 * sigma) << "margin " << margin;
  }
}

TEST(GumbelMaskTest, DeterministicPerSeedAndIdenticalAcrossThreadCounts) {
  SplitMix64 rng(12);
  const size_t n = 30001;
  std::vector<float> logits(2 * n);
  Randomize(logits, rng, -1, 1);
  std::vector<float> m1(n), s1(n), m2(n), s2(n), m3(n), s3(n);
  ASSERT_TRUE(GumbelHardMask(logits, 1.0, 5, absl::MakeSpan(m1), absl::MakeSpan(s1), nullptr).ok());
  ASSERT_TRUE(GumbelHardMask(logits, 1.0, 6, absl::MakeSpan(m3), absl::MakeSpan(s3), nullptr).ok());
  EXPECT_NE(m1, m3);
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    ASSERT_TRUE(GumbelHardMask(logits, 1.0, 5, absl::MakeSpan(m2), absl::MakeSpan(s2), &pool).ok());
    EXPECT_EQ(m1, m2) << threads;
    EXPECT_EQ(0, std::memcmp(s1.data(), s2.data(), n * sizeof(float))) << threads;
  }
  // The noise is a pure function of (seed, index, class) and looks like Gumbel(0, 1):
  // mean = Euler-Mascheroni constant, variance = pi^2 / 6.
  EXPECT_EQ(GumbelNoise(5, 17, 1), GumbelNoise(5, 17, 1));
  EXPECT_NE(GumbelNoise(5, 17, 1), GumbelNoise(5, 17, 0));
  double mean = 0, sq = 0;
  const int draws = 200000;
  for (int i = 0; i < draws; ++i) {
    const double g = GumbelNoise(99, i / 2, i % 2);
    mean += g;
    sq += g * g;
  }
  mean /= draws;
  EXPECT_NEAR(mean, 0.5772156649, 0.01);
  EXPECT_NEAR(sq / draws - mean * mean, M_PI * M_PI / 6, 0.03);
}

TEST(GumbelMaskTest, StraightThroughGradientIsTheSoftSampleGradient) {
  SplitMix64 rng(13);
  const size_t n = 9;
  std::vector<float> logits(2 * n), gm(n), mask(n), soft(n), grad(2 * n);
  Randomize(logits, rng, -2, 2);
  Randomize(gm, rng, -1, 1);
  for (double tau : {1.0, 0.5}) {
    ASSERT_TRUE(GumbelHardMask(logits, tau, 42, absl::MakeSpan(mask), absl::MakeSpan(soft), nullptr).ok());
    ASSERT_TRUE(GumbelHardMaskBackward(soft, tau, gm, absl::MakeSpan(grad)).ok());
    // L = sum_i gm_i y1_i with y1 = softmax((l + g) / tau)[1], the noise held fixed.
    std::vector<double> l = ToDouble(logits);
    auto objective = [&] {
      double s = 0;
      for (size_t i = 0; i < n; ++i) {
        s += gm[i] * Sigmoid(((l[2 * i + 1] + GumbelNoise(42, i, 1)) - (l[2 * i] + GumbelNoise(42, i, 0))) / tau);
      }
      return s;
    };
    EXPECT_EQ(CheckTensor("logits (tau " + std::to_string(tau) + ")", grad, l, objective), 2 * n);
  }
}

TEST(GumbelMaskTest, PseudoLabelsUseAStrictThresholdAtTheReferenceIndex) {
  const std::vector<float> gi = {5, 0, 3, 0, 1, 6, 0, 4, 2, 0};  // sorted: 0 0 0 0 1 2 3 4 5 6
  // e = 0.3: k = floor(0.7 * 9) = 6 -> threshold 3 -> keep GI > 3.
  EXPECT_EQ(GiPseudoLabels(gi, 0.3), (std::vector<float>{1, 0, 0, 0, 0, 1, 0, 1, 0, 0}));
  // e = 0.5: k = floor(4.5) = 4 -> threshold 1 -> keep GI > 1.
  EXPECT_EQ(GiPseudoLabels(gi, 0.5), (std::vector<float>{1, 0, 1, 0, 0, 1, 0, 1, 1, 0}));
  // e = 0.8: k = floor(1.8) = 1 -> threshold 0: the tied zeros are all dropped, fewer than eN kept.
  EXPECT_EQ(GiPseudoLabels(gi, 0.8), (std::vector<float>{1, 0, 1, 0, 1, 1, 0, 1, 1, 0}));
  EXPECT_EQ(GiPseudoLabels(std::vector<float>(6, 0.0f), 0.5), std::vector<float>(6, 0.0f));
}

TEST(GumbelMaskTest, MaskLossMatchesHandComputation) {
  const std::vector<float> mask = {1, 0, 1, 1}, labels = {1, 1, 0, 1};
  std::vector<float> grad(4);
  const auto loss = SelectionMaskLoss(mask, labels, 0.5, {}, absl::MakeSpan(grad));
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_DOUBLE_EQ(loss->imitation, 0.5);  // (0 + 1 + 1 + 0) / 4
  EXPECT_DOUBLE_EQ(loss->fraction, 0.25);  // |3/4 - 1/2|
  EXPECT_DOUBLE_EQ(loss->value, 0.5 + 0.01 * 0.25);
  // 1.0 * sign(M - P) / 4 + 0.01 * sign(3/4 - 1/2) / 4
  EXPECT_FLOAT_EQ(grad[0], 0.0025f);
  EXPECT_FLOAT_EQ(grad[1], -0.2475f);
  EXPECT_FLOAT_EQ(grad[2], 0.2525f);
  EXPECT_FLOAT_EQ(grad[3], 0.0025f);
  // Exactly on target: sign(0) = 0, no fraction gradient.
  const auto on_target = SelectionMaskLoss(mask, mask, 0.75, {}, absl::MakeSpan(grad));
  ASSERT_TRUE(on_target.ok());
  EXPECT_EQ(on_target->value, 0.0);
  EXPECT_EQ(grad, std::vector<float>(4, 0.0f));
  EXPECT_EQ(SelectionMaskLoss(mask, {1, 0}, 0.5, {}, absl::MakeSpan(grad)).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> bad(1);
  EXPECT_EQ(GumbelHardMask(labels, 0.0, 1, absl::MakeSpan(bad), absl::MakeSpan(bad), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

// ============================================================================
// Transform field

TransformFieldConfig SmallConfig() {
  TransformFieldConfig c;
  c.channels = 3;
  c.base_resolution = 4;
  c.multires = {1, 2};
  c.ratio_resolution = 5;
  c.hidden = 10;
  return c;
}

FieldNormalization TestNormalization() {
  FieldNormalization norm;
  norm.aabb_min = {-2.0f, -1.0f, 0.5f};
  norm.aabb_max = {2.0f, 3.0f, 1.5f};
  return norm;
}

TransformFieldWeights RandomField(const TransformFieldConfig& config, uint64_t seed) {
  TransformFieldWeights f = TransformFieldWeights::Init(config, seed);
  SplitMix64 rng(seed ^ 0x5151);
  for (auto& level : f.levels) {
    for (auto& plane : level.planes) Randomize(plane, rng, -1.2, 1.2);
  }
  Randomize(f.trunk.weight, rng, -0.8, 0.8);
  Randomize(f.trunk.bias, rng, -0.3, 0.3);
  for (int h = 0; h < 3; ++h) {
    Randomize(f.fc1[h].weight, rng, -0.6, 0.6);
    Randomize(f.fc1[h].bias, rng, -0.3, 0.3);
    Randomize(f.fc2[h].weight, rng, -0.6, 0.6);
    Randomize(f.fc2[h].bias, rng, -0.3, 0.3);
  }
  return f;
}

// Positions strictly inside the box (away from texel-exact values), except that the
// last two leave it on one axis each, where the border clamp gives a zero gradient.
std::vector<float> TestPositions(size_t n, const FieldNormalization& norm, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> p(3 * n);
  for (size_t i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) {
      const double lo = norm.aabb_min[d], hi = norm.aabb_max[d], pad = 0.03 * (hi - lo);
      p[3 * i + d] = static_cast<float>(rng.Uniform(lo + pad, hi - pad));
    }
  }
  if (n >= 3) {
    p[3 * (n - 1) + 0] = norm.aabb_max[0] + 0.7f;
    p[3 * (n - 2) + 2] = norm.aabb_min[2] - 0.4f;
  }
  return p;
}

struct Field64 {
  TransformFieldConfig config;
  std::vector<std::array<std::vector<double>, 6>> planes;
  std::vector<std::array<int, 2>> res;  // (spatial, ratio) per level
  Layer64 trunk;
  std::array<Layer64, 3> fc1, fc2;
};
Field64 ToDouble(const TransformFieldWeights& f) {
  Field64 d;
  d.config = f.config;
  for (const HexPlaneLevel& level : f.levels) {
    std::array<std::vector<double>, 6> planes;
    for (int p = 0; p < 6; ++p) planes[p] = ToDouble(level.planes[p]);
    d.planes.push_back(std::move(planes));
    d.res.push_back({level.spatial_resolution, level.ratio_resolution});
  }
  d.trunk = ToDouble(f.trunk);
  for (int h = 0; h < 3; ++h) {
    d.fc1[h] = ToDouble(f.fc1[h]);
    d.fc2[h] = ToDouble(f.fc2[h]);
  }
  return d;
}

// torch.grid_sample(align_corners=True, padding_mode="border") of channel c of a
// [C, rb, ra] plane at normalised (ca, cb).
double GridSample(const std::vector<double>& plane, int ra, int rb, int c, double ca, double cb) {
  auto unnormalize = [](double coord, int res) {
    return std::clamp((coord + 1.0) / 2.0 * (res - 1), 0.0, static_cast<double>(res - 1));
  };
  const double x = unnormalize(ca, ra), y = unnormalize(cb, rb);
  const int x0 = static_cast<int>(std::floor(x)), y0 = static_cast<int>(std::floor(y));
  const int x1 = std::min(x0 + 1, ra - 1), y1 = std::min(y0 + 1, rb - 1);
  const double wx = x - x0, wy = y - y0;
  auto at = [&](int yy, int xx) { return plane[static_cast<size_t>(c) * ra * rb + static_cast<size_t>(yy) * ra + xx]; };
  return (1 - wx) * (1 - wy) * at(y0, x0) + wx * (1 - wy) * at(y0, x1) + (1 - wx) * wy * at(y1, x0) +
         wx * wy * at(y1, x1);
}

// The 10 deltas (dX, ds, dq) of one position.
std::vector<double> ReferenceDeltas(const Field64& f, const FieldNormalization& norm, const double* p, double ratio) {
  double coord[4];
  for (int d = 0; d < 3; ++d) {
    const double lo = norm.aabb_min[d], hi = norm.aabb_max[d];
    coord[d] = hi > lo ? 2.0 * (p[d] - lo) / (hi - lo) - 1.0 : 0.0;
  }
  coord[3] = ratio * norm.ratio_scale + norm.ratio_offset;
  std::vector<double> features;
  for (size_t l = 0; l < f.planes.size(); ++l) {
    for (int c = 0; c < f.config.channels; ++c) {
      double prod = 1.0;
      for (int pl = 0; pl < 6; ++pl) {
        const int a = kPlaneAxes[pl][0], b = kPlaneAxes[pl][1];
        const int ra = a == 3 ? f.res[l][1] : f.res[l][0], rb = b == 3 ? f.res[l][1] : f.res[l][0];
        prod *= GridSample(f.planes[l][pl], ra, rb, c, coord[a], coord[b]);
      }
      features.push_back(prod);
    }
  }
  const std::vector<double> trunk = Relu(Apply(f.trunk, features, false));
  std::vector<double> out;
  for (int h = 0; h < 3; ++h) {
    const auto head = Apply(f.fc2[h], Apply(f.fc1[h], trunk, true), false);
    out.insert(out.end(), head.begin(), head.end());
  }
  return out;
}

// position + dX, log_scale + ds, normalize(normalize(q) + dq) (or normalize(q) when the
// sum vanishes), as ApplyTransformDeltas.
void ReferenceApply(const double* d, const double* pos, const double* ls, const double* q, double* out) {
  for (int k = 0; k < 3; ++k) {
    out[k] = pos[k] + d[k];
    out[3 + k] = ls[k] + d[3 + k];
  }
  const auto u = Unit(q);
  double s[4], n = 0;
  for (int k = 0; k < 4; ++k) {
    s[k] = u[k] + d[6 + k];
    n += s[k] * s[k];
  }
  n = std::sqrt(n);
  for (int k = 0; k < 4; ++k) out[6 + k] = n > 1e-12 ? s[k] / n : u[k];
}

TEST(TransformFieldBackwardTest, MatchesFiniteDifferencesForEveryPlaneWeightAndPosition) {
  const TransformFieldConfig config = SmallConfig();
  const TransformFieldWeights field = RandomField(config, 21);
  ASSERT_TRUE(field.Validate().ok()) << field.Validate();
  const FieldNormalization norm = TestNormalization();
  const size_t m = 9;
  const std::vector<float> positions = TestPositions(m, norm, 22);
  const float ratio = 0.37f;  // ratio coordinate between texels
  SplitMix64 rng(23);
  std::vector<float> g(m * kDeltaStride);
  Randomize(g, rng, -1, 1);

  // Production forward agrees with the reference (so the FD checks the right function).
  Field64 ref = ToDouble(field);
  std::vector<double> pos = ToDouble(positions);
  std::vector<float> deltas(m * kDeltaStride);
  EvalTransformField(field, norm, positions, ratio, absl::MakeSpan(deltas), nullptr);
  for (size_t i = 0; i < m; ++i) {
    const auto d = ReferenceDeltas(ref, norm, &pos[3 * i], ratio);
    for (int k = 0; k < kDeltaStride; ++k) ASSERT_NEAR(deltas[i * kDeltaStride + k], d[k], 1e-4 * (1 + std::abs(d[k])));
  }

  TransformFieldWeights grad = ZerosLike(field);
  std::vector<float> grad_pos(3 * m, 0.0f);
  ASSERT_TRUE(TransformFieldBackward(field, norm, positions, ratio, g, &grad, absl::MakeSpan(grad_pos), nullptr).ok());

  auto objective = [&] {
    double s = 0;
    for (size_t i = 0; i < m; ++i) {
      const auto d = ReferenceDeltas(ref, norm, &pos[3 * i], ratio);
      for (int k = 0; k < kDeltaStride; ++k) s += g[i * kDeltaStride + k] * d[k];
    }
    return s;
  };
  for (size_t l = 0; l < field.levels.size(); ++l) {
    for (int p = 0; p < 6; ++p) {
      const std::string name = "level" + std::to_string(l) + "." + kPlaneNames[p];
      const size_t nonzero = CheckTensor(name, grad.levels[l].planes[p], ref.planes[l][p], objective);
      // Spatial planes: every Gaussian touches 4 texels; ratio planes only 2 rows.
      EXPECT_GE(nonzero, 2u * config.channels) << name;
    }
  }
  EXPECT_GT(CheckTensor("trunk.weight", grad.trunk.weight, ref.trunk.w, objective), ref.trunk.w.size() / 3);
  EXPECT_GT(CheckTensor("trunk.bias", grad.trunk.bias, ref.trunk.b, objective), 0u);
  for (int h = 0; h < 3; ++h) {
    const std::string head = TransformFieldWeights::kHeadNames[h];
    EXPECT_GT(CheckTensor("fc1." + head + ".weight", grad.fc1[h].weight, ref.fc1[h].w, objective), 0u);
    EXPECT_GT(CheckTensor("fc1." + head + ".bias", grad.fc1[h].bias, ref.fc1[h].b, objective), 0u);
    EXPECT_GT(CheckTensor("fc2." + head + ".weight", grad.fc2[h].weight, ref.fc2[h].w, objective), 0u);
    EXPECT_GT(CheckTensor("fc2." + head + ".bias", grad.fc2[h].bias, ref.fc2[h].b, objective), 0u);
  }
  EXPECT_GE(CheckTensor("positions", grad_pos, pos, objective), 3 * m - 2);
  // Outside the box on one axis: clamped, so exactly no gradient along it.
  EXPECT_EQ(grad_pos[3 * (m - 1) + 0], 0.0f);
  EXPECT_EQ(grad_pos[3 * (m - 2) + 2], 0.0f);
}

TEST(TransformFieldBackwardTest, SingleTexelAxesAndDegenerateBoxes) {
  TransformFieldConfig config = SmallConfig();
  config.base_resolution = 1;  // resolutions 1 and 2
  config.ratio_resolution = 1;
  const TransformFieldWeights field = RandomField(config, 24);
  FieldNormalization norm = TestNormalization();
  norm.aabb_min[1] = norm.aabb_max[1] = 0.5f;  // flat along y: samples the centre, no y gradient
  const size_t m = 5;
  const std::vector<float> positions = TestPositions(m, norm, 25);
  SplitMix64 rng(26);
  std::vector<float> g(m * kDeltaStride);
  Randomize(g, rng, -1, 1);
  TransformFieldWeights grad = ZerosLike(field);
  std::vector<float> grad_pos(3 * m, 0.0f);
  ASSERT_TRUE(TransformFieldBackward(field, norm, positions, 0.6f, g, &grad, absl::MakeSpan(grad_pos), nullptr).ok());
  Field64 ref = ToDouble(field);
  std::vector<double> pos = ToDouble(positions);
  auto objective = [&] {
    double s = 0;
    for (size_t i = 0; i < m; ++i) {
      const auto d = ReferenceDeltas(ref, norm, &pos[3 * i], 0.6);
      for (int k = 0; k < kDeltaStride; ++k) s += g[i * kDeltaStride + k] * d[k];
    }
    return s;
  };
  for (size_t l = 0; l < field.levels.size(); ++l) {
    for (int p = 0; p < 6; ++p) {
      CheckTensor("level" + std::to_string(l) + "." + kPlaneNames[p], grad.levels[l].planes[p], ref.planes[l][p],
                  objective);
    }
  }
  CheckTensor("positions", grad_pos, pos, objective);
  for (size_t i = 0; i < m; ++i) EXPECT_EQ(grad_pos[3 * i + 1], 0.0f) << i;
}

TEST(ApplyTransformDeltasBackwardTest, MatchesFiniteDifferences) {
  const size_t m = 6;
  GaussianCloud input = RandomCloud(m, 31);
  for (int k = 0; k < 4; ++k) input.rotations[4 * 5 + k] = 0.0f;  // degenerate: identity, no gradient
  SplitMix64 rng(32);
  std::vector<float> deltas(m * kDeltaStride), gp(3 * m), gs(3 * m), gq(4 * m);
  Randomize(deltas, rng, -0.5, 0.5);
  Randomize(gp, rng, -1, 1);
  Randomize(gs, rng, -1, 1);
  Randomize(gq, rng, -1, 1);

  // The reference apply reproduces ApplyTransformDeltas.
  GaussianCloud applied = input;
  ApplyTransformDeltas(deltas, applied);
  Attrs64 a = ToDouble(input);
  std::vector<double> d = ToDouble(deltas);
  for (size_t i = 0; i < m; ++i) {
    double out[10];
    ReferenceApply(&d[10 * i], &a.pos[3 * i], &a.ls[3 * i], &a.rot[4 * i], out);
    for (int k = 0; k < 3; ++k) ASSERT_NEAR(applied.positions[3 * i + k], out[k], 1e-6);
    for (int k = 0; k < 4; ++k) ASSERT_NEAR(applied.rotations[4 * i + k], out[6 + k], 1e-6);
  }

  std::vector<float> grad_deltas(m * kDeltaStride);
  std::vector<float> gin_p(3 * m, 0.0f), gin_s(3 * m, 0.0f), gin_q(4 * m, 0.0f);
  ASSERT_TRUE(ApplyTransformDeltasBackward(input, deltas, {gp, gs, gq}, absl::MakeSpan(grad_deltas),
                                           {absl::MakeSpan(gin_p), absl::MakeSpan(gin_s), absl::MakeSpan(gin_q)})
                  .ok());
  auto objective = [&] {
    double s = 0;
    for (size_t i = 0; i < m; ++i) {
      double out[10];
      ReferenceApply(&d[10 * i], &a.pos[3 * i], &a.ls[3 * i], &a.rot[4 * i], out);
      for (int k = 0; k < 3; ++k) s += gp[3 * i + k] * out[k] + gs[3 * i + k] * out[3 + k];
      for (int k = 0; k < 4; ++k) s += gq[4 * i + k] * out[6 + k];
    }
    return s;
  };
  EXPECT_EQ(CheckTensor("deltas", grad_deltas, d, objective), 10 * m);
  CheckTensor("positions", gin_p, a.pos, objective);
  CheckTensor("log_scales", gin_s, a.ls, objective);
  // Rotations: central differences around the zero quaternion are meaningless (it jumps
  // to a unit axis), so check the others and that the degenerate one gets exactly 0.
  std::vector<double> rot5(a.rot.begin(), a.rot.begin() + 20);
  std::vector<float> gin_q5(gin_q.begin(), gin_q.begin() + 20);
  auto objective5 = [&] {
    std::copy(rot5.begin(), rot5.end(), a.rot.begin());
    return objective();
  };
  EXPECT_EQ(CheckTensor("rotations", gin_q5, rot5, objective5), 20u);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(gin_q[20 + k], 0.0f);
}

TEST(ApplyTransformDeltasBackwardTest, CancellingRotationDeltaHasNoGradient) {
  GaussianCloud input = RandomCloud(1, 33);
  input.rotations = {0.0f, 0.0f, 3.0f, 0.0f};
  const std::vector<float> deltas = {0.1f, 0.2f, 0.3f, 0, 0, 0, 0.0f, 0.0f, -1.0f, 0.0f};
  const std::vector<float> gp = {1, 2, 3}, gs = {4, 5, 6}, gq = {0.5f, -0.25f, 0.75f, 1.0f};
  std::vector<float> grad_deltas(10), gin_q(4, 0.0f);
  ASSERT_TRUE(ApplyTransformDeltasBackward(input, deltas, {gp, gs, gq}, absl::MakeSpan(grad_deltas),
                                           {{}, {}, absl::MakeSpan(gin_q)})
                  .ok());
  EXPECT_EQ(std::vector<float>(grad_deltas.begin() + 6, grad_deltas.end()), std::vector<float>(4, 0.0f));
  EXPECT_EQ(std::vector<float>(grad_deltas.begin(), grad_deltas.begin() + 6), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  // q' = normalize(q): dL/dq = (I - u u^T) g / |q| with u = (0, 0, 1, 0), |q| = 3.
  EXPECT_FLOAT_EQ(gin_q[0], 0.5f / 3);
  EXPECT_FLOAT_EQ(gin_q[1], -0.25f / 3);
  EXPECT_FLOAT_EQ(gin_q[2], 0.0f);
  EXPECT_FLOAT_EQ(gin_q[3], 1.0f / 3);
}

// The whole transform of the selected Gaussians: positions reach the loss through
// dX directly and through the HexPlane lookup; log-scales and rotations through the deltas.
TEST(TransformFieldBackwardTest, ChainToTheInputAttributesMatchesFiniteDifferences) {
  const TransformFieldWeights field = RandomField(SmallConfig(), 41);
  const FieldNormalization norm = TestNormalization();
  const size_t m = 6;
  GaussianCloud input = RandomCloud(m, 42);
  input.positions = TestPositions(m, norm, 43);
  const float ratio = 0.21f;
  SplitMix64 rng(44);
  std::vector<float> gp(3 * m), gs(3 * m), gq(4 * m);
  Randomize(gp, rng, -1, 1);
  Randomize(gs, rng, -1, 1);
  Randomize(gq, rng, -1, 1);

  ThreadPool pool(3);
  std::vector<float> deltas(m * kDeltaStride), grad_deltas(m * kDeltaStride);
  EvalTransformField(field, norm, input.positions, ratio, absl::MakeSpan(deltas), &pool);
  std::vector<float> gin_p(3 * m, 0.0f), gin_s(3 * m, 0.0f), gin_q(4 * m, 0.0f);
  ASSERT_TRUE(ApplyTransformDeltasBackward(input, deltas, {gp, gs, gq}, absl::MakeSpan(grad_deltas),
                                           {absl::MakeSpan(gin_p), absl::MakeSpan(gin_s), absl::MakeSpan(gin_q)})
                  .ok());
  TransformFieldWeights grad = ZerosLike(field);
  ASSERT_TRUE(
      TransformFieldBackward(field, norm, input.positions, ratio, grad_deltas, &grad, absl::MakeSpan(gin_p), &pool)
          .ok());

  const Field64 ref = ToDouble(field);
  Attrs64 a = ToDouble(input);
  auto objective = [&] {
    double s = 0;
    for (size_t i = 0; i < m; ++i) {
      const auto d = ReferenceDeltas(ref, norm, &a.pos[3 * i], ratio);
      double out[10];
      ReferenceApply(d.data(), &a.pos[3 * i], &a.ls[3 * i], &a.rot[4 * i], out);
      for (int k = 0; k < 3; ++k) s += gp[3 * i + k] * out[k] + gs[3 * i + k] * out[3 + k];
      for (int k = 0; k < 4; ++k) s += gq[4 * i + k] * out[6 + k];
    }
    return s;
  };
  EXPECT_GE(CheckTensor("positions", gin_p, a.pos, objective), 3 * m - 2);
  CheckTensor("log_scales", gin_s, a.ls, objective);
  CheckTensor("rotations", gin_q, a.rot, objective);
  // The field path really contributes: positions' gradient is not just gp.
  double diff = 0;
  for (size_t i = 0; i < gp.size(); ++i) diff += std::abs(gin_p[i] - gp[i]);
  EXPECT_GT(diff, 1e-3);
}

TEST(TransformFieldBackwardTest, IdenticalAcrossThreadCounts) {
  const TransformFieldWeights field = RandomField(SmallConfig(), 51);
  const FieldNormalization norm = TestNormalization();
  const size_t m = 20011;  // two passes, ragged last block
  SplitMix64 rng(52);
  std::vector<float> positions(3 * m), g(m * kDeltaStride);
  for (size_t i = 0; i < m; ++i) {
    for (int d = 0; d < 3; ++d) {
      positions[3 * i + d] = static_cast<float>(rng.Uniform(norm.aabb_min[d] - 0.5, norm.aabb_max[d] + 0.5));
    }
  }
  Randomize(g, rng, -1, 1);
  auto run = [&](ThreadPool* pool) {
    TransformFieldWeights grad = ZerosLike(field);
    std::vector<float> out(3 * m, 0.0f);
    EXPECT_TRUE(TransformFieldBackward(field, norm, positions, 0.1f, g, &grad, absl::MakeSpan(out), pool).ok());
    EXPECT_TRUE(HexPlaneRegularization(field, {}, &grad, pool).ok());
    for (const auto& level : grad.levels) {
      for (const auto& plane : level.planes) out.insert(out.end(), plane.begin(), plane.end());
    }
    for (const DenseLayer* l :
         {&grad.trunk, &grad.fc1[0], &grad.fc1[1], &grad.fc1[2], &grad.fc2[0], &grad.fc2[1], &grad.fc2[2]}) {
      out.insert(out.end(), l->weight.begin(), l->weight.end());
      out.insert(out.end(), l->bias.begin(), l->bias.end());
    }
    return out;
  };
  const std::vector<float> serial = run(nullptr);
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    const std::vector<float> parallel = run(&pool);
    ASSERT_EQ(serial.size(), parallel.size());
    EXPECT_EQ(0, std::memcmp(serial.data(), parallel.data(), serial.size() * sizeof(float))) << threads << " threads";
  }
}

TEST(TransformFieldBackwardTest, ErrorContract) {
  const TransformFieldWeights field = RandomField(SmallConfig(), 1);
  const std::vector<float> positions(9, 0.0f), g(30, 0.0f), short_g(29, 0.0f);
  TransformFieldWeights grad = ZerosLike(field);
  EXPECT_EQ(TransformFieldBackward(field, {}, positions, 0.1f, short_g, &grad, {}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TransformFieldBackward(field, {}, positions, 0.1f, g, nullptr, {}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  TransformFieldConfig other = SmallConfig();
  other.channels = 4;
  TransformFieldWeights wrong = ZerosLike(RandomField(other, 1));
  EXPECT_THAT(TransformFieldBackward(field, {}, positions, 0.1f, g, &wrong, {}, nullptr).message(),
              HasSubstr("grad_field"));
  TransformFieldWeights bad_plane = ZerosLike(field);
  bad_plane.levels[1].planes[4].pop_back();
  EXPECT_THAT(TransformFieldBackward(field, {}, positions, 0.1f, g, &bad_plane, {}, nullptr).message(),
              HasSubstr("grad_field.level1.ye"));
  EXPECT_TRUE(TransformFieldBackward(field, {}, {}, 0.1f, {}, &grad, {}, nullptr).ok());
  GaussianCloud one = RandomCloud(1, 1);
  std::vector<float> d(10), gd(9);
  EXPECT_EQ(
      ApplyTransformDeltasBackward(one, d, {absl::MakeConstSpan(g.data(), 3), {}, {}}, absl::MakeSpan(gd), {}).code(),
      absl::StatusCode::kInvalidArgument);
}

// ============================================================================
// HexPlane regularisers

struct Reg64 {
  double space = 0, smooth = 0, l1 = 0;
};
Reg64 ReferenceRegularizers(const Field64& f) {
  Reg64 r;
  const int C = f.config.channels;
  for (size_t l = 0; l < f.planes.size(); ++l) {
    for (int p = 0; p < 6; ++p) {
      const int a = kPlaneAxes[p][0], b = kPlaneAxes[p][1];
      const int ra = a == 3 ? f.res[l][1] : f.res[l][0], rb = b == 3 ? f.res[l][1] : f.res[l][0];
      const auto& v = f.planes[l][p];
      auto at = [&](int c, int row, int col) { return v[(static_cast<size_t>(c) * rb + row) * ra + col]; };
      double sum = 0;
      for (int c = 0; c < C; ++c) {
        for (int row = 0; row + 2 < rb; ++row) {
          for (int col = 0; col < ra; ++col) {
            const double first1 = at(c, row + 1, col) - at(c, row, col);
            const double first2 = at(c, row + 2, col) - at(c, row + 1, col);
            sum += (first2 - first1) * (first2 - first1);
          }
        }
      }
      const double smooth = rb >= 3 ? sum / (static_cast<double>(C) * (rb - 2) * ra) : 0.0;
      if (b == 3) {
        r.smooth += smooth;
        double l1 = 0;
        for (double x : v) l1 += std::abs(1 - x);
        r.l1 += l1 / v.size();
      } else {
        r.space += smooth;
      }
    }
  }
  return r;
}

TEST(HexPlaneRegularizationTest, ValuesAndGradientsMatchTheReference) {
  TransformFieldConfig config = SmallConfig();
  const TransformFieldWeights field = RandomField(config, 61);
  TransformFieldWeights with_ones = field;  // ratio planes at exactly 1 have no L1 gradient
  for (auto& level : with_ones.levels) {
    for (int p : {2, 4, 5}) std::fill(level.planes[p].begin(), level.planes[p].begin() + 7, 1.0f);
  }
  const HexPlaneRegularizerWeights w{0.3, 0.7, 0.11};  // distinct, so swapped weights show
  TransformFieldWeights grad = ZerosLike(with_ones);
  const auto reg = HexPlaneRegularization(with_ones, w, &grad, nullptr);
  ASSERT_TRUE(reg.ok()) << reg.status();
  Field64 ref = ToDouble(with_ones);
  const Reg64 r = ReferenceRegularizers(ref);
  EXPECT_NEAR(reg->space, r.space, 1e-12 * (1 + r.space));
  EXPECT_NEAR(reg->ratio_smooth, r.smooth, 1e-12 * (1 + r.smooth));
  EXPECT_NEAR(reg->ratio_l1, r.l1, 1e-12 * (1 + r.l1));
  EXPECT_NEAR(reg->value, w.plane_tv * r.space + w.time_smoothness * r.smooth + w.l1_time_planes * r.l1, 1e-12);
  auto objective = [&] {
    const Reg64 x = ReferenceRegularizers(ref);
    return w.plane_tv * x.space + w.time_smoothness * x.smooth + w.l1_time_planes * x.l1;
  };
  for (size_t l = 0; l < with_ones.levels.size(); ++l) {
    for (int p = 0; p < 6; ++p) {
      const std::string name = "reg.level" + std::to_string(l) + "." + kPlaneNames[p];
      // The first 7 entries of each ratio plane sit exactly on the |1 - x| kink, where the
      // gradient is sign(0) = 0 (torch) but a central difference is not; leave them out.
      const std::vector<float>& analytic = grad.levels[l].planes[p];
      std::vector<double>& param = ref.planes[l][p];
      std::vector<double> fd_param(param.begin() + (kPlaneAxes[p][1] == 3 ? 7 : 0), param.end());
      std::vector<float> fd_analytic(analytic.begin() + (kPlaneAxes[p][1] == 3 ? 7 : 0), analytic.end());
      const size_t offset = param.size() - fd_param.size();
      auto sub_objective = [&] {
        std::copy(fd_param.begin(), fd_param.end(), param.begin() + offset);
        return objective();
      };
      EXPECT_EQ(CheckTensor(name, fd_analytic, fd_param, sub_objective), fd_param.size());
    }
  }
  TransformFieldWeights l1_only = ZerosLike(with_ones);
  ASSERT_TRUE(HexPlaneRegularization(with_ones, {0.0, 0.0, 1.0}, &l1_only, nullptr).ok());
  for (const auto& level : l1_only.levels) {
    for (int p : {2, 4, 5}) {
      for (size_t i = 0; i < 7; ++i) EXPECT_EQ(level.planes[p][i], 0.0f) << i;
      EXPECT_NE(level.planes[p][7], 0.0f);
    }
  }
}

TEST(HexPlaneRegularizationTest, PlanesWithFewerThanThreeRowsHaveNoSmoothnessTerm) {
  TransformFieldConfig config = SmallConfig();
  config.base_resolution = 2;
  config.multires = {1};
  config.ratio_resolution = 2;
  const TransformFieldWeights field = RandomField(config, 62);
  const auto reg = HexPlaneRegularization(field, {}, nullptr, nullptr);
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ(reg->space, 0.0);
  EXPECT_EQ(reg->ratio_smooth, 0.0);
  EXPECT_GT(reg->ratio_l1, 0.0);
  // A freshly initialised field: ratio planes are exactly 1, so no L1 term at all.
  const auto fresh = HexPlaneRegularization(TransformFieldWeights::Init(SmallConfig(), 1), {}, nullptr, nullptr);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->ratio_l1, 0.0);
  EXPECT_EQ(fresh->ratio_smooth, 0.0);
  EXPECT_GT(fresh->space, 0.0);
}

}  // namespace
}  // namespace flexgs

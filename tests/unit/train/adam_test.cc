// Adam and the reference's learning-rate schedules: a hand-computed two-step example,
// get_expon_lr_func values, group learning rates, state round trip (bit-identical
// resume), damaged or mismatched state, thread-count determinism and the error contract.
#include "train/adam.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scene/synthetic_scene.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

// exp(log(a)(1 - t) + log(b) t) is a few ulp off the exact rate (so is numpy's).
void ExpectRate(double actual, double expected) { EXPECT_NEAR(actual, expected, 1e-13 * expected); }

TEST(LrScheduleTest, MatchesGetExponLrFunc) {
  const LrSchedule s = LrSchedule::Exponential(1e-2, 1e-4, 100);
  ExpectRate(s.At(0), 1e-2);
  ExpectRate(s.At(50), 1e-3);  // log-linear: the geometric mean half way
  ExpectRate(s.At(25), std::pow(10.0, -2.5));
  ExpectRate(s.At(100), 1e-4);
  EXPECT_EQ(s.At(5000), s.At(100));  // held at the final value
  EXPECT_EQ(s.At(-1), 0.0);          // "disabled" below 0
  EXPECT_EQ(LrSchedule::Exponential(0, 0, 10).At(3), 0.0);

  // Delay: delay_mult + (1 - delay_mult) sin(pi/2 min(step / delay_steps, 1)).
  const LrSchedule d = LrSchedule::Exponential(1.0, 1e-2, 100, 10, 0.1);
  ExpectRate(d.At(0), 0.1);
  ExpectRate(d.At(5), (0.1 + 0.9 * std::sin(M_PI / 4)) * std::pow(1e-2, 0.05));
  ExpectRate(d.At(10), std::pow(1e-2, 0.1));
  ExpectRate(d.At(40), std::pow(1e-2, 0.4));

  EXPECT_EQ(LrSchedule::Constant(5e-3).At(0), 5e-3);  // exactly, at every step
  EXPECT_EQ(LrSchedule::Constant(5e-3).At(123456), 5e-3);
}

TEST(LrScheduleTest, ReferenceStage2GroupsFollowTheNotes) {
  const double sls = 2.5;
  const auto groups = ReferenceStage2Groups(sls);
  ASSERT_EQ(groups.size(), 10u);
  auto find = [&](const std::string& name) {
    for (const auto& [n, s] : groups) {
      if (n == name) return s;
    }
    ADD_FAILURE() << "no group " << name;
    return LrSchedule{};
  };
  ExpectRate(find("xyz").At(0), 1.6e-4 * sls);
  ExpectRate(find("xyz").At(20000), 1.6e-6 * sls);
  ExpectRate(find("xyz").At(35000), 1.6e-6 * sls);
  ExpectRate(find("deformation").At(20000), 1.6e-5 * sls);
  ExpectRate(find("grid").At(0), 1.6e-3 * sls);
  ExpectRate(find("grid").At(20000), 1.6e-4 * sls);
  ExpectRate(find("gumbel").At(10000), find("deformation").At(10000));
  EXPECT_EQ(find("f_dc").At(7), 2.5e-3);
  EXPECT_EQ(find("f_rest").At(7), 2.5e-3 / 20);
  EXPECT_EQ(find("opacity").At(7), 0.05);
  EXPECT_EQ(find("scaling").At(7), 5e-3);
  EXPECT_EQ(find("rotation").At(7), 1e-3);
  ExpectRate(find("deformation_world").At(0), 1.6e-4 * sls);
  // A separate network scale moves only the networks' groups.
  const auto split = ReferenceStage2Groups(sls, 0.5);
  for (const auto& [name, schedule] : split) {
    const double ratio = schedule.At(100) / find(name).At(100);
    const bool network = name == "deformation" || name == "grid" || name == "gumbel";
    EXPECT_NEAR(ratio, network ? 0.5 / sls : 1.0, 1e-12) << name;
  }
}

TEST(AdamTest, TwoStepsMatchHandComputation) {
  // p0 = 1, lr = 0.1, g1 = 0.5, g2 = -0.25, betas (0.9, 0.999), eps 1e-15:
  // step 1: m = 0.05, v = 0.001 * 0.25 = 2.5e-4, bc1 = 0.1, bc2 = 0.001
  //         p = 1 - (0.1 / 0.1) * 0.05 / (sqrt(2.5e-4) / sqrt(1e-3)) = 1 - 0.05 / 0.5 = 0.9
  // step 2: m = 0.045 - 0.025 = 0.02, v = 2.4975e-4 + 6.25e-5 = 3.1225e-4,
  //         bc1 = 0.19, bc2 = 1 - 0.998001 = 0.001999
  //         p = 0.9 - (0.1 / 0.19) * 0.02 / (sqrt(3.1225e-4) / sqrt(0.001999)) = 0.8733662960...
  Adam adam;
  ASSERT_TRUE(adam.AddGroup("g", LrSchedule::Constant(0.1)).ok());
  ASSERT_TRUE(adam.AddParameter("g", "p", 1).ok());
  std::vector<float> p = {1.0f};
  std::vector<float> g = {0.5f};
  ASSERT_TRUE(adam.Step("p", absl::MakeSpan(p), g, 1).ok());
  EXPECT_NEAR(p[0], 0.9, 1e-6);
  g[0] = -0.25f;
  ASSERT_TRUE(adam.Step("p", absl::MakeSpan(p), g, 2).ok());
  EXPECT_NEAR(p[0], 0.8733662960, 1e-6);
  EXPECT_EQ(*adam.StepCount("p"), 2);
}

TEST(AdamTest, UsesTheGroupScheduleAtTheGivenIteration) {
  // The first Adam step moves every element by lr * sign(g) (m / sqrt(v) = sign(g)).
  Adam adam;
  ASSERT_TRUE(adam.AddGroup("decay", LrSchedule::Exponential(1e-2, 1e-4, 100)).ok());
  ASSERT_TRUE(adam.AddGroup("flat", LrSchedule::Constant(3e-3)).ok());
  ASSERT_TRUE(adam.AddParameter("decay", "a", 2).ok());
  ASSERT_TRUE(adam.AddParameter("flat", "b", 2).ok());
  std::vector<float> a = {0.0f, 0.0f}, b = {0.0f, 0.0f};
  const std::vector<float> g = {2.0f, -0.5f};
  ASSERT_TRUE(adam.Step("a", absl::MakeSpan(a), g, 50).ok());
  ASSERT_TRUE(adam.Step("b", absl::MakeSpan(b), g, 50).ok());
  EXPECT_NEAR(a[0], -1e-3, 1e-9);
  EXPECT_NEAR(a[1], 1e-3, 1e-9);
  EXPECT_NEAR(b[0], -3e-3, 1e-9);
  EXPECT_NEAR(b[1], 3e-3, 1e-9);
  ExpectRate(*adam.LearningRate("decay", 50), 1e-3);
}

// Registers three parameters in two groups with random values; returns them.
std::vector<std::vector<float>> RegisterParams(Adam& adam, uint64_t seed) {
  EXPECT_TRUE(adam.AddGroup("xyz", LrSchedule::Exponential(1e-3, 1e-5, 50)).ok());
  EXPECT_TRUE(adam.AddGroup("mlp", LrSchedule::Constant(5e-3)).ok());
  EXPECT_TRUE(adam.AddParameter("xyz", "positions", 300).ok());
  EXPECT_TRUE(adam.AddParameter("mlp", "w", 77).ok());
  EXPECT_TRUE(adam.AddParameter("mlp", "b", 5).ok());
  SplitMix64 rng(seed);
  std::vector<std::vector<float>> params = {std::vector<float>(300), std::vector<float>(77), std::vector<float>(5)};
  for (auto& p : params) {
    for (float& x : p) x = static_cast<float>(rng.Uniform(-1, 1));
  }
  return params;
}

// Steps every parameter for iterations first..last with deterministic pseudo-gradients.
void RunSteps(Adam& adam, std::vector<std::vector<float>>& params, int64_t first, int64_t last) {
  const char* names[3] = {"positions", "w", "b"};
  for (int64_t it = first; it <= last; ++it) {
    for (int k = 0; k < 3; ++k) {
      SplitMix64 rng(static_cast<uint64_t>(it * 10 + k));
      std::vector<float> g(params[k].size());
      for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(rng.Uniform(-1, 1) + 0.1 * params[k][i]);
      ASSERT_TRUE(adam.Step(names[k], absl::MakeSpan(params[k]), g, it).ok());
    }
  }
}

TEST(AdamTest, StateRoundTripResumesBitIdentically) {
  Adam straight;
  auto p_straight = RegisterParams(straight, 1);
  RunSteps(straight, p_straight, 1, 7);

  Adam first;
  auto p_resumed = RegisterParams(first, 1);
  RunSteps(first, p_resumed, 1, 3);
  const std::string blob = first.SaveState();

  Adam resumed;  // a fresh optimiser, as after a restart
  RegisterParams(resumed, 999);
  ASSERT_TRUE(resumed.LoadState(blob).ok()) << resumed.LoadState(blob);
  EXPECT_EQ(resumed.SaveState(), blob);
  EXPECT_EQ(*resumed.StepCount("w"), 3);
  RunSteps(resumed, p_resumed, 4, 7);

  for (int k = 0; k < 3; ++k) {
    ASSERT_EQ(0, std::memcmp(p_straight[k].data(), p_resumed[k].data(), p_straight[k].size() * sizeof(float))) << k;
  }
  EXPECT_EQ(straight.SaveState(), resumed.SaveState());
}

TEST(AdamTest, RejectsDamagedOrMismatchedStateAndKeepsItsOwn) {
  Adam a;
  auto params = RegisterParams(a, 2);
  RunSteps(a, params, 1, 2);
  const std::string blob = a.SaveState();

  Adam b;
  RegisterParams(b, 2);
  const std::string before = b.SaveState();

  std::string flipped = blob;
  flipped[flipped.size() / 2] ^= 0x10;
  EXPECT_THAT(b.LoadState(flipped).message(), HasSubstr("CRC-32C"));
  EXPECT_EQ(b.LoadState(blob.substr(0, blob.size() - 9)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.LoadState("nonsense").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.SaveState(), before) << "a failed load changed the state";

  Adam other_eps(AdamOptions{0.9, 0.999, 1e-8});
  RegisterParams(other_eps, 2);
  EXPECT_EQ(other_eps.LoadState(blob).code(), absl::StatusCode::kFailedPrecondition);

  Adam other_size;
  ASSERT_TRUE(other_size.AddGroup("xyz", LrSchedule::Constant(1e-3)).ok());
  ASSERT_TRUE(other_size.AddGroup("mlp", LrSchedule::Constant(1e-3)).ok());
  ASSERT_TRUE(other_size.AddParameter("xyz", "positions", 301).ok());
  ASSERT_TRUE(other_size.AddParameter("mlp", "w", 77).ok());
  ASSERT_TRUE(other_size.AddParameter("mlp", "b", 5).ok());
  EXPECT_THAT(other_size.LoadState(blob).message(), HasSubstr("'positions'"));

  Adam fewer;
  ASSERT_TRUE(fewer.AddGroup("mlp", LrSchedule::Constant(1e-3)).ok());
  ASSERT_TRUE(fewer.AddParameter("mlp", "w", 77).ok());
  EXPECT_EQ(fewer.LoadState(blob).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(AdamTest, IdenticalAcrossThreadCounts) {
  const size_t n = 200003;
  SplitMix64 rng(5);
  std::vector<float> init(n), g1(n), g2(n);
  for (size_t i = 0; i < n; ++i) {
    init[i] = static_cast<float>(rng.Uniform(-1, 1));
    g1[i] = static_cast<float>(rng.Uniform(-1e-3, 1e-3));
    g2[i] = static_cast<float>(rng.Uniform(-1, 1));
  }
  auto run = [&](ThreadPool* pool) {
    Adam adam;
    EXPECT_TRUE(adam.AddGroup("g", LrSchedule::Exponential(1e-2, 1e-3, 10)).ok());
    EXPECT_TRUE(adam.AddParameter("g", "p", n).ok());
    std::vector<float> p = init;
    EXPECT_TRUE(adam.Step("p", absl::MakeSpan(p), g1, 1, pool).ok());
    EXPECT_TRUE(adam.Step("p", absl::MakeSpan(p), g2, 2, pool).ok());
    return std::make_pair(p, adam.SaveState());
  };
  const auto serial = run(nullptr);
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    const auto parallel = run(&pool);
    EXPECT_EQ(0, std::memcmp(serial.first.data(), parallel.first.data(), n * sizeof(float))) << threads;
    EXPECT_EQ(serial.second, parallel.second) << threads;
  }
}

TEST(AdamTest, ErrorContract) {
  Adam adam;
  EXPECT_EQ(adam.AddGroup("g", LrSchedule::Exponential(1e-3, 0.0, 10)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(adam.AddGroup("g", LrSchedule::Exponential(-1.0, -1.0, 10)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(adam.AddGroup("g", LrSchedule::Exponential(1e-3, 1e-4, 0)).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(adam.AddGroup("g", LrSchedule::Constant(1e-3)).ok());
  EXPECT_EQ(adam.AddGroup("g", LrSchedule::Constant(1e-3)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(adam.AddParameter("nope", "p", 3).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(adam.AddParameter("g", "p", 3).ok());
  EXPECT_EQ(adam.AddParameter("g", "p", 3).code(), absl::StatusCode::kAlreadyExists);
  std::vector<float> p(3), g(2);
  EXPECT_EQ(adam.Step("p", absl::MakeSpan(p), g, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(adam.Step("q", absl::MakeSpan(p), g, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*adam.StepCount("p"), 0);  // a rejected step does not count
  EXPECT_EQ(adam.LearningRate("nope", 1).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace flexgs

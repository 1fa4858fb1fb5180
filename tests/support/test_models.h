// Small elastic models for tests of selection, planning and streaming.
#pragma once

#include <random>
#include <vector>

#include "elastic/elastic_model.h"
#include "scene/synthetic_scene.h"

namespace flexgs::testing {

// Fills `v` with U(lo, hi) draws from `rng`.
inline void FillRandom(std::vector<float>& v, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  for (float& x : v) x = dist(rng);
}

// A cloud of random raw attributes (non-unit quaternions, wide opacity and scale
// ranges): valid input for I/O and streaming, not a meaningful scene.
inline GaussianCloud RandomCloud(size_t n, int sh_degree, std::mt19937& rng) {
  GaussianCloud cloud;
  cloud.sh_degree = sh_degree;
  cloud.Resize(n);
  FillRandom(cloud.positions, rng, -3.0f, 3.0f);
  FillRandom(cloud.log_scales, rng, -6.0f, 0.0f);
  FillRandom(cloud.rotations, rng, -1.0f, 1.0f);
  FillRandom(cloud.opacity_logits, rng, -5.0f, 5.0f);
  FillRandom(cloud.sh_dc, rng, -2.0f, 2.0f);
  FillRandom(cloud.sh_rest, rng, -0.5f, 0.5f);
  return cloud;
}

// The synthetic scene with random (seeded) Global Importance and no networks.
inline ElasticModel HeuristicTestModel(size_t n, uint64_t seed, int sh_degree = 1) {
  ElasticModel m;
  m.gaussians = MakeSyntheticScene({.count = n, .sh_degree = sh_degree, .seed = seed});
  SplitMix64 rng(seed);
  m.global_importance.resize(n);
  for (float& g : m.global_importance) g = static_cast<float>(rng.Uniform());
  m.normalization.aabb_min = {-3, -3, -3};
  m.normalization.aabb_max = {3, 3, 3};
  return m;
}

// A model with random (untrained) networks: rankings change with e and the field
// moves Gaussians, which is what nesting and patches must cope with. The field is
// small (4 channels, 8/16 spatial, 12 ratio texels, width 16) to keep tests fast.
inline ElasticModel TrainedLikeTestModel(size_t n, uint64_t seed, int sh_degree = 1) {
  ElasticModel m = HeuristicTestModel(n, seed, sh_degree);
  m.gsnet = GsNetWeights::Init(seed);
  TransformFieldConfig cfg;
  cfg.channels = 4;
  cfg.base_resolution = 8;
  cfg.multires = {1, 2};
  cfg.ratio_resolution = 12;
  cfg.hidden = 16;
  m.field = TransformFieldWeights::Init(cfg, seed);
  SplitMix64 rng(seed + 1);
  for (int h = 0; h < 3; ++h) {  // non-zero last layers: a real transform
    for (float& w : m.field->fc2[h].weight) w = static_cast<float>(rng.Uniform(-0.05, 0.05));
    for (float& b : m.field->fc2[h].bias) b = static_cast<float>(rng.Uniform(-0.02, 0.02));
  }
  return m;
}

// TrainedLikeTestModel's ratio planes start at 1, so its transform does not depend on
// e and a level's patches repeat the geometry already held. Random planes make every
// level's transform differ: patches then really re-pose earlier Gaussians, and a client
// that skipped or misplaced them would hold the wrong level.
inline ElasticModel RatioDependentTestModel(size_t n, uint64_t seed, int sh_degree = 1) {
  ElasticModel m = TrainedLikeTestModel(n, seed, sh_degree);
  SplitMix64 rng(seed + 2);
  for (HexPlaneLevel& level : m.field->levels) {
    for (auto& plane : level.planes) {
      for (float& v : plane) v = static_cast<float>(rng.Uniform(0.1, 1.0));
    }
  }
  return m;
}

}  // namespace flexgs::testing

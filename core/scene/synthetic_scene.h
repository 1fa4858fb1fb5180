// Deterministic synthetic scenes, so the project can demo, test and benchmark
// without downloading anything.
//
// The "default" scene is an upright object in the 3DGS y-down convention: a
// striped sphere on a pedestal, a torus around it and a checkered ground disc,
// made of anisotropic Gaussians with surface-aligned rotations, so it exercises
// every attribute (and SH bands when sh_degree > 0).
#pragma once

#include <cstdint>

#include "base/random.h"  // SplitMix64, the generator behind every scene
#include "scene/gaussian_cloud.h"

namespace flexgs {

struct SyntheticSceneOptions {
  size_t count = 200'000;
  int sh_degree = 0;
  uint64_t seed = 7;
};

GaussianCloud MakeSyntheticScene(const SyntheticSceneOptions& options);

}  // namespace flexgs

// Deterministic synthetic scenes, so the project can demo, test and benchmark
// without downloading anything.
//
// The "default" scene is an upright object in the 3DGS y-down convention: a
// striped sphere on a pedestal, a torus around it and a checkered ground disc,
// made of anisotropic Gaussians with surface-aligned rotations, so it exercises
// every attribute (and SH bands when sh_degree > 0).
#pragma once

#include <cstdint>

#include "core/gaussian_cloud.h"

namespace flexgs {

struct SyntheticSceneOptions {
  size_t count = 200'000;
  int sh_degree = 0;
  uint64_t seed = 7;
};

GaussianCloud MakeSyntheticScene(const SyntheticSceneOptions& options);

// Small, fast, platform-independent random numbers (SplitMix64), for anything that
// must be reproducible bit for bit across machines and standard libraries.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Standard normal (Box-Muller).
  double Normal();

 private:
  uint64_t state_;
};

}  // namespace flexgs

// SplitMix64: the project's one random-number generator.
//
// Everything that must be reproducible bit for bit across machines and standard
// libraries (synthetic scenes, network initialisation, view sampling, Gumbel noise)
// draws from it; std::mt19937 with std:: distributions is not portable across
// standard libraries.
#pragma once

#include <cstdint>

namespace flexgs {

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

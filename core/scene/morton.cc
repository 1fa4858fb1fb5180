#include "scene/morton.h"

#include <algorithm>
#include <cmath>

namespace flexgs {
namespace {

uint64_t Spread21(uint64_t v) {
  v &= 0x1fffff;
  v = (v | v << 32) & 0x1f00000000ffffull;
  v = (v | v << 16) & 0x1f0000ff0000ffull;
  v = (v | v << 8) & 0x100f00f00f00f00full;
  v = (v | v << 4) & 0x10c30c30c30c30c3ull;
  v = (v | v << 2) & 0x1249249249249249ull;
  return v;
}

}  // namespace

uint64_t MortonCode(const float* p, const std::array<float, 3>& lo, const std::array<float, 3>& hi) {
  uint64_t code = 0;
  for (int d = 0; d < 3; ++d) {
    const float extent = hi[d] - lo[d];
    float u = extent > 0 ? (p[d] - lo[d]) / extent : 0.0f;
    u = std::isfinite(u) ? std::clamp(u, 0.0f, 1.0f) : 0.0f;
    code |= Spread21(static_cast<uint64_t>(u * 2097151.0f)) << d;
  }
  return code;
}

}  // namespace flexgs

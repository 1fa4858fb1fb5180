// Helpers shared by the fuzz targets in fuzz/: invariant checks and byte views.
//
// A target returns normally for any input its parser rejects with an error; it
// aborts (FUZZ_CHECK) when a parser accepts an input but the result breaks a
// promise of the parser's header -- sizes, ranges, round trips. libFuzzer and
// replay_main.cc both report an abort as a crash naming the input.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "scene/gaussian_cloud.h"
#include "spdlog/spdlog.h"

#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace flexgs::fuzz {

inline std::string_view Bytes(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// Parsers log warnings for odd but accepted input; at fuzzing rates that is noise.
inline void QuietLogs() { spdlog::set_level(spdlog::level::off); }

// Bit-for-bit equality (NaN payloads and -0 included).
inline bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

inline bool SameBits(const GaussianCloud& a, const GaussianCloud& b) {
  return a.sh_degree == b.sh_degree && SameBits(a.positions, b.positions) && SameBits(a.log_scales, b.log_scales) &&
         SameBits(a.rotations, b.rotations) && SameBits(a.opacity_logits, b.opacity_logits) &&
         SameBits(a.sh_dc, b.sh_dc) && SameBits(a.sh_rest, b.sh_rest);
}

inline bool AllFinite(const std::vector<float>& v) {
  for (float f : v) {
    if (!std::isfinite(f)) return false;
  }
  return true;
}

inline bool AllFinite(const GaussianCloud& c) {
  return AllFinite(c.positions) && AllFinite(c.log_scales) && AllFinite(c.rotations) && AllFinite(c.opacity_logits) &&
         AllFinite(c.sh_dc) && AllFinite(c.sh_rest);
}

}  // namespace flexgs::fuzz

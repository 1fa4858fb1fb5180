// Float layouts shared by the planner, the chunk codec, the client's store and the
// kernels: what one Gaussian and one patch are on the wire before encoding. Kept apart
// from the planner and the codec so that neither has to include the other.
#pragma once

#include <cstdint>

#include "scene/gaussian_cloud.h"  // ShRestCoeffs

namespace flexgs {

// One patch: a previously sent Gaussian re-posed at a later level's ratio.
inline constexpr int kPatchStride = 10;  // position(3), log_scale(3), rotation(4)

// Float32 bytes of one Gaussian's attributes at an SH degree (56 at 0, 236 at 3).
constexpr uint64_t RawBytesPerGaussian(int sh_degree) {
  return 4ull * (14 + 3 * static_cast<uint64_t>(ShRestCoeffs(sh_degree)));
}

}  // namespace flexgs

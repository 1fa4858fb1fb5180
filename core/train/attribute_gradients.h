// AttributeGradients: where a backward pass adds dL/d(raw Gaussian attribute).
//
// Several parts of the stage-2 graph reach the same Gaussian attributes (the two
// renders, GsNet, the transform field), so the backward passes *add* into caller-owned
// arrays in GaussianCloud's raw layout instead of returning their own copies. An empty
// span means "not wanted" and skips that work.
#pragma once

#include "absl/types/span.h"

namespace flexgs {

struct AttributeGradients {
  absl::Span<float> positions;   // 3 per Gaussian
  absl::Span<float> log_scales;  // 3 per Gaussian
  absl::Span<float> rotations;   // 4 per Gaussian (raw, not necessarily unit, quaternion)
};

}  // namespace flexgs

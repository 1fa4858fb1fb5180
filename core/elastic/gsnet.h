// GsNet: the selector that ranks Gaussians for an elastic ratio e (FlexGS, CVPR 2025).
//
// Four branches, one per input -- position xyz (3), unit quaternion wxyz (4),
// activated scale exp(log_scale) (3), ratio e (1) -- each Linear(d->32) -> ReLU ->
// Linear(32->32) -> ReLU; the four outputs are concatenated (128) and a
// Linear(128->2) gives logits (l0 = drop, l1 = keep). 4,962 parameters.
//
// Deliberate deviation from the reference code: the reference keeps the top eN by a
// *noisy* Gumbel-softmax probability, so its selection changes from run to run. We
// rank by the noise-free margin delta = l1 - l0 and keep exactly the top floor(eN)
// (at least 1), ties broken by index, so a plan is a pure function of the model and
// the request (caching and resume depend on it).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"
#include "elastic/dense_layer.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

struct GsNetWeights {
  static constexpr int kHidden = 32;
  static constexpr int kInputs[4] = {3, 4, 3, 1};  // xyz, quaternion, scale, ratio
  static constexpr const char* kBranchNames[4] = {"xyz", "rotation", "scale", "ratio"};

  std::array<DenseLayer, 4> fc1;  // d -> 32
  std::array<DenseLayer, 4> fc2;  // 32 -> 32
  DenseLayer head;                // 128 -> 2

  // PyTorch's default nn.Linear initialisation (weights and biases U(+-1/sqrt(fan_in))),
  // from a deterministic seed.
  static GsNetWeights Init(uint64_t seed);
  absl::Status Validate() const;
};

// What GsNet reads of Gaussian i of `cloud`: position, unit quaternion and activated
// scale exp(log_scale). A degenerate quaternion (|q| not finite or <= 1e-12, the
// rasterizer's rule) becomes the identity rotation instead of culling the Gaussian.
// Returns |q|, or 0 where the identity was substituted. One definition for GsNetScores
// and its backward (train/gsnet_backward.h).
inline float GsNetInputs(const GaussianCloud& cloud, size_t i, float xyz[3], float quat[4], float scale[3]) {
  const float* p = &cloud.positions[3 * i];
  const float* s = &cloud.log_scales[3 * i];
  const float* q = &cloud.rotations[4 * i];
  for (int d = 0; d < 3; ++d) {
    xyz[d] = p[d];
    scale[d] = std::exp(s[d]);
  }
  const float qn = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  if (qn > 1e-12f && std::isfinite(qn)) {
    for (int d = 0; d < 4; ++d) quat[d] = q[d] / qn;
    return qn;
  }
  quat[0] = 1.0f;
  quat[1] = quat[2] = quat[3] = 0.0f;
  return 0.0f;
}

// GsNet's ratio branch at ratio e, relu(fc2(relu(fc1(e)))) with its pre-activations,
// and what it adds to both logits: it sees the same input for every Gaussian, so its
// contribution is a per-call constant folded into the head bias,
// base[k] = head.bias[k] + head.weight[k, 96:128] . r2. Shared with the backward.
struct GsNetRatioBranch {
  float r1_pre[GsNetWeights::kHidden], r1[GsNetWeights::kHidden];
  float r2_pre[GsNetWeights::kHidden], r2[GsNetWeights::kHidden];
  float base[2];
  GsNetRatioBranch(const GsNetWeights& net, float ratio);
};

// delta[i] = l1 - l0 for Gaussian i of `cloud` at ratio e. `delta.size()` must equal
// cloud.size(). Multi-threaded over Gaussians when `pool` is given.
void GsNetScores(const GsNetWeights& net, const GaussianCloud& cloud, float ratio, absl::Span<float> delta,
                 ThreadPool* pool);

}  // namespace flexgs

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

// delta[i] = l1 - l0 for Gaussian i of `cloud` at ratio e. `delta.size()` must equal
// cloud.size(). Multi-threaded over Gaussians when `pool` is given.
void GsNetScores(const GsNetWeights& net, const GaussianCloud& cloud, float ratio, absl::Span<float> delta,
                 ThreadPool* pool);

}  // namespace flexgs

// The stage-2 selection mask: FlexGS's straight-through Gumbel-softmax sample of
// GsNet's logits, and the two mask losses that pull it towards the Global Importance
// pseudo-labels and the target ratio.
//
// Forward (as torch.nn.functional.gumbel_softmax(logits, tau, hard=True)[:, 1]):
//   y = softmax((l + g) / tau), g0, g1 ~ Gumbel(0, 1) i.i.d. per Gaussian,
//   mask = 1 if (l1 + g1) > (l0 + g0) else 0   (exactly 0 or 1; ties drop, like argmax)
// so the mask is Bernoulli(sigmoid(l1 - l0)) and tau only shapes the gradient.
// Backward (straight-through): dL/dl = dL/dmask * d y1 / dl, i.e.
//   dL/dl1 = dL/dmask * y1 (1 - y1) / tau,  dL/dl0 = -dL/dl1.
// The reference uses tau = 1 fixed (no schedule): kReferenceGumbelTau.
//
// Where this differs from the reference and why: the noise comes from a counter-based
// SplitMix64 stream keyed on (seed, Gaussian index, class) instead of torch's global
// generator, so a mask is a pure function of (logits, seed) -- reproducible, the same
// for any thread count and for a resumed run -- with the same distribution but not
// torch's samples. The trainer should derive the seed from (run seed, iteration).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"

namespace flexgs {

inline constexpr double kReferenceGumbelTau = 1.0;

// Standard Gumbel noise g = -log(-log(U)), U in (0, 1), for (seed, index, class).
// Draw 2 * index + cls of the SplitMix64 stream seeded with a hash of `seed`.
double GumbelNoise(uint64_t seed, uint64_t index, int cls);

// logits: 2N interleaved (l0, l1) as GsNetLogits writes them. Writes mask[i] in {0, 1}
// and soft_keep[i] = y1 (what the backward needs). tau must be > 0 and finite.
absl::Status GumbelHardMask(absl::Span<const float> logits, double tau, uint64_t seed, absl::Span<float> mask,
                            absl::Span<float> soft_keep, ThreadPool* pool);

// Straight-through backward: grad_logits (2N, overwritten) from grad_mask (N) and the
// forward's soft_keep (N).
absl::Status GumbelHardMaskBackward(absl::Span<const float> soft_keep, double tau, absl::Span<const float> grad_mask,
                                    absl::Span<float> grad_logits);

// Pseudo-labels of the reference: P_i = 1 iff GI_i > GI_(k), where GI_(k) is the
// element at k = floor((1 - e)(N - 1)) of GI sorted ascending (strict, so ties at the
// threshold are 0 and P can keep fewer than eN). e in [0, 1].
std::vector<float> GiPseudoLabels(absl::Span<const float> global_importance, double ratio);

// The two mask terms of the stage-2 loss (reference section 5.3), both plain L1 on the
// hard mask:  imitation * mean_i |P_i - M_i|  +  ratio_weight * |mean_i M_i - e|.
struct MaskLossWeights {
  double imitation = 1.0;      // --gumbel_weight
  double ratio_weight = 0.01;  // hard-coded in the reference
};
struct MaskLoss {
  double imitation = 0.0;  // mean |P - M| (unweighted)
  double fraction = 0.0;   // |mean M - e| (unweighted)
  double value = 0.0;      // weighted sum
};
// Writes dL/dM (N, overwritten) to grad_mask; |x|' = sign(x) with sign(0) = 0 as in torch.
absl::StatusOr<MaskLoss> SelectionMaskLoss(absl::Span<const float> mask, absl::Span<const float> labels, double ratio,
                                           const MaskLossWeights& weights, absl::Span<float> grad_mask);

}  // namespace flexgs

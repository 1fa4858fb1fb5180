#include "train/gumbel_mask.h"

#include <algorithm>
#include <cmath>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace flexgs {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SoftKeep(double l0, double l1, double g0, double g1, double tau) {
  const double z = ((l1 + g1) - (l0 + g0)) / tau;
  // Stable logistic for either sign of z.
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

absl::Status CheckTau(double tau) {
  if (!(tau > 0.0) || !std::isfinite(tau)) {
    return absl::InvalidArgumentError(absl::StrCat("Gumbel temperature must be positive and finite, got ", tau));
  }
  return absl::OkStatus();
}

}  // namespace

double GumbelNoise(uint64_t seed, uint64_t index, int cls) {
  // SplitMix64 is a hash of a Weyl sequence, so draw k of a stream is one hash of
  // state0 + (k + 1) * golden: random access without generating the draws before it.
  const uint64_t state0 = Mix64(seed + kGolden);
  const uint64_t k = 2 * index + static_cast<uint64_t>(cls & 1);
  const uint64_t bits = Mix64(state0 + (k + 1) * kGolden);
  // U in (0, 1): the 53-bit grid shifted by half a step, so neither log sees 0.
  const double u = (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  return -std::log(-std::log(u));
}

absl::Status GumbelHardMask(absl::Span<const float> logits, double tau, uint64_t seed, absl::Span<float> mask,
                            absl::Span<float> soft_keep, ThreadPool* pool) {
  absl::Status s = CheckTau(tau);
  if (!s.ok()) return s;
  const size_t n = logits.size() / 2;
  if (logits.size() % 2 != 0 || mask.size() != n || soft_keep.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("GumbelHardMask: logits has ", logits.size(), " values, mask ",
                                                   mask.size(), ", soft_keep ", soft_keep.size(),
                                                   "; expected 2N, N, N"));
  }
  auto run = [&](size_t begin, size_t end, int /*worker*/) {
    for (size_t i = begin; i < end; ++i) {
      const double l0 = logits[2 * i], l1 = logits[2 * i + 1];
      const double g0 = GumbelNoise(seed, i, 0), g1 = GumbelNoise(seed, i, 1);
      mask[i] = (l1 + g1) > (l0 + g0) ? 1.0f : 0.0f;
      soft_keep[i] = static_cast<float>(SoftKeep(l0, l1, g0, g1, tau));
    }
  };
  constexpr size_t kGrain = 4096;
  if (pool != nullptr) {
    pool->ParallelFor(n, kGrain, run);
  } else {
    run(0, n, 0);
  }
  return absl::OkStatus();
}

absl::Status GumbelHardMaskBackward(absl::Span<const float> soft_keep, double tau, absl::Span<const float> grad_mask,
                                    absl::Span<float> grad_logits) {
  absl::Status s = CheckTau(tau);
  if (!s.ok()) return s;
  const size_t n = soft_keep.size();
  if (grad_mask.size() != n || grad_logits.size() != 2 * n) {
    return absl::InvalidArgumentError(absl::StrCat("GumbelHardMaskBackward: soft_keep has ", n, " values, grad_mask ",
                                                   grad_mask.size(), ", grad_logits ", grad_logits.size(),
                                                   "; expected N, N, 2N"));
  }
  for (size_t i = 0; i < n; ++i) {
    const double y = soft_keep[i];
    const double g = static_cast<double>(grad_mask[i]) * y * (1.0 - y) / tau;
    grad_logits[2 * i] = static_cast<float>(-g);
    grad_logits[2 * i + 1] = static_cast<float>(g);
  }
  return absl::OkStatus();
}

std::vector<float> GiPseudoLabels(absl::Span<const float> global_importance, double ratio) {
  const size_t n = global_importance.size();
  std::vector<float> labels(n, 0.0f);
  if (n == 0) return labels;
  const double e = std::clamp(ratio, 0.0, 1.0);
  const size_t k = std::min(n - 1, static_cast<size_t>(std::floor((1.0 - e) * static_cast<double>(n - 1))));
  std::vector<float> sorted(global_importance.begin(), global_importance.end());
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k), sorted.end());
  const float threshold = sorted[k];
  for (size_t i = 0; i < n; ++i) labels[i] = global_importance[i] > threshold ? 1.0f : 0.0f;
  return labels;
}

absl::StatusOr<MaskLoss> SelectionMaskLoss(absl::Span<const float> mask, absl::Span<const float> labels, double ratio,
                                           const MaskLossWeights& weights, absl::Span<float> grad_mask) {
  const size_t n = mask.size();
  if (n == 0 || labels.size() != n || grad_mask.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("SelectionMaskLoss: mask has ", n, " values, labels ", labels.size(),
                                                   ", grad_mask ", grad_mask.size(), "; expected N > 0 for all three"));
  }
  auto sign = [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); };
  const double inv_n = 1.0 / static_cast<double>(n);
  double abs_sum = 0.0, mask_sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    abs_sum += std::abs(static_cast<double>(labels[i]) - mask[i]);
    mask_sum += mask[i];
  }
  MaskLoss loss;
  loss.imitation = abs_sum * inv_n;
  const double excess = mask_sum * inv_n - ratio;
  loss.fraction = std::abs(excess);
  loss.value = weights.imitation * loss.imitation + weights.ratio_weight * loss.fraction;
  const double fraction_grad = weights.ratio_weight * sign(excess) * inv_n;
  for (size_t i = 0; i < n; ++i) {
    const double imitation_grad = weights.imitation * sign(static_cast<double>(mask[i]) - labels[i]) * inv_n;
    grad_mask[i] = static_cast<float>(imitation_grad + fraction_grad);
  }
  return loss;
}

}  // namespace flexgs

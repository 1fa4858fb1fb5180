// Elastic selection: which Gaussians a ratio e keeps, and what they look like there.
//
// Ranking scores are GsNet's noise-free margins delta(e) = l1 - l0 for a trained
// model, or the Global Importance for a heuristic model (the same for every e).
// The subset for e is exactly the top floor(e N) (at least 1) by score, ties broken
// by the lower index -- a pure function of the model and e.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/elastic_model.h"
#include "core/thread_pool.h"

namespace flexgs {

// InvalidArgument unless 0 <= e <= 1 (NaN rejected), naming the value.
absl::Status ValidateRatio(double e);

// floor(e * n), at least 1 (for n > 0), at most n.
uint32_t ElasticCount(size_t n, double e);

// Ranking score of every Gaussian at ratio e.
std::vector<float> RankingScores(const ElasticModel& model, double e, ThreadPool* pool);

// Indices of the `count` best scores, sorted by (score descending, index ascending).
// `exclude` (optional, size n) marks Gaussians that must not be chosen.
std::vector<uint32_t> TopK(absl::Span<const float> scores, size_t count,
                           const std::vector<uint8_t>* exclude = nullptr);

// Transforms `indices` of the model to ratio e: gathers them and applies the field's
// deltas (a heuristic model returns them unchanged).
GaussianCloud TransformedSubset(const ElasticModel& model, absl::Span<const uint32_t> indices, double e,
                                ThreadPool* pool);

// The independent (non-nested) elastic model at ratio e: top-k, transformed.
absl::StatusOr<GaussianCloud> ElasticSubset(const ElasticModel& model, double e, ThreadPool* pool);

}  // namespace flexgs

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
#include "base/thread_pool.h"
#include "elastic/elastic_model.h"

namespace flexgs {

// InvalidArgument unless 0 <= e <= 1 (NaN rejected), naming the value.
absl::Status ValidateRatio(double e);

// floor(e * n), at least 1 (for n > 0), at most n.
uint32_t ElasticCount(size_t n, double e);

// Spatial coverage. An octree over the model's field box (21 levels, as Morton codes);
// in each cell the Gaussian with the highest GI (ties: lower index) represents it.
// CoverageLevels gives each Gaussian the coarsest level at which it represents its cell
// (0 = the whole box), or kNoCoverageLevel. Cells of level l are contiguous in Morton
// order, so this is one sort and one pass per level.
inline constexpr uint8_t kNoCoverageLevel = 22;
std::vector<uint8_t> CoverageLevels(const ElasticModel& model);

// The finest level whose cells (= representatives at that level or coarser) number at
// most share * count, or -1 when not even the root's fits.
int CoverageCutoff(absl::Span<const uint8_t> levels, uint32_t count, double share);

// Added to the scores of the coverage picks at ratio e (levels <= CoverageCutoff), so
// they rank before every other Gaussian and, among themselves, by the rest of the score.
inline constexpr float kCoverageBonus = 1000.0f;
void AddCoverageBonus(absl::Span<const uint8_t> levels, uint32_t count, double share, absl::Span<float> scores);

// What GsNet reads for the model's Gaussians: the cloud itself, or with
// gsnet_box_inputs positions mapped by the field box (centre to 0, the largest half
// extent to 1, the same factor on every axis) and scales divided by that half extent
// (log-scales shifted). Only position, scale and rotation are filled (opacities are
// zeros, for size()).
GaussianCloud GsNetInputCloud(const ElasticModel& model);
// The factor positions are divided by (1 without box inputs), for chain rules.
float GsNetInputScale(const ElasticModel& model);

// Ranking score of every Gaussian at ratio e: GI for a heuristic model, otherwise
// GsNet's margin plus model.gi_prior_weight * GiLogPrior(GI); with coverage_share > 0,
// plus the coverage bonus (a heuristic model then ranks by GiLogPrior, whose order is
// GI's). `coverage` is CoverageLevels(model), computed here when null.
std::vector<float> RankingScores(const ElasticModel& model, double e, ThreadPool* pool,
                                 const std::vector<uint8_t>* coverage = nullptr);

// The ranking formula of a trained model, for GsNet margins computed elsewhere (the
// trainer's own forward pass): turns margins[i] = l1 - l0 at ratio e into RankingScores'
// values in place -- plus model.gi_prior_weight * GiLogPrior(GI), plus the coverage bonus
// when coverage_share > 0 (`coverage` as for RankingScores).
void RankingScoresFromMargins(const ElasticModel& model, double e, absl::Span<float> margins,
                              const std::vector<uint8_t>* coverage = nullptr);

// log(GI_i + 1e-6 max GI) - log(max GI): a scale-free, finite log-importance (<= 1e-6,
// at least log(1e-6)); all zeros when every GI is 0.
std::vector<float> GiLogPrior(absl::Span<const float> global_importance);

// Indices of the `count` best scores, sorted by (score descending, index ascending).
// `exclude` (optional, size n) marks Gaussians that must not be chosen.
std::vector<uint32_t> TopK(absl::Span<const float> scores, size_t count, const std::vector<uint8_t>* exclude = nullptr);

// The planner's nested selection for ascending `ratios`: element k holds level k's
// additions (TopK at ratios[k] among the Gaussians not chosen before, in rank order),
// so level k keeps the union of elements 0..k, ElasticCount(n, ratios[k]) in all.
// `coverage` as for RankingScores.
std::vector<std::vector<uint32_t>> NestedAdditions(const ElasticModel& model, absl::Span<const double> ratios,
                                                   ThreadPool* pool, const std::vector<uint8_t>* coverage = nullptr);

// Transforms `indices` of the model to ratio e: gathers them and applies the field's
// deltas. A heuristic model, and any model at e >= 1, returns them unchanged: with every
// Gaussian kept there is no hole to fill, and a client that can hold the whole scene gets
// the scene it was trained from, bit for bit.
GaussianCloud TransformedSubset(const ElasticModel& model, absl::Span<const uint32_t> indices, double e,
                                ThreadPool* pool);

// The independent (non-nested) elastic model at ratio e: top-k, transformed.
absl::StatusOr<GaussianCloud> ElasticSubset(const ElasticModel& model, double e, ThreadPool* pool);

}  // namespace flexgs

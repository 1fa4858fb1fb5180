// LevelPlanner: turns (model, ladder, top ratio) into nested streaming levels.
//
// Level k holds floor(e_k N) Gaussians (at least 1) and contains level k-1: it keeps
// every Gaussian already sent and adds the best-ranked ones at e_k that are not yet
// chosen. Because the transform depends on e, each level of a trained model also
// carries patches: the geometry of every previously sent Gaussian re-transformed at e_k
// (none for heuristic models, whose transform is the identity, and none for models
// whose poses are fixed at insertion, ElasticModel::pose_at_insertion, except at e = 1
// where the patches restore the original scene). After applying level k's additions and
// patches a client holds exactly the planner's level k.
//
// Merged-level models (ElasticModel::merged_levels) instead carry replacements: level k
// is MergeIntoRepresentatives(model, everything sent so far), so an earlier Gaussian
// whose cluster lost members to the new ones is re-sent whole; one whose cluster did not
// change is not. At e = 1 every cluster is one Gaussian and the client holds the input.
//
// A plan is a pure function of (model, request): byte-identical for any thread count,
// so plans can be cached and streams resumed at any point.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "elastic/elastic_model.h"
#include "scene/morton.h"  // MortonCode, the send order
#include "stream/wire_layout.h"

namespace flexgs {

struct PlanRequest {
  double top_ratio = 0.15;     // e_max derived from the client's budget, in [0, 1]
  std::vector<double> ladder;  // empty: the model's ladder
  // Stops between rungs (0: none). Between consecutive planned ratios a and b the
  // rung b is cut into sub-levels at a 2^(j/s) (j = 1, 2, ... while below b 2^(-1/2s)),
  // each adding the next of b's additions in rank order, so that a budget between rungs
  // can stop at a whole level of one shared stream (server/wire_script.h). A rung's
  // patches go with its first sub-level and its replacements with its last, so only a
  // rung's last sub-level is a planner level in the sense of LevelCloud's equalities;
  // the ones before hold a rank-order prefix of it (see PlanLevel::pose_ratio).
  int stops_per_doubling = 0;
  // Merged levels: use the model's refined rungs where they fit (false: the merge alone,
  // what `flexgs refine` starts from).
  bool use_refined_rungs = true;
};

// Sub-levels per doubling of the ratio in the canonical stream every client's budget
// cuts (CanonicalPlanRequest): a budget between two stops gets at most 2^(1/4) - 1 =
// 19 % fewer Gaussians than it could hold, for ~10 % more bytes than rungs alone
// (smaller blocks compress less; bench/RESULTS.md, "Canonical stream").
inline constexpr int kCanonicalStopsPerDoubling = 4;
inline constexpr int kMaxStopsPerDoubling = 16;

struct PlanLevel {
  double ratio = 0;               // count = ElasticCount(N, ratio)
  double pose_ratio = 0;          // the rung whose ranking and transform the level's Gaussians use
  uint32_t count = 0;             // Gaussians held after this level
  std::vector<uint32_t> added;    // model indices sent at this level, in send order
  GaussianCloud added_gaussians;  // their attributes transformed at `ratio`
  std::vector<float> patches;     // previously sent Gaussians (client order) at `ratio`
  // Merged-level models (ElasticModel::merged_levels): the client-order indices,
  // ascending, of earlier Gaussians whose attributes change at this level, and their
  // new attributes (all of them: position to SH). Only those that change are sent.
  std::vector<uint32_t> replaced;
  GaussianCloud replacements;
  double overlap_with_independent = 1;  // |level k ∩ independent top-k at e_k| / count
};

struct Plan {
  uint32_t model_gaussians = 0;
  int sh_degree = 0;
  std::vector<PlanLevel> levels;

  // Raw float32 bytes of a level's payload (additions + patches), before encoding.
  uint64_t RawLevelBytes(size_t level) const;
};

// The ratios a request expands to: ladder rungs strictly below top_ratio, then
// top_ratio itself. Validates the ladder (strictly increasing, within (0, 1]).
absl::StatusOr<std::vector<double>> PlanRatios(const ElasticModel& model, const PlanRequest& request);

absl::StatusOr<Plan> PlanLevels(const ElasticModel& model, const PlanRequest& request, ThreadPool* pool);

// The request for the canonical stream of a model and ladder (empty: the model's): every
// rung up to ratio 1 with kCanonicalStopsPerDoubling stops between rungs. A client's
// budget picks how many of its levels to take (LastLevelWithin).
PlanRequest CanonicalPlanRequest(std::vector<double> ladder);

// The canonical stream's levels as far as a budget of `ratio` in (0, 1] can reach, planned
// only up to the first rung at or above `ratio`: a level depends on the rungs up to its
// own only, so these are the canonical plan's first levels, bit for bit, without the work
// of planning the rest (tools and evaluation that need one budget's cut).
absl::StatusOr<Plan> PlanCanonicalUpTo(const ElasticModel& model, std::vector<double> ladder, double ratio,
                                       ThreadPool* pool);

// The rungs of a merged-level model's ladder below 1 as the merge alone plans them (no
// stops, refined rungs ignored): what train/level_refiner.h refines.
absl::StatusOr<std::vector<MergedRung>> MergedRungs(const ElasticModel& model, ThreadPool* pool);

// The last level of `counts` (Gaussians held after each level, increasing) that holds
// at most `gaussians`; -1 when even the first holds more.
int LastLevelWithin(const std::vector<uint64_t>& counts, uint64_t gaussians);

// The cloud a client holds after `level` (client order: each level's additions appended
// in send order, earlier Gaussians re-posed by that level's patches), at the plan's SH
// degree and unquantized -- what a lossless stream reproduces bit for bit.
// OUT_OF_RANGE when `level` >= plan.levels.size(); INVALID_ARGUMENT for a plan whose
// patches, additions or counts disagree (one PlanLevels did not make).
absl::StatusOr<GaussianCloud> LevelCloud(const Plan& plan, size_t level);

// Whether Gaussian i of `now` differs visibly from Gaussian j of `held` (what a client
// holds): by at least `tolerance` steps in one of opacity (a step: 1/127, the codec's),
// SH DC (0.05 per channel, about a 5-bit step of a typical block range), SH rest
// (kChunkShRestStep), shape (relative Frobenius change of the covariance: 0.2, about a
// 6-bit log-scale step) or position (10 % of the held Gaussian's largest axis). With
// tolerance 0 any difference in bits is visible.
bool ReplacementIsVisible(const GaussianCloud& now, size_t i, const GaussianCloud& held, size_t j, double tolerance);

// Canonical bytes of a plan (for caching, digests and determinism tests).
std::string SerializePlan(const Plan& plan);

}  // namespace flexgs

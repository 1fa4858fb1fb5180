#include "elastic/elastic_selection.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "scene/morton.h"

namespace flexgs {

absl::Status ValidateRatio(double e) {
  if (!(e >= 0.0 && e <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("ratio ", e, " is outside [0, 1]"));
  }
  return absl::OkStatus();
}

uint32_t ElasticCount(size_t n, double e) {
  if (n == 0) return 0;
  const double k = std::floor(e * static_cast<double>(n));
  return static_cast<uint32_t>(std::clamp<double>(k, 1.0, static_cast<double>(n)));
}

std::vector<float> GiLogPrior(absl::Span<const float> global_importance) {
  float top = 0.0f;
  for (float g : global_importance) top = std::max(top, g);
  std::vector<float> prior(global_importance.size(), 0.0f);
  if (!(top > 0.0f) || !std::isfinite(top)) return prior;
  const double floor = 1e-6 * top;
  for (size_t i = 0; i < prior.size(); ++i) {
    const double g = std::max(0.0f, global_importance[i]);
    prior[i] = static_cast<float>(std::log((g + floor) / top));
  }
  return prior;
}

std::vector<uint8_t> CoverageLevels(const ElasticModel& model) {
  const size_t n = model.gaussians.size();
  std::vector<uint8_t> levels(n, kNoCoverageLevel);
  if (n == 0 || model.global_importance.size() != n) return levels;
  std::vector<std::pair<uint64_t, uint32_t>> order(n);
  for (uint32_t i = 0; i < n; ++i) {
    order[i] = {MortonCode(&model.gaussians.positions[3 * static_cast<size_t>(i)], model.normalization.aabb_min,
                           model.normalization.aabb_max),
                i};
  }
  std::sort(order.begin(), order.end());
  const absl::Span<const float> gi = model.global_importance;
  const auto better = [&](uint32_t a, uint32_t b) { return gi[a] > gi[b] || (gi[a] == gi[b] && a < b); };
  // Level l keeps the top 3l bits of the 63-bit code: cells are runs of equal prefixes.
  for (int level = 0; level < kNoCoverageLevel; ++level) {
    const int shift = 3 * (21 - level);
    for (size_t begin = 0; begin < n;) {
      const uint64_t cell = order[begin].first >> shift;
      uint32_t best = order[begin].second;
      size_t end = begin + 1;
      for (; end < n && order[end].first >> shift == cell; ++end) {
        if (better(order[end].second, best)) best = order[end].second;
      }
      if (levels[best] == kNoCoverageLevel) levels[best] = static_cast<uint8_t>(level);
      begin = end;
    }
  }
  return levels;
}

int CoverageCutoff(absl::Span<const uint8_t> levels, uint32_t count, double share) {
  uint64_t hist[kNoCoverageLevel] = {};
  for (uint8_t l : levels) {
    if (l < kNoCoverageLevel) ++hist[l];
  }
  const double budget = share * static_cast<double>(count);
  int cutoff = -1;
  uint64_t cells = 0;
  for (int l = 0; l < kNoCoverageLevel; ++l) {
    cells += hist[l];
    if (static_cast<double>(cells) > budget) break;
    cutoff = l;
  }
  return cutoff;
}

void AddCoverageBonus(absl::Span<const uint8_t> levels, uint32_t count, double share, absl::Span<float> scores) {
  const int cutoff = CoverageCutoff(levels, count, share);
  for (size_t i = 0; i < scores.size() && i < levels.size(); ++i) {
    if (static_cast<int>(levels[i]) <= cutoff) scores[i] += kCoverageBonus;
  }
}

float GsNetInputScale(const ElasticModel& model) {
  if (!model.gsnet_box_inputs) return 1.0f;
  float half = 0.0f;
  for (int d = 0; d < 3; ++d) {
    half = std::max(half, 0.5f * (model.normalization.aabb_max[d] - model.normalization.aabb_min[d]));
  }
  return half > 0.0f && std::isfinite(half) ? half : 1.0f;
}

GaussianCloud GsNetInputCloud(const ElasticModel& model) {
  const GaussianCloud& c = model.gaussians;
  GaussianCloud in;
  in.sh_degree = c.sh_degree;
  in.positions = c.positions;
  in.log_scales = c.log_scales;
  in.rotations = c.rotations;
  in.opacity_logits.assign(c.size(), 0.0f);  // size() counts opacities; GsNet ignores them
  if (!model.gsnet_box_inputs) return in;
  const float half = GsNetInputScale(model);
  const float log_half = std::log(half);
  float centre[3];
  for (int d = 0; d < 3; ++d) centre[d] = 0.5f * (model.normalization.aabb_min[d] + model.normalization.aabb_max[d]);
  for (size_t i = 0; i < in.positions.size(); ++i) in.positions[i] = (in.positions[i] - centre[i % 3]) / half;
  for (float& s : in.log_scales) s -= log_half;
  return in;
}

namespace {

// Adds the coverage bonus at e when the model asks for one.
void AddModelCoverageBonus(const ElasticModel& model, double e, absl::Span<float> scores,
                           const std::vector<uint8_t>* coverage) {
  if (!(model.coverage_share > 0.0)) return;
  std::vector<uint8_t> computed;
  if (coverage == nullptr) {
    computed = CoverageLevels(model);
    coverage = &computed;
  }
  AddCoverageBonus(*coverage, ElasticCount(model.gaussians.size(), e), model.coverage_share, scores);
}

}  // namespace

void RankingScoresFromMargins(const ElasticModel& model, double e, absl::Span<float> margins,
                              const std::vector<uint8_t>* coverage) {
  const size_t n = margins.size();
  if (model.gi_prior_weight != 0.0 && model.global_importance.size() == n) {
    const std::vector<float> prior = GiLogPrior(model.global_importance);
    const float w = static_cast<float>(model.gi_prior_weight);
    for (size_t i = 0; i < n; ++i) margins[i] += w * prior[i];
  }
  AddModelCoverageBonus(model, e, margins, coverage);
}

std::vector<float> RankingScores(const ElasticModel& model, double e, ThreadPool* pool,
                                 const std::vector<uint8_t>* coverage) {
  const size_t n = model.gaussians.size();
  if (!model.heuristic()) {
    std::vector<float> scores(n);
    if (model.gsnet_box_inputs) {
      GsNetScores(*model.gsnet, GsNetInputCloud(model), static_cast<float>(e), absl::MakeSpan(scores), pool);
    } else {
      GsNetScores(*model.gsnet, model.gaussians, static_cast<float>(e), absl::MakeSpan(scores), pool);
    }
    RankingScoresFromMargins(model, e, absl::MakeSpan(scores), coverage);
    return scores;
  }
  if (!(model.coverage_share > 0.0)) return model.global_importance;
  std::vector<float> scores = GiLogPrior(model.global_importance);
  AddModelCoverageBonus(model, e, absl::MakeSpan(scores), coverage);
  return scores;
}

std::vector<uint32_t> TopK(absl::Span<const float> scores, size_t count, const std::vector<uint8_t>* exclude) {
  std::vector<uint32_t> candidates;
  candidates.reserve(scores.size());
  for (uint32_t i = 0; i < scores.size(); ++i)
    if (!exclude || !(*exclude)[i]) candidates.push_back(i);
  count = std::min(count, candidates.size());
  // NaN scores (impossible for validated models) would break strict weak ordering:
  // rank them last.
  auto better = [&](uint32_t a, uint32_t b) {
    const float sa = std::isnan(scores[a]) ? -INFINITY : scores[a];
    const float sb = std::isnan(scores[b]) ? -INFINITY : scores[b];
    return sa > sb || (sa == sb && a < b);
  };
  std::nth_element(candidates.begin(), candidates.begin() + count, candidates.end(), better);
  candidates.resize(count);
  std::sort(candidates.begin(), candidates.end(), better);
  return candidates;
}

std::vector<std::vector<uint32_t>> NestedAdditions(const ElasticModel& model, absl::Span<const double> ratios,
                                                   ThreadPool* pool, const std::vector<uint8_t>* coverage) {
  const size_t n = model.gaussians.size();
  std::vector<uint8_t> chosen(n, 0);
  size_t held = 0;
  std::vector<std::vector<uint32_t>> levels;
  levels.reserve(ratios.size());
  std::vector<uint8_t> computed;
  if (model.coverage_share > 0.0 && coverage == nullptr) {
    computed = CoverageLevels(model);
    coverage = &computed;
  }
  for (double e : ratios) {
    const size_t count = ElasticCount(n, e);
    const std::vector<float> scores = RankingScores(model, e, pool, coverage);
    std::vector<uint32_t> added = TopK(scores, count > held ? count - held : 0, &chosen);
    for (uint32_t id : added) chosen[id] = 1;
    held += added.size();
    levels.push_back(std::move(added));
  }
  return levels;
}

GaussianCloud TransformedSubset(const ElasticModel& model, absl::Span<const uint32_t> indices, double e,
                                ThreadPool* pool) {
  GaussianCloud subset = model.gaussians.Gather(indices);
  if (model.field.has_value() && !subset.empty() && e < 1.0) {
    std::vector<float> deltas(subset.size() * kDeltaStride);
    EvalTransformField(*model.field, model.normalization, subset.positions, static_cast<float>(e),
                       absl::MakeSpan(deltas), pool);
    ApplyTransformDeltas(deltas, subset);
  }
  return subset;
}

absl::StatusOr<GaussianCloud> ElasticSubset(const ElasticModel& model, double e, ThreadPool* pool) {
  if (absl::Status st = ValidateRatio(e); !st.ok()) return st;
  if (model.gaussians.empty()) return absl::FailedPreconditionError("model has no Gaussians");
  const std::vector<float> scores = RankingScores(model, e, pool);
  std::vector<uint32_t> keep = TopK(scores, ElasticCount(model.gaussians.size(), e));
  std::sort(keep.begin(), keep.end());
  return TransformedSubset(model, keep, e, pool);
}

}  // namespace flexgs

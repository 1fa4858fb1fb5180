#include "stream/level_planner.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "elastic/elastic_selection.h"
#include "scene/cluster_merge.h"
#include "stream/chunk_codec.h"  // kChunkShRestStep, the SH rest quantizer step

namespace flexgs {
namespace {

template <class T>
void Append(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <class T>
void AppendVector(std::string& out, const std::vector<T>& v) {
  Append<uint64_t>(out, v.size());
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Whether Gaussian i of `a` and j of `b` (same SH degree) are the same bits.
bool SameGaussian(const GaussianCloud& a, size_t i, const GaussianCloud& b, size_t j) {
  const size_t k3 = static_cast<size_t>(a.rest_coeffs()) * 3;
  auto same = [](const std::vector<float>& x, size_t xi, const std::vector<float>& y, size_t yi, size_t w) {
    return w == 0 || std::memcmp(&x[xi * w], &y[yi * w], w * sizeof(float)) == 0;
  };
  return same(a.positions, i, b.positions, j, 3) && same(a.log_scales, i, b.log_scales, j, 3) &&
         same(a.rotations, i, b.rotations, j, 4) && same(a.opacity_logits, i, b.opacity_logits, j, 1) &&
         same(a.sh_dc, i, b.sh_dc, j, 3) && same(a.sh_rest, i, b.sh_rest, j, k3);
}

// Where a rung's additions (rank order) are cut: each sub-level's end in them, the
// last the whole rung, with its ratio and the Gaussians held after it.
struct SubLevel {
  size_t end = 0;
  double ratio = 0;
  uint32_t count = 0;
};

std::vector<SubLevel> SubLevels(size_t n, double previous, double ratio, size_t held, size_t added,
                                int stops_per_doubling) {
  std::vector<SubLevel> subs;
  if (stops_per_doubling > 0 && previous > 0) {
    // The last sub-level is at least half a step: no sliver of a level before a rung.
    const double below = ratio * std::exp2(-0.5 / stops_per_doubling);
    for (int j = 1;; ++j) {
      // (exp2 of j / s is exact at whole doublings, so 0.05 x 2^2 is 0.2, not 0.19999.)
      const double r = previous * std::exp2(static_cast<double>(j) / stops_per_doubling);
      if (!(r < below)) break;
      const size_t count = ElasticCount(n, r);
      const size_t end = count > held ? count - held : 0;
      if (end == 0 || end >= added || (!subs.empty() && end <= subs.back().end)) continue;
      subs.push_back({end, r, static_cast<uint32_t>(count)});
    }
  }
  subs.push_back({added, ratio, static_cast<uint32_t>(held + added)});
  return subs;
}

// Appends `rung` to `levels` cut at `subs`: the patches go with the first sub-level
// (they re-pose what the client held before the rung), the replacements with the last
// (they assume all of the rung's additions are held).
void SplitIntoSubLevels(PlanLevel rung, const std::vector<SubLevel>& subs, std::vector<PlanLevel>& levels) {
  if (subs.size() == 1) {
    levels.push_back(std::move(rung));
    return;
  }
  size_t begin = 0;
  for (size_t j = 0; j < subs.size(); ++j) {
    PlanLevel sub;
    sub.ratio = subs[j].ratio;
    sub.pose_ratio = rung.pose_ratio;
    sub.count = subs[j].count;
    sub.added.assign(rung.added.begin() + begin, rung.added.begin() + subs[j].end);
    std::vector<uint32_t> range(subs[j].end - begin);
    for (size_t i = 0; i < range.size(); ++i) range[i] = static_cast<uint32_t>(begin + i);
    sub.added_gaussians = rung.added_gaussians.Gather(range);
    if (j == 0) sub.patches = std::move(rung.patches);
    if (j + 1 == subs.size()) {
      sub.replaced = std::move(rung.replaced);
      sub.replacements = std::move(rung.replacements);
    } else {
      sub.replacements.sh_degree = rung.replacements.sh_degree;
    }
    sub.overlap_with_independent = rung.overlap_with_independent;
    begin = subs[j].end;
    levels.push_back(std::move(sub));
  }
}

}  // namespace

uint64_t Plan::RawLevelBytes(size_t level) const {
  const PlanLevel& l = levels[level];
  return (l.added.size() + l.replaced.size()) * RawBytesPerGaussian(sh_degree) + l.patches.size() * sizeof(float);
}

namespace {

// The trained attributes of what a client holds after rung `e` (client order), when the
// model has a refined rung trained for exactly these Gaussians; NOT_FOUND otherwise
// (another ladder or prefix: the merge is used).
absl::StatusOr<GaussianCloud> RefinedHeld(const ElasticModel& model, double e, const std::vector<uint32_t>& sent) {
  for (const RefinedRung& rung : model.refined_rungs) {
    if (rung.ratio != e || rung.held.size() != sent.size()) continue;
    const HeldOrder h = OrderHeld(sent);
    if (h.digest != rung.held_digest) continue;
    // held[i] = rung.held[rank of sent[i] among the held indices].
    std::vector<uint32_t> rank(sent.size());
    for (uint32_t r = 0; r < h.order.size(); ++r) rank[h.order[r]] = r;
    return rung.held.Gather(rank);
  }
  return absl::NotFoundError("no refined rung");
}

}  // namespace

absl::StatusOr<std::vector<double>> PlanRatios(const ElasticModel& model, const PlanRequest& request) {
  if (absl::Status st = ValidateRatio(request.top_ratio); !st.ok()) return st;
  const std::vector<double>& ladder = request.ladder.empty() ? model.ladder : request.ladder;
  for (size_t i = 0; i < ladder.size(); ++i) {
    if (!(ladder[i] > 0.0 && ladder[i] <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("ladder rung ", ladder[i], " is outside (0, 1]"));
    }
    if (i > 0 && !(ladder[i] > ladder[i - 1])) {
      return absl::InvalidArgumentError("ladder rungs must be strictly increasing");
    }
  }
  std::vector<double> ratios;
  for (double r : ladder)
    if (r < request.top_ratio) ratios.push_back(r);
  ratios.push_back(request.top_ratio);
  return ratios;
}

absl::StatusOr<Plan> PlanLevels(const ElasticModel& model, const PlanRequest& request, ThreadPool* pool) {
  const size_t n = model.gaussians.size();
  if (n == 0) return absl::FailedPreconditionError("model has no Gaussians");
  auto ratios = PlanRatios(model, request);
  if (!ratios.ok()) return ratios.status();
  if (request.stops_per_doubling < 0 || request.stops_per_doubling > kMaxStopsPerDoubling) {
    return absl::InvalidArgumentError(
        absl::StrCat("stops per doubling ", request.stops_per_doubling, " is outside 0..", kMaxStopsPerDoubling));
  }

  Plan plan;
  plan.model_gaussians = static_cast<uint32_t>(n);
  plan.sh_degree = model.gaussians.sh_degree;
  // Send order within a level: Morton order of the original positions, so that
  // consecutive Gaussians are spatial neighbours (tight per-block bounds for the codec).
  const std::array<float, 3>& lo = model.normalization.aabb_min;
  const std::array<float, 3>& hi = model.normalization.aabb_max;
  std::vector<uint8_t> chosen(n, 0);
  std::vector<uint32_t> sent;  // client order: concatenation of every level's `added`
  const std::vector<uint8_t> coverage = model.coverage_share > 0.0 ? CoverageLevels(model) : std::vector<uint8_t>();
  GaussianCloud merged_before;  // merged-level models: what the client holds before this level
  merged_before.sh_degree = model.gaussians.sh_degree;
  double previous_ratio = 0;  // the rung before, 0 for the first
  for (double e : *ratios) {
    PlanLevel level;
    level.ratio = level.pose_ratio = e;
    level.count = ElasticCount(n, e);
    const std::vector<float> scores = RankingScores(model, e, pool, &coverage);
    const size_t need = level.count > sent.size() ? level.count - sent.size() : 0;
    level.added = TopK(scores, need, &chosen);  // rank order
    const std::vector<SubLevel> subs =
        SubLevels(n, previous_ratio, e, sent.size(), level.added.size(), request.stops_per_doubling);
    previous_ratio = e;
    // Rank order across sub-levels (a budget's prefix keeps the best), Morton order within.
    size_t begin = 0;
    for (const SubLevel& sub : subs) {
      std::vector<std::pair<uint64_t, uint32_t>> order;
      order.reserve(sub.end - begin);
      for (size_t i = begin; i < sub.end; ++i) {
        const uint32_t id = level.added[i];
        order.push_back({MortonCode(&model.gaussians.positions[id * 3], lo, hi), id});
      }
      std::sort(order.begin(), order.end());
      for (size_t i = 0; i < order.size(); ++i) level.added[begin + i] = order[i].second;
      begin = sub.end;
    }
    for (uint32_t id : level.added) chosen[id] = 1;
    const size_t previously_sent = sent.size();
    sent.insert(sent.end(), level.added.begin(), level.added.end());
    level.count = static_cast<uint32_t>(sent.size());
    if (model.merged_levels) {
      absl::StatusOr<GaussianCloud> held =
          request.use_refined_rungs ? RefinedHeld(model, e, sent) : absl::NotFoundError("refined rungs not used");
      if (!held.ok() && absl::IsNotFound(held.status())) {
        MergeOptions merge;
        merge.refine_passes = model.merge_refine_passes;
        held = MergeIntoRepresentatives(model.gaussians, sent, merge, pool);
      }
      if (!held.ok()) return held.status();
      // Below e = 1 an invisible change is not sent (the client keeps its older merge,
      // which the next level compares against); at e = 1 every change is, so the full
      // scene is the input bit for bit.
      const double tolerance = e < 1.0 ? model.replacement_tolerance : 0.0;
      for (size_t i = 0; i < previously_sent; ++i) {
        if (ReplacementIsVisible(*held, i, merged_before, i, tolerance)) {
          level.replaced.push_back(static_cast<uint32_t>(i));
        }
      }
      level.replacements = held->Gather(level.replaced);
      std::vector<uint32_t> tail(level.added.size());
      for (size_t i = 0; i < tail.size(); ++i) tail[i] = static_cast<uint32_t>(previously_sent + i);
      level.added_gaussians = held->Gather(tail);
      merged_before.Scatter(level.replaced, level.replacements);
      merged_before.Append(level.added_gaussians);
    } else if (model.pose_at_insertion && model.field.has_value() && e < 1.0) {
      // Poses fixed at insertion: the new Gaussians take their pose at this level's
      // ratio and nothing sent before changes, so the level carries no patches.
      level.added_gaussians = TransformedSubset(model, level.added, e, pool);
    } else {
      // One evaluation of the whole held set in client order, sliced into patches (the
      // Gaussians sent before) and additions: the client's state after this level is then
      // bit-for-bit TransformedSubset(model, sent, e), independent of how the field
      // batches its work. (With poses fixed at insertion this is only the final e = 1
      // level, whose patches restore the original poses.)
      GaussianCloud held = TransformedSubset(model, sent, e, pool);
      if (model.field.has_value() && previously_sent > 0) {
        level.patches.resize(previously_sent * kPatchStride);
        for (size_t i = 0; i < previously_sent; ++i) {
          float* out = &level.patches[i * kPatchStride];
          std::memcpy(out, &held.positions[i * 3], 3 * sizeof(float));
          std::memcpy(out + 3, &held.log_scales[i * 3], 3 * sizeof(float));
          std::memcpy(out + 6, &held.rotations[i * 4], 4 * sizeof(float));
        }
      }
      std::vector<uint32_t> tail(level.added.size());
      for (size_t i = 0; i < tail.size(); ++i) tail[i] = static_cast<uint32_t>(previously_sent + i);
      level.added_gaussians = held.Gather(tail);
    }
    // How far nesting moved this level from the independent top-k at e.
    const std::vector<uint32_t> independent = TopK(scores, level.count);
    size_t overlap = 0;
    for (uint32_t id : independent) overlap += chosen[id];
    level.overlap_with_independent = level.count ? static_cast<double>(overlap) / level.count : 1.0;
    SplitIntoSubLevels(std::move(level), subs, plan.levels);
  }
  return plan;
}

absl::StatusOr<std::vector<MergedRung>> MergedRungs(const ElasticModel& model, ThreadPool* pool) {
  if (!model.merged_levels) return absl::FailedPreconditionError("the model does not have merged levels");
  if (model.ladder.empty()) return absl::InvalidArgumentError("the model's ladder is empty");
  PlanRequest request;
  request.ladder = model.ladder;
  request.top_ratio = model.ladder.back();
  request.use_refined_rungs = false;
  absl::StatusOr<Plan> plan = PlanLevels(model, request, pool);
  if (!plan.ok()) return plan.status();
  std::vector<MergedRung> rungs;
  std::vector<uint32_t> held;
  for (size_t k = 0; k < plan->levels.size() && plan->levels[k].ratio < 1.0; ++k) {
    const PlanLevel& level = plan->levels[k];
    held.insert(held.end(), level.added.begin(), level.added.end());
    absl::StatusOr<GaussianCloud> cloud = LevelCloud(*plan, k);
    if (!cloud.ok()) return cloud.status();
    rungs.push_back({level.ratio, held, *std::move(cloud), level.replaced});
  }
  return rungs;
}

PlanRequest CanonicalPlanRequest(std::vector<double> ladder) {
  PlanRequest request;
  request.top_ratio = 1.0;
  request.ladder = std::move(ladder);
  request.stops_per_doubling = kCanonicalStopsPerDoubling;
  return request;
}

absl::StatusOr<Plan> PlanCanonicalUpTo(const ElasticModel& model, std::vector<double> ladder, double ratio,
                                       ThreadPool* pool) {
  if (!(ratio > 0.0 && ratio <= 1.0))
    return absl::InvalidArgumentError(absl::StrCat("ratio ", ratio, " is outside (0, 1]"));
  PlanRequest request = CanonicalPlanRequest(std::move(ladder));
  const std::vector<double>& rungs = request.ladder.empty() ? model.ladder : request.ladder;
  const auto rung = std::lower_bound(rungs.begin(), rungs.end(), ratio);
  if (rung != rungs.end()) request.top_ratio = *rung;
  return PlanLevels(model, request, pool);
}

int LastLevelWithin(const std::vector<uint64_t>& counts, uint64_t gaussians) {
  // First level holding more, minus one.
  const auto it = std::upper_bound(counts.begin(), counts.end(), gaussians);
  return static_cast<int>(it - counts.begin()) - 1;
}

absl::StatusOr<GaussianCloud> LevelCloud(const Plan& plan, size_t level) {
  if (level >= plan.levels.size()) {
    return absl::OutOfRangeError(
        absl::StrCat("level ", level, " is outside the plan's ", plan.levels.size(), " levels"));
  }
  if (plan.sh_degree < 0 || plan.sh_degree > kMaxShDegree) {
    return absl::InvalidArgumentError(absl::StrCat("plan SH degree ", plan.sh_degree, " is outside 0..3"));
  }
  GaussianCloud cloud;
  cloud.sh_degree = plan.sh_degree;
  const size_t n = plan.levels[level].count;
  // Reserved once up front: the arrays then grow by appends without reallocating.
  cloud.positions.reserve(n * 3);
  cloud.log_scales.reserve(n * 3);
  cloud.rotations.reserve(n * 4);
  cloud.opacity_logits.reserve(n);
  cloud.sh_dc.reserve(n * 3);
  cloud.sh_rest.reserve(n * 3 * static_cast<size_t>(cloud.rest_coeffs()));
  for (size_t k = 0; k <= level; ++k) {
    const PlanLevel& l = plan.levels[k];
    // Patches address the Gaussians held before this level (client order); a plan that
    // disagrees would make the replay index out of bounds, so it is refused, not trusted.
    if (!l.patches.empty()) {
      if (l.patches.size() != cloud.size() * kPatchStride) {
        return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " has ", l.patches.size(),
                                                       " patch floats for ", cloud.size(), " held Gaussians"));
      }
      for (size_t i = 0; i < cloud.size(); ++i) {
        const float* p = &l.patches[i * kPatchStride];
        std::memcpy(&cloud.positions[i * 3], p, 3 * sizeof(float));
        std::memcpy(&cloud.log_scales[i * 3], p + 3, 3 * sizeof(float));
        std::memcpy(&cloud.rotations[i * 4], p + 6, 4 * sizeof(float));
      }
    }
    // Replacements address held Gaussians too, ascending, each at most once.
    if (!l.replaced.empty() || !l.replacements.empty()) {
      const GaussianCloud& r = l.replacements;
      bool ok = r.size() == l.replaced.size() && r.sh_degree == plan.sh_degree && r.Validate().ok();
      for (size_t i = 0; ok && i < l.replaced.size(); ++i) {
        ok = l.replaced[i] < cloud.size() && (i == 0 || l.replaced[i] > l.replaced[i - 1]);
      }
      if (!ok) return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " has inconsistent replacements"));
      cloud.Scatter(l.replaced, r);
    }
    const GaussianCloud& a = l.added_gaussians;
    // (An empty addition may be a default cloud whose SH degree is moot.)
    if (a.size() != l.added.size() || (!a.empty() && a.sh_degree != plan.sh_degree) || !a.Validate().ok()) {
      return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " has inconsistent additions"));
    }
    cloud.Append(a);
    if (cloud.size() != l.count) {
      return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " count ", l.count, " != held ", cloud.size()));
    }
  }
  return cloud;
}

bool ReplacementIsVisible(const GaussianCloud& now, size_t i, const GaussianCloud& held, size_t j, double tolerance) {
  if (SameGaussian(now, i, held, j)) return false;
  if (tolerance <= 0.0) return true;
  const double t = tolerance;
  const auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  if (std::abs(sigmoid(now.opacity_logits[i]) - sigmoid(held.opacity_logits[j])) >= t / 127.0) return true;
  for (int c = 0; c < 3; ++c) {
    if (std::abs(double{now.sh_dc[3 * i + c]} - held.sh_dc[3 * j + c]) >= t * 0.05) return true;
  }
  const size_t k3 = 3 * static_cast<size_t>(now.rest_coeffs());
  for (size_t c = 0; c < k3; ++c) {
    if (std::abs(double{now.sh_rest[k3 * i + c]} - held.sh_rest[k3 * j + c]) >= t * kChunkShRestStep) return true;
  }
  const Eigen::Matrix3d sigma_now = GaussianCovariance(now, i), sigma_held = GaussianCovariance(held, j);
  if ((sigma_now - sigma_held).norm() >= t * 0.2 * sigma_held.norm()) return true;
  const Eigen::Vector3d shift(now.positions[3 * i] - held.positions[3 * j],
                              now.positions[3 * i + 1] - held.positions[3 * j + 1],
                              now.positions[3 * i + 2] - held.positions[3 * j + 2]);
  double largest = held.log_scales[3 * j];
  for (int a = 1; a < 3; ++a) largest = std::max(largest, double{held.log_scales[3 * j + a]});
  return shift.norm() >= t * 0.1 * std::exp(largest);
}

std::string SerializePlan(const Plan& plan) {
  std::string out;
  Append(out, plan.model_gaussians);
  Append(out, plan.sh_degree);
  Append<uint64_t>(out, plan.levels.size());
  for (const PlanLevel& l : plan.levels) {
    Append(out, l.ratio);
    Append(out, l.count);
    AppendVector(out, l.added);
    const GaussianCloud& g = l.added_gaussians;
    for (const auto* v : {&g.positions, &g.log_scales, &g.rotations, &g.opacity_logits, &g.sh_dc, &g.sh_rest})
      AppendVector(out, *v);
    AppendVector(out, l.patches);
    AppendVector(out, l.replaced);
    const GaussianCloud& r = l.replacements;
    for (const auto* v : {&r.positions, &r.log_scales, &r.rotations, &r.opacity_logits, &r.sh_dc, &r.sh_rest})
      AppendVector(out, *v);
    Append(out, l.overlap_with_independent);
  }
  return out;
}

}  // namespace flexgs

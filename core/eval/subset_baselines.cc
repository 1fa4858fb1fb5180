#include "eval/subset_baselines.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/random.h"
#include "elastic/elastic_selection.h"
#include "render/global_importance.h"
#include "render/image_metrics.h"
#include "scene/cluster_merge.h"
#include "stream/level_planner.h"
#include "stream/stream_script.h"

namespace flexgs {
namespace {

struct MethodEntry {
  SubsetMethod method;
  std::string_view name;
};

constexpr MethodEntry kMethods[] = {
    {SubsetMethod::kFull, "full"},
    {SubsetMethod::kElasticIndependent, "elastic-independent"},
    {SubsetMethod::kElasticNested, "elastic-nested"},
    {SubsetMethod::kGiTopK, "gi-topk"},
    {SubsetMethod::kLightGaussian, "lightgaussian"},
    {SubsetMethod::kOpacityTopK, "opacity-topk"},
    {SubsetMethod::kRandom, "random"},
    {SubsetMethod::kGiMerge, "gi-merge"},
    {SubsetMethod::kNestedMerge, "nested-merge"},
    {SubsetMethod::kElasticStream, "elastic-stream"},
};

// The server's canonical plan and, for each ratio, the last of its levels within
// floor(e N) (what a client with that budget holds). OUT_OF_RANGE for a ratio below
// the first level.
absl::StatusOr<std::pair<Plan, std::vector<size_t>>> CanonicalCuts(const ElasticModel& model,
                                                                   absl::Span<const double> ratios, ThreadPool* pool) {
  if (ratios.empty()) return std::make_pair(Plan{}, std::vector<size_t>{});
  auto plan = PlanCanonicalUpTo(model, {}, *std::max_element(ratios.begin(), ratios.end()), pool);
  if (!plan.ok()) return plan.status();
  std::vector<uint64_t> counts;
  for (const PlanLevel& l : plan->levels) counts.push_back(l.count);
  std::vector<size_t> cuts;
  for (double e : ratios) {
    const int last = LastLevelWithin(counts, ElasticCount(model.gaussians.size(), e));
    if (last < 0) {
      return absl::OutOfRangeError(
          absl::StrCat("ratio ", e, " holds fewer Gaussians than the stream's first level (", counts.front(), ")"));
    }
    cuts.push_back(static_cast<size_t>(last));
  }
  return std::make_pair(*std::move(plan), std::move(cuts));
}

// Top ElasticCount(n, e) by score (ties to the lower index), returned in index order so
// every method gathers its Gaussians in the same (model) order.
std::vector<uint32_t> SortedTopK(absl::Span<const float> scores, double e) {
  std::vector<uint32_t> keep = TopK(scores, ElasticCount(scores.size(), e));
  std::sort(keep.begin(), keep.end());
  return keep;
}

// Uniform in [0, m) without modulo bias (rejection of the short last block).
uint64_t Bounded(SplitMix64& rng, uint64_t m) {
  const uint64_t threshold = (0 - m) % m;  // 2^64 mod m
  for (;;) {
    const uint64_t r = rng.Next();
    if (r >= threshold) return r % m;
  }
}

Image Quantized(const Image& image) {
  const std::vector<uint8_t> bytes = image.ToRgb8();
  return Image::FromRgb8(bytes.data(), image.width, image.height, image.channels);
}

double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;  // +inf stays +inf: a perfect view is reported as such
  return s / static_cast<double>(v.size());
}

}  // namespace

std::string_view SubsetMethodName(SubsetMethod method) {
  for (const MethodEntry& e : kMethods)
    if (e.method == method) return e.name;
  return "unknown";
}

absl::StatusOr<SubsetMethod> ParseSubsetMethod(std::string_view name) {
  // (Strings, not string_views: this Abseil's StrCat takes absl::string_view only.)
  std::vector<std::string> names;
  for (const MethodEntry& e : kMethods) {
    if (e.name == name) return e.method;
    names.emplace_back(e.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown method '", std::string(name), "' (known: ", absl::StrJoin(names, ", "), ")"));
}

const std::vector<SubsetMethod>& AllSubsetMethods() {
  static const std::vector<SubsetMethod>* all = [] {
    auto* v = new std::vector<SubsetMethod>;
    for (const MethodEntry& e : kMethods) v->push_back(e.method);
    return v;
  }();
  return *all;
}

absl::StatusOr<std::vector<double>> NormalizeEvalRatios(std::vector<double> ratios) {
  if (ratios.empty()) return absl::InvalidArgumentError("the ratio list is empty");
  for (double e : ratios) {
    if (!(e > 0.0 && e <= 1.0)) return absl::InvalidArgumentError(absl::StrCat("ratio ", e, " is outside (0, 1]"));
  }
  std::sort(ratios.begin(), ratios.end());
  for (size_t i = 1; i < ratios.size(); ++i) {
    if (ratios[i] == ratios[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat("ratio ", ratios[i], " is repeated"));
    }
  }
  return ratios;
}

std::vector<uint32_t> GiTopKIndices(const ElasticModel& model, double e) {
  return SortedTopK(model.global_importance, e);
}

std::vector<uint32_t> LightGaussianTopKIndices(const ElasticModel& model, double e) {
  const std::vector<float> weighted =
      ApplyVolumeWeighting(model.gaussians, model.global_importance, kLightGaussianVolumePower);
  return SortedTopK(weighted, e);
}

std::vector<uint32_t> OpacityTopKIndices(const GaussianCloud& cloud, double e) {
  // The sigmoid is monotonic, so ranking logits ranks opacities (without rounding ties at 1).
  return SortedTopK(cloud.opacity_logits, e);
}

std::vector<uint32_t> RandomSubsetIndices(size_t n, double e, uint64_t seed) {
  const size_t k = ElasticCount(n, e);
  std::vector<uint32_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0u);
  SplitMix64 rng(seed);
  // Partial Fisher-Yates: the first k entries are a uniform k-subset in a seed-fixed order.
  for (size_t i = 0; i < k; ++i) std::swap(perm[i], perm[i + Bounded(rng, n - i)]);
  perm.resize(k);
  std::sort(perm.begin(), perm.end());
  return perm;
}

absl::StatusOr<std::vector<GaussianCloud>> SubsetClouds(const ElasticModel& model, SubsetMethod method,
                                                        absl::Span<const double> ratios, uint64_t seed,
                                                        ThreadPool* pool) {
  if (model.gaussians.empty()) return absl::FailedPreconditionError("model has no Gaussians");
  if (model.global_importance.size() != model.gaussians.size()) {
    return absl::FailedPreconditionError(absl::StrCat("model has ", model.global_importance.size(), " GI scores for ",
                                                      model.gaussians.size(), " Gaussians"));
  }
  for (double e : ratios) {
    if (!(e > 0.0 && e <= 1.0)) return absl::InvalidArgumentError(absl::StrCat("ratio ", e, " is outside (0, 1]"));
  }
  std::vector<GaussianCloud> out;
  out.reserve(ratios.size());
  if (method == SubsetMethod::kElasticNested) {
    // What a client streaming up to the top ratio holds after each level.
    PlanRequest request;
    request.ladder.assign(ratios.begin(), ratios.end());
    request.top_ratio = ratios.empty() ? 0.0 : ratios.back();
    if (ratios.empty()) return out;
    auto plan = PlanLevels(model, request, pool);
    if (!plan.ok()) return plan.status();
    if (plan->levels.size() != ratios.size()) {
      return absl::InternalError(absl::StrCat("plan has ", plan->levels.size(), " levels for ", ratios.size(),
                                              " ratios (ratios must be strictly increasing)"));
    }
    for (size_t k = 0; k < plan->levels.size(); ++k) {
      auto cloud = LevelCloud(*plan, k);
      if (!cloud.ok()) return cloud.status();
      out.push_back(*std::move(cloud));
    }
    return out;
  }
  if (method == SubsetMethod::kElasticStream) {
    auto cuts = CanonicalCuts(model, ratios, pool);
    if (!cuts.ok()) return cuts.status();
    for (size_t last : cuts->second) {
      auto cloud = LevelCloud(cuts->first, last);
      if (!cloud.ok()) return cloud.status();
      out.push_back(*std::move(cloud));
    }
    return out;
  }
  if (method == SubsetMethod::kNestedMerge) {
    const std::vector<std::vector<uint32_t>> additions = NestedAdditions(model, ratios, pool);
    std::vector<uint32_t> kept;
    for (const std::vector<uint32_t>& level : additions) {
      kept.insert(kept.end(), level.begin(), level.end());
      auto cloud = MergeIntoRepresentatives(model.gaussians, kept, MergeOptions{}, pool);
      if (!cloud.ok()) return cloud.status();
      out.push_back(*std::move(cloud));
    }
    return out;
  }
  for (double e : ratios) {
    switch (method) {
      case SubsetMethod::kFull:
        return absl::InvalidArgumentError("'full' is the whole model, not a subset method");
      case SubsetMethod::kElasticIndependent: {
        auto cloud = ElasticSubset(model, e, pool);
        if (!cloud.ok()) return cloud.status();
        out.push_back(*std::move(cloud));
        break;
      }
      case SubsetMethod::kGiTopK:
        out.push_back(model.gaussians.Gather(GiTopKIndices(model, e)));
        break;
      case SubsetMethod::kLightGaussian:
        out.push_back(model.gaussians.Gather(LightGaussianTopKIndices(model, e)));
        break;
      case SubsetMethod::kOpacityTopK:
        out.push_back(model.gaussians.Gather(OpacityTopKIndices(model.gaussians, e)));
        break;
      case SubsetMethod::kRandom:
        out.push_back(model.gaussians.Gather(RandomSubsetIndices(model.gaussians.size(), e, seed)));
        break;
      case SubsetMethod::kGiMerge: {
        auto cloud = MergeIntoRepresentatives(model.gaussians, GiTopKIndices(model, e), MergeOptions{}, pool);
        if (!cloud.ok()) return cloud.status();
        out.push_back(*std::move(cloud));
        break;
      }
      case SubsetMethod::kElasticNested:
      case SubsetMethod::kNestedMerge:
      case SubsetMethod::kElasticStream:
        break;  // handled above
    }
  }
  return out;
}

OrbitOptions HeldOutOrbitOptions(int gi_views, double gi_elevation_deg, int count, int width, int height) {
  OrbitOptions o;
  o.count = count;
  o.width = width;
  o.height = height;
  o.azimuth_offset_deg = gi_views > 0 ? 180.0 / gi_views : 0.0;
  o.elevation_deg = gi_elevation_deg + kHeldOutElevationStepDeg;
  if (o.elevation_deg > 80.0) o.elevation_deg = gi_elevation_deg - kHeldOutElevationStepDeg;
  return o;
}

EvalMethod BuiltinEvalMethod(const ElasticModel& model, SubsetMethod method, uint64_t seed, ThreadPool* pool) {
  EvalMethod m;
  m.name = std::string(SubsetMethodName(method));
  m.clouds = [&model, method, seed, pool](absl::Span<const double> ratios) {
    return SubsetClouds(model, method, ratios, seed, pool);
  };
  return m;
}

absl::StatusOr<std::vector<Image>> RenderTargets(const GaussianCloud& cloud, absl::Span<const Camera> cameras,
                                                 const EvalOptions& options, RasterBackend& backend) {
  std::vector<Image> targets;
  targets.reserve(cameras.size());
  RenderOptions render = options.render;
  render.want_aux = false;
  for (const Camera& cam : cameras) {
    auto r = backend.Render(cloud, cam, render);
    if (!r.ok()) return r.status();
    targets.push_back(options.quantize_8bit ? Quantized(r->color) : std::move(r->color));
  }
  return targets;
}

absl::StatusOr<CloudScore> ScoreCloud(const GaussianCloud& cloud, absl::Span<const Camera> cameras,
                                      absl::Span<const Image> targets, const EvalOptions& options,
                                      RasterBackend& backend) {
  if (cameras.size() != targets.size()) {
    return absl::InvalidArgumentError(absl::StrCat(cameras.size(), " cameras but ", targets.size(), " target images"));
  }
  CloudScore score;
  score.contacts.resize(options.contact_views.size());
  score.count = static_cast<uint32_t>(cloud.size());
  score.raw_bytes = RawBytesPerGaussian(cloud.sh_degree) * cloud.size();
  RenderOptions render = options.render;
  render.want_aux = false;
  for (size_t v = 0; v < cameras.size(); ++v) {
    auto r = backend.Render(cloud, cameras[v], render);
    if (!r.ok()) return r.status();
    Image img = options.quantize_8bit ? Quantized(r->color) : std::move(r->color);
    const Image target = options.quantize_8bit ? Quantized(targets[v]) : targets[v];
    auto psnr = Psnr(img, target);
    if (!psnr.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("view ", cameras[v].name, ": ", psnr.status().message()));
    }
    auto ssim = Ssim(img, target);
    if (!ssim.ok()) return ssim.status();
    score.psnr.push_back(*psnr);
    score.ssim.push_back(*ssim);
    for (size_t c = 0; c < options.contact_views.size(); ++c) {
      if (options.contact_views[c] == v) score.contacts[c] = img;
    }
  }
  score.mean_psnr = Mean(score.psnr);
  score.mean_ssim = Mean(score.ssim);
  return score;
}

absl::StatusOr<EvalResult> EvaluateMethods(const ElasticModel& model, absl::Span<const Camera> cameras,
                                           std::vector<Image> targets, absl::Span<const double> ratios,
                                           bool include_full, const std::vector<EvalMethod>& methods,
                                           const EvalOptions& options, RasterBackend& backend) {
  if (cameras.empty()) return absl::InvalidArgumentError("evaluation needs at least one view");
  for (size_t view : options.contact_views) {
    if (view >= cameras.size()) {
      return absl::OutOfRangeError(absl::StrCat("contact view ", view, " is outside the ", cameras.size(), " views"));
    }
  }
  EvalResult result;
  result.ratios.assign(ratios.begin(), ratios.end());
  if (targets.empty()) {
    auto rendered = RenderTargets(model.gaussians, cameras, options, backend);
    if (!rendered.ok()) return rendered.status();
    targets = *std::move(rendered);
  } else if (options.quantize_8bit) {
    for (Image& t : targets) t = Quantized(t);
  }
  result.targets = std::move(targets);
  const auto seconds_since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const auto fmt_psnr = [](double p) { return std::isinf(p) ? std::string("inf") : absl::StrFormat("%.2f", p); };

  if (include_full) {
    auto score = ScoreCloud(model.gaussians, cameras, result.targets, options, backend);
    if (!score.ok()) return score.status();
    score->ratio = 1.0;
    spdlog::info("full: {} dB, SSIM {:.4f}", fmt_psnr(score->mean_psnr), score->mean_ssim);
    result.rows.push_back({"full", {*std::move(score)}, 0.0});
  }
  for (const EvalMethod& method : methods) {
    const auto t0 = std::chrono::steady_clock::now();
    auto clouds = method.clouds(ratios);
    if (!clouds.ok()) {
      return absl::Status(clouds.status().code(), absl::StrCat(method.name, ": ", clouds.status().message()));
    }
    if (clouds->size() != ratios.size()) {
      return absl::InternalError(
          absl::StrCat(method.name, " made ", clouds->size(), " clouds for ", ratios.size(), " ratios"));
    }
    EvalRow row;
    row.method = method.name;
    row.select_seconds = seconds_since(t0);
    std::string line;
    for (size_t k = 0; k < ratios.size(); ++k) {
      auto score = ScoreCloud((*clouds)[k], cameras, result.targets, options, backend);
      if (!score.ok()) {
        return absl::Status(score.status().code(), absl::StrCat(method.name, ": ", score.status().message()));
      }
      score->ratio = ratios[k];
      absl::StrAppend(&line, absl::StrFormat(" %g%%: %s dB", ratios[k] * 100.0, fmt_psnr(score->mean_psnr)));
      row.cells.push_back(*std::move(score));
    }
    spdlog::info("{}:{}", method.name, line);
    result.rows.push_back(std::move(row));
  }
  return result;
}

namespace {

// Each level's encoded payload in the script the server builds for `request`.
absl::StatusOr<std::vector<uint64_t>> ScriptLevelBytes(const ElasticModel& model, const PlanRequest& request,
                                                       ThreadPool* pool) {
  auto plan = PlanLevels(model, request, pool);
  if (!plan.ok()) return plan.status();
  ScriptOptions options;  // the server's defaults: quantized, 256 KiB chunks
  options.sh_degree = plan->sh_degree;
  auto script = BuildStreamScript(*plan, options);
  if (!script.ok()) return script.status();
  std::vector<uint64_t> bytes;
  for (const StreamLevelSummary& level : script->levels) bytes.push_back(level.payload_bytes);
  return bytes;
}

}  // namespace

absl::StatusOr<std::vector<uint64_t>> NestedStreamLevelBytes(const ElasticModel& model, absl::Span<const double> ratios,
                                                             ThreadPool* pool) {
  if (ratios.empty()) return std::vector<uint64_t>{};
  PlanRequest request;
  request.ladder.assign(ratios.begin(), ratios.end());
  request.top_ratio = ratios.back();
  auto bytes = ScriptLevelBytes(model, request, pool);
  if (bytes.ok() && bytes->size() != ratios.size()) {
    return absl::InternalError(absl::StrCat("stream has ", bytes->size(), " levels for ", ratios.size(),
                                            " ratios (ratios must be strictly increasing)"));
  }
  return bytes;
}

absl::StatusOr<std::vector<uint64_t>> SingleLevelStreamBytes(const ElasticModel& model, absl::Span<const double> ratios,
                                                             ThreadPool* pool) {
  std::vector<uint64_t> out;
  for (double e : ratios) {
    PlanRequest request;
    request.ladder = {e};
    request.top_ratio = e;
    auto bytes = ScriptLevelBytes(model, request, pool);
    if (!bytes.ok()) return bytes.status();
    if (bytes->size() != 1) {
      return absl::InternalError(absl::StrCat("a one-ratio stream at ", e, " has ", bytes->size(), " levels"));
    }
    out.push_back(bytes->front());
  }
  return out;
}

absl::StatusOr<std::vector<uint64_t>> CanonicalStreamCutBytes(const ElasticModel& model,
                                                              absl::Span<const double> ratios, ThreadPool* pool) {
  if (ratios.empty()) return std::vector<uint64_t>{};
  auto cuts = CanonicalCuts(model, ratios, pool);
  if (!cuts.ok()) return cuts.status();
  ScriptOptions options;  // the server's defaults: quantized, 256 KiB chunks
  options.sh_degree = cuts->first.sh_degree;
  auto script = BuildStreamScript(cuts->first, options);
  if (!script.ok()) return script.status();
  std::vector<uint64_t> out;
  size_t next = 0;  // the first level not yet counted
  for (size_t last : cuts->second) {
    uint64_t bytes = 0;
    for (; next <= last; ++next) bytes += script->levels[next].payload_bytes;
    out.push_back(bytes);
  }
  return out;
}

}  // namespace flexgs

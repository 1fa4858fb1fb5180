// Evaluating an elastic model against baseline subsets at several ratios.
//
// Every method answers the same question -- which floor(e N) Gaussians (at least 1) to
// keep at ratio e, and what they look like -- so they can be compared image for image:
//
//   full                 the whole model (the reference when there are no test images)
//   elastic-independent  ElasticSubset(model, e): selector + transform, top-k per ratio
//   elastic-nested       LevelCloud of PlanLevels(ladder = the ratios): a stream planned for them
//   elastic-stream       the server's canonical stream (the model's ladder, stops between
//                        rungs) cut at floor(e N): what a client whose budget is e holds
//   gi-topk              top-k by the bundle's Global Importance, no transform (LightGS*)
//   lightgaussian        top-k by GI * (V / V_ref)^0.1 (LightGaussian's volume weighting)
//   opacity-topk         top-k by opacity
//   random               a seeded uniform subset
//   gi-merge             gi-topk's Gaussians, each merged with the dropped ones nearest it
//                        (scene/cluster_merge: decimation's moment match onto a selection)
//   nested-merge         the planner's nested selection (no field), merged the same way
//
// Every selection is a pure function of (model, e, seed): ties go to the lower index and
// the random subset uses SplitMix64, so results are identical across machines and thread
// counts. Evaluation renders each subset from held-out views and scores it with PSNR and
// SSIM against the views' targets: ground-truth images, or the full model's renders
// (distillation protocol). External methods (e.g. PlayCanvas splat-transform) plug in as
// an EvalMethod that builds its own clouds.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"
#include "elastic/elastic_model.h"
#include "render/rasterizer.h"
#include "scene/camera.h"
#include "scene/image.h"
#include "scene/orbit.h"

namespace flexgs {

enum class SubsetMethod {
  kFull,
  kElasticIndependent,
  kElasticNested,
  kGiTopK,
  kLightGaussian,
  kOpacityTopK,
  kRandom,
  kGiMerge,
  kNestedMerge,
  kElasticStream,
};

// LightGaussian's v_pow (prune.py default and every script of the reference).
inline constexpr double kLightGaussianVolumePower = 0.1;

// The table name of a method ("gi-topk", ...).
std::string_view SubsetMethodName(SubsetMethod method);

// The method called `name`; InvalidArgument listing the known names otherwise.
absl::StatusOr<SubsetMethod> ParseSubsetMethod(std::string_view name);

// Every built-in method, in table order (full first).
const std::vector<SubsetMethod>& AllSubsetMethods();

// Checks an evaluation ratio list (non-empty, every value in (0, 1], no duplicates) and
// returns it sorted ascending; InvalidArgument naming the offending value otherwise.
absl::StatusOr<std::vector<double>> NormalizeEvalRatios(std::vector<double> ratios);

// Selections at ratio e: exactly ElasticCount(N, e) model indices, sorted ascending.
std::vector<uint32_t> GiTopKIndices(const ElasticModel& model, double e);
std::vector<uint32_t> LightGaussianTopKIndices(const ElasticModel& model, double e);
std::vector<uint32_t> OpacityTopKIndices(const GaussianCloud& cloud, double e);
// The first ElasticCount(n, e) entries of a seeded uniform permutation of 0..n-1, so the
// subsets of one seed are nested across ratios.
std::vector<uint32_t> RandomSubsetIndices(size_t n, double e, uint64_t seed);

// The clouds `method` keeps at each of `ratios` (as NormalizeEvalRatios returns them).
// kFull is not a subset method: InvalidArgument.
absl::StatusOr<std::vector<GaussianCloud>> SubsetClouds(const ElasticModel& model, SubsetMethod method,
                                                        absl::Span<const double> ratios, uint64_t seed,
                                                        ThreadPool* pool);

// Held-out orbit views for a model whose Global Importance came from a ring of `gi_views`
// cameras at `gi_elevation_deg`: azimuths offset by half that ring's spacing, and an
// elevation kHeldOutElevationStepDeg above it (below when that would pass 80 degrees), so
// no evaluation view is a GI view.
inline constexpr double kHeldOutElevationStepDeg = 15.0;
OrbitOptions HeldOutOrbitOptions(int gi_views, double gi_elevation_deg, int count, int width, int height);

// A method to evaluate: its table name and how it builds one cloud per ratio.
struct EvalMethod {
  std::string name;
  std::function<absl::StatusOr<std::vector<GaussianCloud>>(absl::Span<const double> ratios)> clouds;
};

// A built-in subset method (not kFull) as an EvalMethod; `model` and `pool` must outlive it.
EvalMethod BuiltinEvalMethod(const ElasticModel& model, SubsetMethod method, uint64_t seed, ThreadPool* pool);

struct EvalOptions {
  RenderOptions render;
  // Compare 8-bit images, as the reference metrics.py does (it reloads saved PNGs).
  bool quantize_8bit = true;
  // The views whose renders are kept for contact sheets (e.g. a framed view and a close-up).
  std::vector<size_t> contact_views = {0};
};

// One cloud rendered from every view and scored against the targets.
struct CloudScore {
  double ratio = 1.0;
  uint32_t count = 0;
  uint64_t raw_bytes = 0;               // float32 attribute bytes (RawBytesPerGaussian * count)
  std::vector<double> psnr, ssim;       // per view; PSNR is +inf for an identical image
  double mean_psnr = 0, mean_ssim = 0;  // averaged over views (as the reference does)
  std::vector<Image> contacts;          // the renders of EvalOptions::contact_views, in that order
};

// Renders `cloud` from each camera and scores it against targets[i] (same size as
// cameras[i]; quantised like the renders when options.quantize_8bit).
absl::StatusOr<CloudScore> ScoreCloud(const GaussianCloud& cloud, absl::Span<const Camera> cameras,
                                      absl::Span<const Image> targets, const EvalOptions& options,
                                      RasterBackend& backend);

// The full model's renders, the targets of the distillation protocol (8-bit quantised
// when options.quantize_8bit).
absl::StatusOr<std::vector<Image>> RenderTargets(const GaussianCloud& cloud, absl::Span<const Camera> cameras,
                                                 const EvalOptions& options, RasterBackend& backend);

struct EvalRow {
  std::string method;
  std::vector<CloudScore> cells;  // one per ratio (a single ratio-1 cell for "full")
  double select_seconds = 0;      // building the clouds (selection, transform, external tools)
};

struct EvalResult {
  std::vector<double> ratios;
  std::vector<Image> targets;  // what every score compares against, one per view
  std::vector<EvalRow> rows;   // in the order of the methods, "full" first when included
};

// Scores `methods` at every ratio (and the full model first when `include_full`) from
// `cameras` against `targets` -- or, when `targets` is empty, against the full model's
// renders. Logs one line per method.
absl::StatusOr<EvalResult> EvaluateMethods(const ElasticModel& model, absl::Span<const Camera> cameras,
                                           std::vector<Image> targets, absl::Span<const double> ratios,
                                           bool include_full, const std::vector<EvalMethod>& methods,
                                           const EvalOptions& options, RasterBackend& backend);

// Bytes on the wire: the encoded payload (chunk_codec blocks, quantized, at the model's
// SH degree and the server's default chunk size) of the streams our server sends, one
// entry per ratio of `ratios` (as NormalizeEvalRatios returns them). Protobuf framing
// (under 64 bytes a chunk) is not counted.
//   Nested: one stream whose ladder is `ratios` up to the largest; entry k is level k's
//   own blocks (additions and patches), so a client holding level k has received the
//   sum of entries 0..k.
//   Single level: for each ratio a separate stream of that ratio alone (a client that
//   asks for exactly it), as elastic-independent's subsets would be delivered.
absl::StatusOr<std::vector<uint64_t>> NestedStreamLevelBytes(const ElasticModel& model, absl::Span<const double> ratios,
                                                             ThreadPool* pool);
absl::StatusOr<std::vector<uint64_t>> SingleLevelStreamBytes(const ElasticModel& model, absl::Span<const double> ratios,
                                                             ThreadPool* pool);
//   Canonical: the server's stream (CanonicalPlanRequest) cut at each ratio's count;
//   entry k is what the cut at ratios[k] adds to the one before (cumulative, like nested).
absl::StatusOr<std::vector<uint64_t>> CanonicalStreamCutBytes(const ElasticModel& model,
                                                              absl::Span<const double> ratios, ThreadPool* pool);

}  // namespace flexgs

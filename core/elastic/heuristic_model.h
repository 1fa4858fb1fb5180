// The heuristic elastic model: a scene's Gaussians ranked by their Global Importance,
// with no networks (see elastic_model.h). What `flexgs elasticize` writes to a bundle
// and what a server serves for a plain PLY, made by one function so they cannot drift.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elastic/elastic_model.h"
#include "render/global_importance.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

struct HeuristicModelOptions {
  GiVariant gi_variant = GiVariant::kFlexGs;
  int threads = 0;                                      // CPU threads for Global Importance (0 = all)
  std::vector<double> ladder;                           // the default streaming ladder; empty: ElasticModel's
  double coverage_share = 0.0;                          // see ElasticModel::coverage_share
  bool merged_levels = false;                           // see ElasticModel::merged_levels
  double replacement_tolerance = 0.0;                   // see ElasticModel::replacement_tolerance
  int merge_refine_passes = kDefaultMergeRefinePasses;  // see ElasticModel::merge_refine_passes
  // The training summary: {"mode": "heuristic", "source": source} and, when not empty,
  // "gi_cameras": this JSON object (which views GI saw, so `flexgs eval` can pick test
  // views that are none of them).
  std::string source;
  std::string gi_cameras_json;
};

// The name a GI variant has in a model's provenance (GiProvenance::variant).
const char* GiVariantName(GiVariant variant);

// The heuristic model of `cloud`: Global Importance over `cameras` (all of one size),
// the field normalisation of the positions' full extent, the ladder and the summary.
// The digest is left empty: the bundle writer sets it, or the caller derives one.
absl::StatusOr<ElasticModel> MakeHeuristicModel(GaussianCloud cloud, const std::vector<Camera>& cameras,
                                                const HeuristicModelOptions& options);

}  // namespace flexgs

#include "elastic/heuristic_model.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "elastic/transform_field.h"
#include "render/cpu_rasterizer.h"

namespace flexgs {

const char* GiVariantName(GiVariant variant) {
  return variant == GiVariant::kLightGaussianVolume ? "lightgaussian_volume" : "flexgs";
}

absl::StatusOr<ElasticModel> MakeHeuristicModel(GaussianCloud cloud, const std::vector<Camera>& cameras,
                                                const HeuristicModelOptions& options) {
  if (cameras.empty()) return absl::InvalidArgumentError("a heuristic model needs at least one GI view");
  nlohmann::json summary = {{"mode", "heuristic"}, {"source", options.source}};
  if (!options.gi_cameras_json.empty()) {
    // A caller's description travels as text so that no JSON type crosses the header;
    // parsing what nlohmann wrote and dumping it again gives the same text.
    nlohmann::json gi_cameras = nlohmann::json::parse(options.gi_cameras_json, nullptr, /*allow_exceptions=*/false);
    if (!gi_cameras.is_object()) return absl::InvalidArgumentError("the GI camera description is not a JSON object");
    summary["gi_cameras"] = std::move(gi_cameras);
  }
  CpuRasterizer raster(options.threads);
  GlobalImportanceOptions gi_options;
  gi_options.variant = options.gi_variant;
  FLEXGS_ASSIGN_OR_RETURN(std::vector<float> gi, ComputeGlobalImportance(cloud, cameras, gi_options, raster));

  ElasticModel model;
  model.gaussians = std::move(cloud);
  model.global_importance = std::move(gi);
  model.gi = {GiVariantName(options.gi_variant), static_cast<int>(cameras.size()), cameras[0].width, cameras[0].height};
  model.normalization = ExtentNormalization(model.gaussians);
  if (!options.ladder.empty()) model.ladder = options.ladder;
  model.coverage_share = options.coverage_share;
  model.merged_levels = options.merged_levels;
  model.replacement_tolerance = options.replacement_tolerance;
  model.merge_refine_passes = options.merged_levels ? options.merge_refine_passes : kDefaultMergeRefinePasses;
  model.training_summary_json = summary.dump();
  return model;
}

}  // namespace flexgs

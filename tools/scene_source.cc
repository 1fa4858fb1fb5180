#include "tools/scene_source.h"

#include <array>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "elastic/elastic_selection.h"
#include "elastic/model_bundle.h"
#include "io/camera_io.h"
#include "io/ply_io.h"
#include "scene/image.h"
#include "scene/orbit.h"

namespace flexgs::tools {

bool IsModelBundle(const std::string& path) {
  return std::filesystem::is_directory(path) &&
         std::filesystem::exists(std::filesystem::path(path) / kBundleManifestFile);
}

absl::StatusOr<GaussianCloud> LoadScene(const std::string& path) {
  if (IsModelBundle(path)) {
    auto model = ReadModelBundle(path);
    if (!model.ok()) return model.status();
    return std::move(model->gaussians);
  }
  return ReadGaussianPly(path);
}

absl::StatusOr<GaussianCloud> LoadSceneAtRatio(const std::string& path, double ratio, SceneBounds* view_bounds) {
  if (absl::Status st = ValidateRatio(ratio); !st.ok()) return st;
  if (!IsModelBundle(path)) {
    if (ratio != 1.0) {
      return absl::InvalidArgumentError(absl::StrCat("--ratio ", ratio, " needs an elastic model bundle; '", path,
                                                     "' is a plain scene (make one with `flexgs elasticize`)"));
    }
    auto cloud = ReadGaussianPly(path);
    if (cloud.ok()) *view_bounds = RobustBounds(*cloud);
    return cloud;
  }
  auto model = ReadModelBundle(path);
  if (!model.ok()) return model.status();
  *view_bounds = RobustBounds(model->gaussians);
  if (ratio == 1.0) return std::move(model->gaussians);
  ThreadPool pool;
  return ElasticSubset(*model, ratio, &pool);
}

absl::StatusOr<std::vector<Camera>> ResolveCameras(const SceneBounds& bounds, const ViewSpec& spec,
                                                   bool resize_dataset_cameras) {
  if (!spec.cameras_path.empty()) {
    auto cams = LoadCameras(spec.cameras_path);
    if (!cams.ok()) return cams.status();
    if (cams->empty()) return absl::InvalidArgumentError(absl::StrCat("no cameras in ", spec.cameras_path));
    if (resize_dataset_cameras) {
      for (Camera& c : *cams) c = c.Resized(spec.width, spec.height);
    }
    return cams;
  }
  if (spec.orbit <= 0) return absl::InvalidArgumentError("give --orbit N (N >= 1) or --cameras FILE|DIR");
  OrbitOptions opt;
  opt.count = spec.orbit;
  opt.width = spec.width;
  opt.height = spec.height;
  opt.fov_x_deg = spec.fov_x_deg;
  opt.elevation_deg = spec.elevation_deg;
  if (absl::Status st = ValidateOrbitOptions(opt); !st.ok()) return st;
  return OrbitCameras(bounds, opt);
}

absl::StatusOr<std::array<float, 3>> ParseBackground(const std::string& text) { return ParseRgbColor(text); }

}  // namespace flexgs::tools

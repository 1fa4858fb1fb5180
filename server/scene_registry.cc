#include "server/scene_registry.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/cpu_rasterizer.h"
#include "core/file_io.h"
#include "core/global_importance.h"
#include "core/model_bundle.h"
#include "core/orbit.h"
#include "core/ply_io.h"
#include "core/sha256.h"
#include "spdlog/spdlog.h"

namespace flexgs::server {
namespace {

namespace fs = std::filesystem;

// Resume tokens carry the scene id; keep ids well inside what they can hold.
constexpr size_t kMaxSceneIdLength = 256;

// Field/Morton normalisation box = the full extent of the positions (the same rule
// as `flexgs elasticize`, so a PLY served here plans like its elasticized bundle).
FieldNormalization NormalizationFromPositions(const GaussianCloud& cloud) {
  FieldNormalization n;
  if (cloud.empty()) return n;
  n.aabb_min = {INFINITY, INFINITY, INFINITY};
  n.aabb_max = {-INFINITY, -INFINITY, -INFINITY};
  for (size_t i = 0; i < cloud.size(); ++i) {
    for (int d = 0; d < 3; ++d) {
      n.aabb_min[d] = std::min(n.aabb_min[d], cloud.positions[i * 3 + d]);
      n.aabb_max[d] = std::max(n.aabb_max[d], cloud.positions[i * 3 + d]);
    }
  }
  return n;
}

bool IsBundleDir(const fs::directory_entry& e) {
  std::error_code ec;
  return e.path().extension() == ".flexgs" && e.is_directory(ec);
}

bool IsPlyFile(const fs::directory_entry& e) {
  std::error_code ec;
  return e.path().extension() == ".ply" && e.is_regular_file(ec);
}

}  // namespace

absl::StatusOr<ElasticModel> HeuristicModelFromPly(const std::string& path, const SceneLoadOptions& options) {
  auto bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  auto cloud = ParseGaussianPly(*bytes);
  if (!cloud.ok()) return absl::Status(cloud.status().code(), absl::StrCat(path, ": ", cloud.status().message()));
  OrbitOptions orbit;
  orbit.count = options.gi_views;
  orbit.width = options.gi_size;
  orbit.height = options.gi_size;
  auto cams = MakeOrbitCameras(*cloud, orbit);
  if (!cams.ok()) return cams.status();
  CpuRasterizer raster(options.threads);
  auto gi = ComputeGlobalImportance(*cloud, *cams, GlobalImportanceOptions{}, raster);
  if (!gi.ok()) return gi.status();

  ElasticModel model;
  model.gaussians = *std::move(cloud);
  model.global_importance = *std::move(gi);
  model.gi = {"flexgs", orbit.count, orbit.width, orbit.height};
  model.normalization = NormalizationFromPositions(model.gaussians);
  model.training_summary_json = R"({"mode":"heuristic","source":"ply"})";
  // The digest pins everything the plan depends on: the file's content, how GI was
  // computed (GI is deterministic for a given input and view set), and the ladder.
  Sha256 h;
  h.Update("flexgs-ply-heuristic/1\n");
  h.Update(Sha256Hex(*bytes));
  h.Update(absl::StrFormat("\ngi=%s views=%d %dx%d\nladder=", model.gi.variant, model.gi.views, model.gi.width,
                           model.gi.height));
  for (double r : model.ladder) h.Update(absl::StrFormat("%.17g,", r));
  model.digest = h.FinishHex();
  return model;
}

absl::Status SceneRegistry::LoadDirectory(const std::string& dir, const SceneLoadOptions& options,
                                          const std::atomic<bool>* stop) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list scenes directory ", dir, ": ", ec.message()));
  std::vector<fs::directory_entry> entries;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return absl::InternalError(absl::StrCat("listing ", dir, ": ", ec.message()));
    if (IsBundleDir(*it) || IsPlyFile(*it)) entries.push_back(*it);
  }
  std::sort(entries.begin(), entries.end(),
            [](const fs::directory_entry& a, const fs::directory_entry& b) { return a.path() < b.path(); });
  for (const fs::directory_entry& e : entries) {
    if (stop != nullptr && stop->load()) {
      spdlog::warn("scene loading stopped early (shutdown requested)");
      break;
    }
    const std::string path = e.path().string();
    const std::string id = e.path().stem().string();
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<ElasticModel> model =
        IsBundleDir(e) ? ReadModelBundle(path) : HeuristicModelFromPly(path, options);
    absl::Status st = model.ok() ? Add(id, path, *std::move(model)) : model.status();
    if (!st.ok()) {
      spdlog::error("skipping scene {}: {}", path, std::string(st.message()));
      continue;
    }
    const auto scene = Find(id);
    spdlog::info("loaded scene '{}' from {}: {} Gaussians, SH {}, {} in {:.2f} s (digest {})", id, path,
                 scene->model->gaussians.size(), scene->model->gaussians.sh_degree,
                 scene->model->heuristic() ? "heuristic" : "trained",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 scene->model->digest.substr(0, 16));
  }
  return absl::OkStatus();
}

absl::Status SceneRegistry::Add(const std::string& id, const std::string& source, ElasticModel model) {
  if (id.empty() || id.size() > kMaxSceneIdLength) {
    return absl::InvalidArgumentError(absl::StrFormat("scene id '%s' must have 1 to %d characters", id,
                                                      kMaxSceneIdLength));
  }
  if (model.digest.empty()) return absl::InvalidArgumentError(absl::StrCat("scene ", id, " has no model digest"));
  if (model.gaussians.empty()) return absl::InvalidArgumentError(absl::StrCat("scene ", id, " has no Gaussians"));
  auto scene = std::make_shared<Scene>();
  scene->id = id;
  scene->source = source;
  scene->bounds_min = {INFINITY, INFINITY, INFINITY};
  scene->bounds_max = {-INFINITY, -INFINITY, -INFINITY};
  const GaussianCloud& g = model.gaussians;
  for (size_t i = 0; i < g.size(); ++i) {
    for (int d = 0; d < 3; ++d) {
      scene->bounds_min[d] = std::min(scene->bounds_min[d], g.positions[i * 3 + d]);
      scene->bounds_max[d] = std::max(scene->bounds_max[d], g.positions[i * 3 + d]);
    }
  }
  const SceneBounds view = RobustBounds(g);
  for (int d = 0; d < 3; ++d) {
    scene->view_min[d] = static_cast<float>(view.lo[d]);
    scene->view_max[d] = static_cast<float>(view.hi[d]);
  }
  scene->model = std::make_shared<const ElasticModel>(std::move(model));
  std::lock_guard<std::mutex> lock(mu_);
  if (scenes_.count(id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("scene id '", id, "' is already taken by ", scenes_[id]->source));
  }
  scenes_.emplace(id, std::move(scene));
  return absl::OkStatus();
}

std::shared_ptr<const Scene> SceneRegistry::Find(absl::string_view id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = scenes_.find(id);
  return it == scenes_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const Scene>> SceneRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<const Scene>> out;
  out.reserve(scenes_.size());
  for (const auto& [id, scene] : scenes_) out.push_back(scene);
  return out;
}

size_t SceneRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return scenes_.size();
}

}  // namespace flexgs::server

// SceneRegistry: the scenes a server can stream, loaded once from a directory and
// then read-only (models are shared, immutable, and outlive any stream using them).
//
// A scenes directory holds model bundles (`<id>.flexgs/`, see core/model_bundle.h)
// and plain scenes (`<id>.ply`). A plain PLY is served in heuristic mode: its Global
// Importance is computed at load time over orbit views (as `flexgs elasticize` does),
// and its digest is derived from the file's bytes and those GI settings, so a
// restart with the same file gives the same digest and resume tokens stay valid.
// A scene that fails to load is logged with the reason and skipped.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/elastic_model.h"

namespace flexgs::server {

struct SceneLoadOptions {
  int gi_views = 16;   // orbit views for a plain PLY's Global Importance
  int gi_size = 256;   // square render size of those views
  int threads = 0;     // CPU threads for GI (0 = all)
};

struct Scene {
  std::string id;
  std::string source;  // file or bundle directory it came from ("" when added in memory)
  std::shared_ptr<const ElasticModel> model;
  std::array<float, 3> bounds_min{};  // axis-aligned bounds of the Gaussian centres
  std::array<float, 3> bounds_max{};
  std::array<float, 3> view_min{};    // RobustBounds (1%-99%) of the centres, for framing
  std::array<float, 3> view_max{};
};

class SceneRegistry {
 public:
  // Loads every `*.flexgs` bundle and `*.ply` file directly inside `dir`, in name
  // order; the scene id is the name without the extension. Failures are logged and
  // skipped (a duplicate id keeps the first). Returns an error only when `dir`
  // cannot be listed. `stop` (optional) is checked between scenes so that a shutdown
  // during a long load is not held up.
  absl::Status LoadDirectory(const std::string& dir, const SceneLoadOptions& options,
                             const std::atomic<bool>* stop = nullptr);

  // Adds a model under `id`. The model must have a digest (bundles get one from
  // their manifest) and at least one Gaussian. ALREADY_EXISTS for a taken id.
  absl::Status Add(const std::string& id, const std::string& source, ElasticModel model);

  // The scene, or null.
  std::shared_ptr<const Scene> Find(absl::string_view id) const;
  // All scenes, sorted by id.
  std::vector<std::shared_ptr<const Scene>> List() const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Scene>, std::less<>> scenes_;
};

// A heuristic ElasticModel from a plain PLY file: GI over `options.gi_views` orbit
// views of gi_size x gi_size, normalisation from the full extent of the positions,
// the default ladder, and a digest derived from the file's SHA-256 and the GI setup.
absl::StatusOr<ElasticModel> HeuristicModelFromPly(const std::string& path, const SceneLoadOptions& options);

}  // namespace flexgs::server

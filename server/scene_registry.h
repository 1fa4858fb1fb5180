// SceneRegistry: the scenes a server can stream, loaded from a directory and kept in
// line with it by rescans (SIGHUP, --rescan-interval). Models are shared and
// immutable: a stream holds its scene's shared_ptr, so it finishes on the version it
// started with even when a rescan has swapped in another.
//
// A scenes directory holds model bundles (`<id>.flexgs/`, see core/elastic/model_bundle.h)
// and plain scenes (`<id>.ply`). A plain PLY is served in heuristic mode: its Global
// Importance is computed at load time over orbit views (as `flexgs elasticize` does),
// and its digest is derived from the file's bytes and those GI settings, so a
// restart with the same file gives the same digest and resume tokens stay valid.
// Names starting with '.' are ignored (the bundle writer stages there).
//
// Rescan, per scene id (the name without its extension; the first name in order
// wins a duplicate id):
// - unchanged: the files' stat signature (inode, size, mtime of the PLY, or of the
//   bundle's three files) is what was seen last time: nothing is read;
// - touched: the signature changed but the content did not (bundle: manifest digest;
//   PLY: SHA-256 of the file): the new signature is remembered, nothing reloaded;
// - changed or new: the model is loaded and validated completely, off the scenes
//   lock, then swapped in atomically; streams already running keep the old model;
// - failed: a scene that does not load keeps serving its previous version (a new
//   one is not added); the reason is logged once, and the load is retried only when
//   the signature changes again (a copy still in progress, a fixed file);
// - gone: its file or bundle directory left the directory: the scene is dropped.
// A directory that cannot be listed changes nothing (an error is returned).
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "elastic/elastic_model.h"

namespace flexgs::server {

struct SceneLoadOptions {
  int gi_views = 16;  // orbit views for a plain PLY's Global Importance
  int gi_size = 256;  // square render size of those views
  int threads = 0;    // CPU threads for GI (0 = all)
};

struct Scene {
  std::string id;
  std::string source;  // file or bundle directory it came from ("" when added in memory)
  std::shared_ptr<const ElasticModel> model;
  std::array<float, 3> bounds_min{};  // axis-aligned bounds of the Gaussian centres
  std::array<float, 3> bounds_max{};
  std::array<float, 3> view_min{};  // RobustBounds (1%-99%) of the centres, for framing
  std::array<float, 3> view_max{};
};

// What one rescan did; each list holds scene ids in name order.
struct RescanResult {
  std::vector<std::string> added;
  std::vector<std::string> replaced;  // now serving a new model digest
  std::vector<std::string> removed;
  std::vector<std::string> failed;           // did not load (this time); previous version, if any, kept
  std::vector<std::string> retired_digests;  // models no longer served (replaced or removed)
  bool changed() const { return !added.empty() || !replaced.empty() || !removed.empty(); }
};

class SceneRegistry {
 public:
  // The first scan of `dir` (see Rescan). Failures of single scenes are logged and
  // skipped. Returns an error only when `dir` cannot be listed (missing, not a
  // directory, unreadable). `stop` (optional) is checked between scenes so that a
  // shutdown during a long load is not held up.
  absl::Status LoadDirectory(const std::string& dir, const SceneLoadOptions& options,
                             const std::atomic<bool>* stop = nullptr);

  // Brings the scenes loaded from `dir` in line with it (rules above). Scenes added
  // with Add() are never touched. Rescans are serialised; Find() and List() are not
  // blocked while models load. An error (nothing changed) only when `dir` cannot be
  // listed.
  absl::StatusOr<RescanResult> Rescan(const std::string& dir, const SceneLoadOptions& options,
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
  // What the registry knows about a scene id that came from the directory.
  struct Tracked {
    std::string source;            // path of the version served ("" if none loaded yet)
    std::string signature;         // stat signature when its content was last confirmed
    std::string content;           // manifest digest (bundle) or file SHA-256 (PLY)
    std::string failed_source;     // last attempt that failed: path and signature,
    std::string failed_signature;  // so the same files are not retried (or logged) again
  };

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Scene>, std::less<>> scenes_;

  std::mutex rescan_mu_;  // held for a whole rescan; guards the members below
  std::map<std::string, Tracked> tracked_;
  std::set<std::string> reported_;  // ignored paths already logged (duplicates, odd file types)
};

// A heuristic ElasticModel from a plain PLY file: GI over `options.gi_views` orbit
// views of gi_size x gi_size, normalisation from the full extent of the positions,
// the default ladder, and a digest derived from the file's SHA-256 and the GI setup.
absl::StatusOr<ElasticModel> HeuristicModelFromPly(const std::string& path, const SceneLoadOptions& options);

}  // namespace flexgs::server

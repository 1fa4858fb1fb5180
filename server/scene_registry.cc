#include "server/scene_registry.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_io.h"
#include "base/sha256.h"
#include "elastic/heuristic_model.h"
#include "elastic/model_bundle.h"
#include "io/ply_io.h"
#include "scene/orbit.h"
#include "spdlog/spdlog.h"

namespace flexgs::server {
namespace {

namespace fs = std::filesystem;

// Resume tokens carry the scene id; keep ids well inside what they can hold.
constexpr size_t kMaxSceneIdLength = 256;

// A scene file or bundle as found in the directory.
struct Candidate {
  std::string id;
  fs::path path;
  bool bundle = false;
};

// "dev:ino:size:mtime:ctime:mode;" of `p` (stat follows symlinks). Any write, rename
// over or chmod shows up in it, without reading a byte.
absl::StatusOr<std::string> StatSignature(const fs::path& p, bool must_exist) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) {
    if (!must_exist && errno == ENOENT) return std::string("-;");
    return absl::ErrnoToStatus(errno, absl::StrCat(p.string(), ": cannot stat"));
  }
  // Reading a FIFO or a device would block or never end: only regular files are scenes.
  if (!S_ISREG(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(p.string(), ": not a regular file"));
  return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ":",
                      st.st_ctim.tv_sec, ".", st.st_ctim.tv_nsec, ":", st.st_mode, ";");
}

// The signature of a candidate: its PLY file, or the bundle's three files (a missing
// one is left to ReadModelBundle to report, with its usual message).
absl::StatusOr<std::string> Signature(const Candidate& c) {
  if (!c.bundle) return StatSignature(c.path, true);
  std::string sig;
  for (const char* file : {kBundleManifestFile, kBundlePlyFile, kBundleTensorFile}) {
    absl::StatusOr<std::string> one = StatSignature(c.path / file, false);
    if (!one.ok()) return one.status();
    sig += *one;
  }
  return sig;
}

absl::StatusOr<ElasticModel> HeuristicModelFromPlyBytes(const std::string& path, const std::string& bytes,
                                                        const SceneLoadOptions& options) {
  auto cloud = ParseGaussianPly(bytes);
  if (!cloud.ok()) return absl::Status(cloud.status().code(), absl::StrCat(path, ": ", cloud.status().message()));
  OrbitOptions orbit;
  orbit.count = options.gi_views;
  orbit.width = options.gi_size;
  orbit.height = options.gi_size;
  auto cams = MakeOrbitCameras(*cloud, orbit);
  if (!cams.ok()) return cams.status();
  HeuristicModelOptions heuristic;
  heuristic.threads = options.threads;
  heuristic.source = "ply";
  absl::StatusOr<ElasticModel> made = MakeHeuristicModel(*std::move(cloud), *cams, heuristic);
  if (!made.ok()) return made.status();
  ElasticModel& model = *made;
  // The digest pins everything the plan depends on: the file's content, how GI was
  // computed (GI is deterministic for a given input and view set), and the ladder.
  Sha256 h;
  h.Update("flexgs-ply-heuristic/1\n");
  h.Update(Sha256Hex(bytes));
  h.Update(absl::StrFormat("\ngi=%s views=%d %dx%d\nladder=", model.gi.variant, model.gi.views, model.gi.width,
                           model.gi.height));
  for (double r : model.ladder) h.Update(absl::StrFormat("%.17g,", r));
  model.digest = h.FinishHex();
  return made;
}

// A Scene for `model`: checks what every scene must have and computes its bounds.
absl::StatusOr<std::shared_ptr<const Scene>> MakeScene(const std::string& id, const std::string& source,
                                                       ElasticModel model) {
  if (id.empty() || id.size() > kMaxSceneIdLength) {
    return absl::InvalidArgumentError(
        absl::StrFormat("scene id '%s' must have 1 to %d characters", id, kMaxSceneIdLength));
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
  return std::shared_ptr<const Scene>(std::move(scene));
}

std::string SignatureKey(const absl::StatusOr<std::string>& signature) {
  return signature.ok() ? *signature : absl::StrCat("error: ", signature.status().message());
}

// One look at a candidate: signature, content identity, and -- unless the content
// is `known_content` -- the whole model, validated.
struct Loaded {
  absl::Status status;                 // of whichever step failed
  std::string signature;               // SignatureKey, taken before anything was read
  std::string content;                 // manifest digest (bundle) or SHA-256 (PLY)
  std::shared_ptr<const Scene> scene;  // null on error or when the content is known
};

Loaded LoadCandidate(const Candidate& c, const std::string& known_content, const SceneLoadOptions& options) {
  Loaded out;
  absl::StatusOr<std::string> signature = Signature(c);
  out.signature = SignatureKey(signature);
  out.status = signature.status();
  if (!out.status.ok()) return out;
  const std::string path = c.path.string();
  // Cheap identity first: a touched file or a rewritten identical bundle is not worth
  // a full load (for a PLY that would recompute its Global Importance).
  std::string ply_bytes;
  if (c.bundle) {
    absl::StatusOr<std::string> digest = ReadModelDigest(path);
    out.status = digest.status();
    if (digest.ok()) out.content = *std::move(digest);
  } else {
    absl::StatusOr<std::string> bytes = ReadFileToString(path);
    out.status = bytes.status();
    if (bytes.ok()) {
      ply_bytes = *std::move(bytes);
      out.content = Sha256Hex(ply_bytes);
    }
  }
  if (!out.status.ok() || (!known_content.empty() && out.content == known_content)) return out;
  absl::StatusOr<ElasticModel> model =
      c.bundle ? ReadModelBundle(path) : HeuristicModelFromPlyBytes(path, ply_bytes, options);
  absl::StatusOr<std::shared_ptr<const Scene>> made =
      model.ok() ? MakeScene(c.id, path, *std::move(model)) : model.status();
  out.status = made.status();
  if (!made.ok()) return out;
  out.scene = *std::move(made);
  // A bundle's identity is the digest just verified (the manifest may have been
  // rewritten between ReadModelDigest and the full read).
  if (c.bundle) out.content = out.scene->model->digest;
  return out;
}

}  // namespace

absl::StatusOr<ElasticModel> HeuristicModelFromPly(const std::string& path, const SceneLoadOptions& options) {
  auto bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  return HeuristicModelFromPlyBytes(path, *bytes, options);
}

absl::Status SceneRegistry::LoadDirectory(const std::string& dir, const SceneLoadOptions& options,
                                          const std::atomic<bool>* stop) {
  return Rescan(dir, options, stop).status();
}

absl::StatusOr<RescanResult> SceneRegistry::Rescan(const std::string& dir, const SceneLoadOptions& options,
                                                   const std::atomic<bool>* stop) {
  std::lock_guard<std::mutex> rescan_lock(rescan_mu_);
  // One listing, taken before anything changes: an unreadable directory (an unmounted
  // volume, say) must not look like "every scene was deleted".
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list scenes directory ", dir, ": ", ec.message()));
  std::vector<fs::directory_entry> entries;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return absl::InternalError(absl::StrCat("listing ", dir, ": ", ec.message()));
    entries.push_back(*it);
  }
  std::sort(entries.begin(), entries.end(),
            [](const fs::directory_entry& a, const fs::directory_entry& b) { return a.path() < b.path(); });

  std::set<std::string> seen_paths;
  auto report_once = [&](const std::string& path, const std::string& why) {
    seen_paths.insert(path);
    if (reported_.insert(path).second) spdlog::error("skipping scene {}: {}", path, why);
  };
  std::vector<Candidate> candidates;
  std::map<std::string, std::string> first_path;  // id -> path that claimed it
  for (const fs::directory_entry& e : entries) {
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (name.empty() || name[0] == '.' || (ext != ".flexgs" && ext != ".ply")) continue;
    const std::string path = e.path().string();
    Candidate c{e.path().stem().string(), e.path(), ext == ".flexgs"};
    std::error_code type_ec;
    if (c.bundle && !e.is_directory(type_ec)) {
      report_once(path, "a .flexgs scene must be a bundle directory");
      continue;
    }
    if (!c.bundle && !e.is_regular_file(type_ec)) {
      report_once(path, "not a regular file (a dangling symlink, a FIFO, a directory?)");
      continue;
    }
    if (auto [pos, fresh] = first_path.emplace(c.id, path); !fresh) {
      report_once(path, absl::StrCat("scene id '", c.id, "' is already taken by ", pos->second));
      continue;
    }
    candidates.push_back(std::move(c));
  }

  RescanResult result;
  // Scenes whose file or bundle left the directory.
  for (auto t = tracked_.begin(); t != tracked_.end();) {
    if (first_path.count(t->first) != 0) {
      ++t;
      continue;
    }
    std::shared_ptr<const Scene> old;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto s = scenes_.find(t->first); s != scenes_.end()) {
        old = std::move(s->second);
        scenes_.erase(s);
      }
    }
    if (old != nullptr) {
      spdlog::info("removed scene '{}' (digest {}): {} is gone", t->first, old->model->digest, old->source);
      result.removed.push_back(t->first);
      result.retired_digests.push_back(old->model->digest);
    }
    t = tracked_.erase(t);
  }

  for (const Candidate& c : candidates) {
    if (stop != nullptr && stop->load()) {
      spdlog::warn("scene loading stopped early (shutdown requested)");
      break;
    }
    const std::string path = c.path.string();
    seen_paths.insert(path);
    if (tracked_.count(c.id) == 0) {
      if (std::shared_ptr<const Scene> taken = Find(c.id); taken != nullptr) {
        report_once(path, absl::StrCat("scene id '", c.id, "' is already taken by ", taken->source));
        continue;
      }
    }
    Tracked& t = tracked_[c.id];
    const std::string signature = SignatureKey(Signature(c));
    if (t.source == path && signature == t.signature) continue;                // unchanged
    if (t.failed_source == path && signature == t.failed_signature) continue;  // failed before, as it is now

    const auto t0 = std::chrono::steady_clock::now();
    const std::string no_content;
    const std::string& known = t.source == path ? t.content : no_content;
    Loaded loaded = LoadCandidate(c, known, options);
    // A writer replacing the files while they were read makes the read fail its
    // checksums; when the files have changed since, look again rather than report it.
    for (int retry = 0; !loaded.status.ok() && retry < 3 && SignatureKey(Signature(c)) != loaded.signature; ++retry) {
      loaded = LoadCandidate(c, known, options);
    }
    if (loaded.status.ok() && loaded.scene == nullptr) {  // touched, same content
      t.signature = loaded.signature;
      t.failed_source.clear();
      continue;
    }
    const absl::Status& status = loaded.status;
    const std::shared_ptr<const Scene>& scene = loaded.scene;
    std::shared_ptr<const Scene> current = Find(c.id);
    if (!status.ok()) {
      t.failed_source = path;
      t.failed_signature = loaded.signature;
      result.failed.push_back(c.id);
      if (current != nullptr) {
        spdlog::error("scene '{}': {} did not load; still serving digest {} loaded from {}: {}", c.id, path,
                      current->model->digest, current->source, std::string(status.message()));
      } else {
        spdlog::error("skipping scene {}: {}", path, std::string(status.message()));
      }
      continue;
    }
    t = Tracked{path, loaded.signature, loaded.content, "", ""};
    if (current != nullptr && current->model->digest == scene->model->digest) continue;  // same model again
    {
      std::lock_guard<std::mutex> lock(mu_);
      scenes_[c.id] = scene;
    }
    const ElasticModel& m = *scene->model;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (current != nullptr) {
      spdlog::info(
          "replaced scene '{}' from {}: digest {} -> {}, {} Gaussians, SH {}, {} in {:.2f} s; running "
          "streams finish on the old model",
          c.id, path, current->model->digest, m.digest, m.gaussians.size(), m.gaussians.sh_degree,
          m.heuristic() ? "heuristic" : "trained", seconds);
      result.replaced.push_back(c.id);
      result.retired_digests.push_back(current->model->digest);
    } else {
      spdlog::info("loaded scene '{}' from {}: {} Gaussians, SH {}, {} in {:.2f} s (digest {})", c.id, path,
                   m.gaussians.size(), m.gaussians.sh_degree, m.heuristic() ? "heuristic" : "trained", seconds,
                   m.digest);
      result.added.push_back(c.id);
    }
  }
  // Forget reports about paths that are gone, so that they are logged if they return.
  for (auto r = reported_.begin(); r != reported_.end();) r = seen_paths.count(*r) ? std::next(r) : reported_.erase(r);
  return result;
}

absl::Status SceneRegistry::Add(const std::string& id, const std::string& source, ElasticModel model) {
  absl::StatusOr<std::shared_ptr<const Scene>> scene = MakeScene(id, source, std::move(model));
  if (!scene.ok()) return scene.status();
  std::lock_guard<std::mutex> lock(mu_);
  if (scenes_.count(id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("scene id '", id, "' is already taken by ", scenes_[id]->source));
  }
  scenes_.emplace(id, *std::move(scene));
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

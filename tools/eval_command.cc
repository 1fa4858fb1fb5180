// `flexgs eval <model.flexgs> --ratios ... --out report/`: the elastic model against
// baseline subsets at several ratios, on held-out views (FlexGS paper-style table).
//
// The selection, rendering and scoring live in core/eval/subset_baselines.h; this file parses
// the command line, resolves the test views (never GI views), runs PlayCanvas
// splat-transform as an external process, measures what every delivery format puts on
// the wire (our nested stream, decimation as SOG and SPZ, a PlayCanvas LOD pyramid), and
// writes report.json, report.md, contact.png and rd.png (PSNR against bytes).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file_io.h"
#include "elastic/elastic_selection.h"
#include "elastic/model_bundle.h"
#include "eval/contact_sheet.h"
#include "eval/rd_chart.h"
#include "eval/subset_baselines.h"
#include "io/camera_io.h"
#include "io/dataset_views.h"
#include "io/ply_io.h"
#include "io/png_io.h"
#include "kernels/backend.h"
#include "render/cpu_rasterizer.h"
#include "render/global_importance.h"
#include "scene/orbit.h"
#include "scene/view_sampler.h"
#include "stream/level_planner.h"
#include "tools/commands.h"
#include "tools/scene_source.h"

extern char** environ;

namespace flexgs::tools {
namespace {

namespace fs = std::filesystem;

constexpr char kSplatTransform[] = "splat-transform";
constexpr double kElasticizeElevationDeg = 20.0;  // `flexgs elasticize` GI orbit (ViewSpec default)
constexpr int kDefaultSize = 400;
constexpr int kMaxViewSize = 32768;  // --width and --height

struct EvalArgs {
  std::string model;
  std::string ratios = "0.01,0.05,0.10,0.15";
  std::string images;
  std::string cameras;
  std::string views;  // "sphere:N" (EvalSphereViews)
  bool views_given = false;
  int orbit = 0;
  int width = 0;  // 0: kDefaultSize for orbits, the images' own size with --images
  int height = 0;
  double fov_x_deg = 50.0;
  double elevation_deg = 0;
  bool elevation_given = false;
  std::string background = "1,1,1";
  std::string methods = "all";
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "auto";
  int contact_view = 0;
  std::string original;  // the untouched scene a trained model came from
  std::string out;
};

// The baselines' model for --original: the untouched input scene with its GI computed
// over the same orbit the trainer used (count and size from the model's provenance),
// so pruning baselines see the scene as it was before training changed the Gaussians.
absl::StatusOr<ElasticModel> OriginalBaselineModel(const std::string& path, const ElasticModel& trained, int threads) {
  absl::StatusOr<GaussianCloud> cloud = LoadScene(path);
  if (!cloud.ok()) return cloud.status();
  if (cloud->size() != trained.gaussians.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--original %s has %d Gaussians but the model has %d: not the scene it was trained from", path,
                        cloud->size(), trained.gaussians.size()));
  }
  if (trained.gi.views < 1 || trained.gi.width < 1 || trained.gi.height < 1) {
    return absl::InvalidArgumentError("--original: the model does not record the views its GI used");
  }
  OrbitOptions orbit;
  orbit.count = trained.gi.views;
  orbit.width = trained.gi.width;
  orbit.height = trained.gi.height;
  absl::StatusOr<std::vector<Camera>> cams = MakeOrbitCameras(*cloud, orbit);
  if (!cams.ok()) return cams.status();
  CpuRasterizer raster(threads);
  absl::StatusOr<std::vector<float>> gi = ComputeGlobalImportance(*cloud, *cams, {}, raster);
  if (!gi.ok()) return gi.status();
  ElasticModel base;
  base.gaussians = *std::move(cloud);
  base.global_importance = *std::move(gi);
  base.gi = trained.gi;
  base.normalization = trained.normalization;
  base.ladder = trained.ladder;
  return base;
}

int Fail(const absl::Status& st) {
  std::cerr << "flexgs eval: error: " << st.message() << "\n";
  return 1;
}

// ---------------------------------------------------------------------------------------
// splat-transform as an external process (argv, no shell: paths are never interpreted).

// The executable called `name` on PATH, or "".
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    const fs::path candidate = fs::path(std::string(dir)) / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// A command line as a POSIX shell would need it, for messages only (it is never run so).
std::string ShellQuoted(const std::vector<std::string>& argv) {
  std::vector<std::string> parts;
  for (const std::string& a : argv) {
    if (!a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,%:+") ==
                          std::string::npos) {
      parts.push_back(a);
    } else {
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      parts.push_back(q + "'");
    }
  }
  return absl::StrJoin(parts, " ");
}

std::string FileTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > max_bytes) text = "..." + text.substr(text.size() - max_bytes);
  return std::string(absl::StripTrailingAsciiWhitespace(text));
}

// Runs argv[0] (an absolute path) with stdout and stderr to `log_path`, stdin from
// /dev/null; fails naming the command and the log's tail unless it exits 0.
absl::Status RunProcess(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot start `", ShellQuoted(argv), "`: ", std::strerror(rc)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(absl::StrCat("waiting for `", ShellQuoted(argv), "`: ", std::strerror(errno)));
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  const std::string how = WIFEXITED(status) ? absl::StrCat("exited with status ", WEXITSTATUS(status))
                                            : absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::InternalError(
      absl::StrCat("`", ShellQuoted(argv), "` ", how, "; its output ends with:\n", FileTail(log_path, 2000)));
}

// A private temporary directory, removed with everything in it when this goes out of scope.
class TempDir {
 public:
  static absl::StatusOr<std::unique_ptr<TempDir>> Create() {
    std::error_code ec;
    fs::path base = fs::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string templ = (base / "flexgs-eval-XXXXXX").string();
    if (!::mkdtemp(templ.data())) {
      return absl::UnavailableError(absl::StrCat("cannot create a temporary directory: ", std::strerror(errno)));
    }
    return std::unique_ptr<TempDir>(new TempDir(templ));
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(std::string p) : path_(std::move(p)) {}
  fs::path path_;
};

// Bytes of splat-transform's delivery formats for each ratio's decimated cloud (one
// entry per ratio, ascending).
struct SplatTransformWire {
  std::vector<uint64_t> sog, spz;  // the cloud as one .sog bundle / one .spz file
  // The PlayCanvas LOD pyramid of all the clouds (finest = LOD 0 = the largest ratio):
  // the bytes of each ratio's own LOD files; the coarsest also carries lod-meta.json,
  // which a viewer fetches first.
  std::vector<uint64_t> lod;
  uint64_t lod_meta_bytes = 0;
  int lod_files = 0;
};

// Writes `ply` as one file in the format its output name selects (.sog bundle, .spz)
// and returns the file's bytes.
absl::StatusOr<uint64_t> ConvertedBytes(const std::string& exe, const std::string& ply, const fs::path& out,
                                        const fs::path& log) {
  const std::vector<std::string> argv = {exe, "-q", "-w", "-g", "cpu", ply, out.string()};
  if (absl::Status st = RunProcess(argv, log.string()); !st.ok()) return st;
  std::error_code ec;
  const uint64_t bytes = fs::file_size(out, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("`", ShellQuoted(argv), "` left no file '", out.string(), "': ", ec.message()));
  }
  return bytes;
}

// The LOD pyramid of `plys` (ascending ratio; LOD plys.size()-1-k for plys[k], so LOD 0
// is the finest, as PlayCanvas numbers them), written by one splat-transform run to
// lod-meta.json plus a `<lod>_<chunk>/` SOG folder per chunk, with its default chunking.
// Every file under `<lod>_*` counts for that LOD; anything else (lod-meta.json) for
// the coarsest.
absl::Status MeasureLodPyramid(const std::string& exe, const std::vector<std::string>& plys, const fs::path& dir,
                               const fs::path& log, SplatTransformWire* wire) {
  const int levels = static_cast<int>(plys.size());
  std::vector<std::string> argv = {exe, "-q", "-w", "-g", "cpu"};
  for (int k = 0; k < levels; ++k) {
    argv.insert(argv.end(), {plys[k], "-l", std::to_string(levels - 1 - k)});
  }
  argv.push_back((dir / "lod-meta.json").string());
  if (absl::Status st = RunProcess(argv, log.string()); !st.ok()) return st;
  wire->lod.assign(levels, 0);
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const uint64_t size = it->file_size(ec);
    if (ec) break;
    ++wire->lod_files;
    const fs::path rel = it->path().lexically_relative(dir);
    const std::string top = rel.empty() ? std::string() : rel.begin()->string();
    int lod = -1;
    const size_t underscore = top.find('_');
    if (underscore == std::string::npos || !absl::SimpleAtoi(top.substr(0, underscore), &lod) || lod < 0 ||
        lod >= levels) {
      if (it->path().filename() == "lod-meta.json") wire->lod_meta_bytes += size;
      wire->lod[0] += size;  // fetched first, with the coarsest level
    } else {
      wire->lod[levels - 1 - lod] += size;
    }
  }
  if (ec) return absl::UnavailableError(absl::StrCat("measuring the LOD pyramid: ", ec.message()));
  return absl::OkStatus();
}

// PlayCanvas splat-transform's pairwise-merge decimation (-F, --decimate) of the full
// model to ElasticCount(N, e) Gaussians, one process per ratio. With `wire`, each cloud
// is also written as SOG and SPZ and all of them as a LOD pyramid, and the bytes noted.
absl::StatusOr<std::vector<GaussianCloud>> SplatTransformClouds(const std::string& exe, const GaussianCloud& full,
                                                                absl::Span<const double> ratios,
                                                                SplatTransformWire* wire) {
  auto tmp = TempDir::Create();
  if (!tmp.ok()) return tmp.status();
  const fs::path& dir = (*tmp)->path();
  const fs::path log = dir / "splat-transform.log";
  const std::string in = (dir / "full.ply").string();
  if (absl::Status st = WriteGaussianPly(in, full); !st.ok()) return st;
  std::vector<GaussianCloud> out;
  std::vector<std::string> plys;
  for (double e : ratios) {
    const uint32_t count = ElasticCount(full.size(), e);
    if (count >= full.size()) {
      out.push_back(full);
      plys.push_back(in);
      continue;
    }
    const std::string result = (dir / absl::StrFormat("decimated-%d.ply", count)).string();
    const std::vector<std::string> argv = {exe, "-q", "-w", "-g", "cpu", in, "-F", std::to_string(count), result};
    if (absl::Status st = RunProcess(argv, log.string()); !st.ok()) return st;
    auto cloud = ReadGaussianPly(result);
    if (!cloud.ok()) {
      return absl::Status(cloud.status().code(),
                          absl::StrCat("reading the output of `", ShellQuoted(argv), "`: ", cloud.status().message()));
    }
    if (cloud->size() != count) {
      spdlog::warn("splat-transform made {} Gaussians for a target of {} (ratio {})", cloud->size(), count, e);
    }
    out.push_back(*std::move(cloud));
    plys.push_back(result);
  }
  if (!wire) return out;
  *wire = SplatTransformWire();
  for (size_t k = 0; k < plys.size(); ++k) {
    for (auto [ext, sizes] : {std::pair{"sog", &wire->sog}, std::pair{"spz", &wire->spz}}) {
      auto bytes = ConvertedBytes(exe, plys[k], dir / absl::StrFormat("level-%d.%s", k, ext), log);
      if (!bytes.ok()) return bytes.status();
      sizes->push_back(*bytes);
    }
  }
  if (absl::Status st = MeasureLodPyramid(exe, plys, dir / "lod", log, wire); !st.ok()) return st;
  return out;
}

// ---------------------------------------------------------------------------------------
// Test views.

struct GiOrbit {
  bool recorded = false;  // from the bundle's training summary; else elasticize's defaults
  bool orbit = true;      // false: GI used dataset cameras
  int views = 0;
  double elevation_deg = kElasticizeElevationDeg;
};

// GI view provenance: the manifest's gi.views plus, when `flexgs elasticize` recorded it,
// the orbit it used (training summary "gi_cameras").
GiOrbit ReadGiOrbit(const ElasticModel& model) {
  GiOrbit g;
  g.views = model.gi.views;
  const nlohmann::json t = nlohmann::json::parse(model.training_summary_json, nullptr, /*allow_exceptions=*/false);
  if (!t.is_object() || !t.contains("gi_cameras") || !t["gi_cameras"].is_object()) return g;
  const nlohmann::json& c = t["gi_cameras"];
  g.recorded = true;
  g.orbit = c.contains("kind") && c["kind"].is_string() && c["kind"].get<std::string>() == "orbit";
  if (c.contains("elevation_deg") && c["elevation_deg"].is_number()) g.elevation_deg = c["elevation_deg"].get<double>();
  if (c.contains("count") && c["count"].is_number_integer()) g.views = c["count"].get<int>();
  return g;
}

struct TestViews {
  std::vector<Camera> cameras;
  std::vector<Image> targets;  // empty: compare with the full model's renders
  std::string protocol;        // "images" or "distillation"
  std::string description;     // one sentence for report.md
  nlohmann::json json;         // the view settings for report.json (the cameras are added as "cameras")
  bool sphere = false;         // --views sphere:N: view i is at kEvalSphereDistances[i % 3] x the fit distance
};

constexpr int kMaxSphereViews = 100000;  // EvalSphereViews' limit

// "sphere:N" -> N; anything else names the problem and the flag.
absl::StatusOr<int> ParseViewsFlag(const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  if (parts.size() != 2 || parts[0] != "sphere") {
    return absl::InvalidArgumentError(absl::StrCat("--views '", text, "': unknown view set '", parts[0],
                                                   "' (the one known is sphere:N, N views over the sphere)"));
  }
  if (parts[1].empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--views '", text, "': missing the view count (sphere:N)"));
  }
  int64_t count = 0;
  if (!absl::SimpleAtoi(parts[1], &count)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--views '", text, "': view count '", parts[1], "' is not a whole number"));
  }
  if (count < 1 || count > kMaxSphereViews) {
    return absl::InvalidArgumentError(
        absl::StrCat("--views '", text, "': view count ", count, " is outside 1..", kMaxSphereViews));
  }
  return static_cast<int>(count);
}

// The distance factor of sphere view i (kEvalSphereDistances cycles).
double SphereDistance(size_t view) { return kEvalSphereDistances[view % 3]; }
bool IsCloseUp(size_t view) { return SphereDistance(view) == kEvalSphereDistances[2]; }

absl::StatusOr<TestViews> ResolveTestViews(const EvalArgs& args, int sphere_views, const ElasticModel& model,
                                           const std::array<float, 3>& background) {
  TestViews v;
  const bool sized = args.width > 0;
  if (sphere_views > 0) {
    const int w = sized ? args.width : kDefaultSize, h = sized ? args.height : kDefaultSize;
    auto cams = EvalSphereViews(RobustBounds(model.gaussians), sphere_views, w, h);
    if (!cams.ok()) return cams.status();
    v.cameras = *std::move(cams);
    v.protocol = "distillation";
    v.sphere = true;
    const double fov_x_deg = 2.0 * std::atan(0.5 * w / v.cameras[0].fx) * 180.0 / M_PI;
    v.description = absl::StrFormat(
        "%d views %dx%d over the sphere (`--views sphere:%d`): directions on a Fibonacci sphere (a fixed twist "
        "keeps them off orbit rings and GI views) looking at the centre of the robust bounds with a %.0f-degree "
        "field of view, at distances cycling %g, %g, %g x the fit distance, so every third view (sphere_002, "
        "sphere_005, ...) is a close-up with the object larger than the frame; compared with the full model's "
        "renders",
        sphere_views, w, h, sphere_views, fov_x_deg, kEvalSphereDistances[0], kEvalSphereDistances[1],
        kEvalSphereDistances[2]);
    v.json = {
        {"kind", "sphere"},
        {"count", sphere_views},
        {"fov_x_deg", fov_x_deg},
        {"distance_factors", std::vector<double>(std::begin(kEvalSphereDistances), std::end(kEvalSphereDistances))},
        {"directions", "Fibonacci sphere, fixed twist"}};
    return v;
  }
  if (!args.images.empty()) {
    auto split = SplitDatasetCameras(args.cameras);
    if (!split.ok()) return split.status();
    const size_t total = split->total();
    auto views =
        LoadDatasetViews(args.images, split->test, background, sized ? args.width : 0, sized ? args.height : 0);
    if (!views.ok()) return views.status();
    for (DatasetView& dv : *views) {
      v.cameras.push_back(std::move(dv.camera));
      v.targets.push_back(std::move(dv.image));
    }
    v.protocol = "images";
    v.description = absl::StrFormat(
        "%d test images from %s (every %dth of %d cameras sorted by name, as the reference's llffhold), at %dx%d%s",
        v.cameras.size(), args.images, kLlffHold, total, v.cameras[0].width, v.cameras[0].height,
        sized ? " (area-resampled)" : "");
    v.json = {
        {"images_dir", args.images}, {"cameras_path", args.cameras}, {"hold", kLlffHold}, {"cameras_total", total}};
    return v;
  }
  if (!args.cameras.empty()) {
    auto split = SplitDatasetCameras(args.cameras);
    if (!split.ok()) return split.status();
    const size_t total = split->total();
    if (sized) {
      for (Camera& cam : split->test) cam = cam.Resized(args.width, args.height);
    }
    v.cameras = std::move(split->test);
    v.protocol = "distillation";
    v.description = absl::StrFormat(
        "%d dataset cameras from %s (every %dth of %d sorted by name), compared with the full model's renders",
        v.cameras.size(), args.cameras, kLlffHold, total);
    v.json = {{"cameras_path", args.cameras}, {"hold", kLlffHold}, {"cameras_total", total}};
    return v;
  }
  const GiOrbit gi = ReadGiOrbit(model);
  OrbitOptions opt = HeldOutOrbitOptions(gi.views, gi.elevation_deg, args.orbit, sized ? args.width : kDefaultSize,
                                         sized ? args.height : kDefaultSize);
  opt.fov_x_deg = args.fov_x_deg;
  if (args.elevation_given) opt.elevation_deg = args.elevation_deg;
  if (absl::Status st = ValidateOrbitOptions(opt); !st.ok()) return st;
  // Framed on the FULL model, as `flexgs render` frames every ratio of a bundle.
  v.cameras = OrbitCameras(RobustBounds(model.gaussians), opt);
  v.protocol = "distillation";
  const std::string gi_text =
      gi.orbit ? absl::StrFormat("GI used a %d-view orbit at %g deg%s", gi.views, gi.elevation_deg,
                                 gi.recorded ? "" : ", assumed: elasticize's defaults, not recorded in this bundle")
               : absl::StrFormat("GI used %d dataset cameras", gi.views);
  v.description = absl::StrFormat(
      "%d held-out orbit views %dx%d at elevation %g deg, azimuth offset %g deg (%s), compared with the full "
      "model's renders",
      opt.count, opt.width, opt.height, opt.elevation_deg, opt.azimuth_offset_deg, gi_text);
  v.json = {
      {"orbit", opt.count},
      {"elevation_deg", opt.elevation_deg},
      {"azimuth_offset_deg", opt.azimuth_offset_deg},
      {"fov_x_deg", opt.fov_x_deg},
      {"gi_views",
       {{"orbit", gi.orbit}, {"count", gi.views}, {"elevation_deg", gi.elevation_deg}, {"recorded", gi.recorded}}}};
  return v;
}

// ---------------------------------------------------------------------------------------
// Reports.

std::string RatioLabel(double e) { return absl::StrFormat("%g%%", e * 100.0); }

nlohmann::json JsonNumber(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

// Mean PSNR over the views at each sphere distance factor ("1", "0.7", "0.5"), so that
// close-ups can be judged on their own.
nlohmann::json PsnrByDistance(const CloudScore& s) {
  nlohmann::json out = nlohmann::json::object();
  for (double d : kEvalSphereDistances) {
    double sum = 0;
    int n = 0;
    for (size_t v = 0; v < s.psnr.size(); ++v) {
      if (SphereDistance(v) == d) {
        sum += s.psnr[v];
        ++n;
      }
    }
    if (n > 0) out[absl::StrFormat("%g", d)] = JsonNumber(sum / n);
  }
  return out;
}

nlohmann::json CellJson(const std::string& method, const CloudScore& s, bool sphere) {
  nlohmann::json per_psnr = nlohmann::json::array(), per_ssim = nlohmann::json::array();
  for (double p : s.psnr) per_psnr.push_back(JsonNumber(p));
  for (double p : s.ssim) per_ssim.push_back(JsonNumber(p));
  // JSON has no infinity: an identical render (PSNR +inf) is null with "identical": true.
  nlohmann::json j = {{"method", method},
                      {"ratio", s.ratio},
                      {"count", s.count},
                      {"bytes", s.raw_bytes},
                      {"psnr", JsonNumber(s.mean_psnr)},
                      {"ssim", s.mean_ssim},
                      {"identical", std::isinf(s.mean_psnr) && s.mean_psnr > 0},
                      {"per_view_psnr", per_psnr},
                      {"per_view_ssim", per_ssim}};
  if (sphere) j["psnr_by_distance"] = PsnrByDistance(s);
  return j;
}

// Pretty JSON; invalid UTF-8 (in a path or image name) is replaced rather than thrown on.
std::string DumpJson(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string FormatPsnr(double p) { return std::isinf(p) ? std::string("inf") : absl::StrFormat("%.2f", p); }

std::string MarkdownTable(const EvalResult& r, bool psnr) {
  std::string md = "| method | full |";
  std::string rule = "| --- | ---: |";
  for (double e : r.ratios) {
    absl::StrAppend(&md, " ", RatioLabel(e), " |");
    absl::StrAppend(&rule, " ---: |");
  }
  absl::StrAppend(&md, "\n", rule, "\n");
  for (const EvalRow& row : r.rows) {
    const auto cell = [&](const CloudScore& s) {
      return psnr ? FormatPsnr(s.mean_psnr) : absl::StrFormat("%.4f", s.mean_ssim);
    };
    absl::StrAppend(&md, "| ", row.method, " |");
    if (row.method == "full") {
      absl::StrAppend(&md, " ", cell(row.cells[0]), " |");
      for (size_t k = 0; k < r.ratios.size(); ++k) absl::StrAppend(&md, " |");
    } else {
      absl::StrAppend(&md, " |");
      for (const CloudScore& s : row.cells) absl::StrAppend(&md, " ", cell(s), " |");
    }
    absl::StrAppend(&md, "\n");
  }
  return md;
}

// The contact sheet's rows and columns (described in report.md and report.json).
struct ContactPlan {
  ContactSheetLayout layout;
  std::vector<std::vector<const Image*>> cells;
};

// Every row repeats the reference (and, against images, the full model's render) on the
// left so that each method can be compared along its row; "full" gets no row of its own.
// `view` is the test view, `slot` its place in EvalOptions::contact_views.
ContactPlan PlanContact(const EvalResult& r, bool images_protocol, size_t view, size_t slot) {
  ContactPlan p;
  std::vector<const Image*> lead = {&r.targets[view]};
  p.layout.column_labels.push_back(images_protocol ? "ground truth" : "full (ref)");
  for (const EvalRow& row : r.rows) {
    if (row.method == "full" && images_protocol) {
      lead.push_back(&row.cells[0].contacts[slot]);
      p.layout.column_labels.push_back("full");
    }
  }
  for (double e : r.ratios) p.layout.column_labels.push_back(RatioLabel(e));
  for (const EvalRow& row : r.rows) {
    if (row.method == "full") continue;
    std::vector<const Image*> cells = lead;
    for (const CloudScore& s : row.cells) cells.push_back(&s.contacts[slot]);
    p.layout.row_labels.push_back(row.method);
    p.cells.push_back(std::move(cells));
  }
  if (p.cells.empty()) {  // only "full" was asked for
    std::vector<const Image*> cells = lead;
    cells.resize(p.layout.column_labels.size(), nullptr);
    p.layout.row_labels.push_back("full");
    p.cells.push_back(std::move(cells));
  }
  return p;
}

// ---------------------------------------------------------------------------------------
// Bytes on the wire: what a viewer downloads to show each ratio, per delivery format.

// One delivery format's bytes per ratio, shown with the pictures of a results row.
struct WireSeries {
  std::string name;          // report and legend name ("elastic-nested", "decimation-sog", ...)
  std::string method;        // the results row whose pictures (and PSNR) it delivers
  std::string counted;       // what its bytes are, for the reports
  bool progressive = false;  // showing level k costs levels 0..k (else level k alone)
  std::array<float, 3> color{0, 0, 0};
  std::vector<uint64_t> level_bytes;  // per ratio: that level's own download

  uint64_t Cumulative(size_t k) const {
    uint64_t sum = 0;
    for (size_t i = 0; i <= k; ++i) sum += level_bytes[i];
    return sum;
  }
  uint64_t ToShow(size_t k) const { return progressive ? Cumulative(k) : level_bytes[k]; }
};

constexpr char kDecimationSog[] = "decimation-sog";
constexpr char kLodPyramid[] = "lod-pyramid";
constexpr double kTargetMarginDb = 1.0;  // the project's goal: elastic >= best baseline + 1 dB at equal bytes

const EvalRow* FindRow(const EvalResult& r, const std::string& method) {
  for (const EvalRow& row : r.rows) {
    if (row.method == method) return &row;
  }
  return nullptr;
}

// The series of every evaluated row that has a delivery format: our server's streams
// for the elastic rows, splat-transform's SOG, SPZ and LOD pyramid for its decimation.
absl::StatusOr<std::vector<WireSeries>> BuildWireSeries(const EvalResult& r, const ElasticModel& model,
                                                        const SplatTransformWire& st, ThreadPool* pool) {
  std::vector<WireSeries> out;
  if (FindRow(r, "elastic-nested")) {
    auto bytes = NestedStreamLevelBytes(model, r.ratios, pool);
    if (!bytes.ok()) return bytes.status();
    out.push_back({"elastic-nested",
                   "elastic-nested",
                   "flexgs stream payload (quantized chunks), levels 1..k of one nested stream",
                   true,
                   {0.85f, 0.1f, 0.1f},
                   *std::move(bytes)});
  }
  if (FindRow(r, "elastic-stream")) {
    auto bytes = CanonicalStreamCutBytes(model, r.ratios, pool);
    if (!bytes.ok()) return bytes.status();
    out.push_back({"elastic-stream",
                   "elastic-stream",
                   "flexgs stream payload (quantized chunks) of the server's canonical stream up to each budget",
                   true,
                   {0.6f, 0.05f, 0.35f},
                   *std::move(bytes)});
  }
  if (FindRow(r, "elastic-independent")) {
    auto bytes = SingleLevelStreamBytes(model, r.ratios, pool);
    if (!bytes.ok()) return bytes.status();
    out.push_back({"elastic-independent",
                   "elastic-independent",
                   "flexgs stream payload (quantized chunks) of that ratio alone: a separate download per ratio",
                   false,
                   {0.95f, 0.55f, 0.05f},
                   *std::move(bytes)});
  }
  if (FindRow(r, kSplatTransform) && st.sog.size() == r.ratios.size()) {
    out.push_back({kDecimationSog,
                   kSplatTransform,
                   "splat-transform decimation written as one .sog bundle per level",
                   false,
                   {0.1f, 0.35f, 0.85f},
                   st.sog});
    out.push_back({"decimation-spz",
                   kSplatTransform,
                   "splat-transform decimation written as one .spz file per level",
                   false,
                   {0.1f, 0.6f, 0.3f},
                   st.spz});
    out.push_back({kLodPyramid,
                   kSplatTransform,
                   "PlayCanvas LOD pyramid of the decimated levels (lod-meta.json + SOG chunks), LOD files of the "
                   "coarsest level up to this one",
                   true,
                   {0.55f, 0.2f, 0.7f},
                   st.lod});
  }
  return out;
}

// The series as rate-distortion points (bytes to show each level, mean PSNR), leaving
// out levels whose PSNR is not finite (identical to the reference).
RdSeries RdPointsOf(const WireSeries& w, const EvalRow& row) {
  RdSeries s{w.name, w.color, {}};
  for (size_t k = 0; k < w.level_bytes.size(); ++k) {
    const double psnr = row.cells[k].mean_psnr;
    if (std::isfinite(psnr)) s.points.push_back({static_cast<double>(w.ToShow(k)), psnr});
  }
  return s;
}

std::string Kib(uint64_t bytes) { return absl::StrFormat("%.1f", bytes / 1024.0); }

std::string MaybeDb(const std::optional<double>& db, bool sign = false) {
  if (!db) return std::string("-");
  return sign ? absl::StrFormat("%+.2f", *db) : absl::StrFormat("%.2f", *db);
}

double MinBytes(const RdSeries& s) {
  double lo = INFINITY;
  for (const RdPoint& p : s.points) lo = std::min(lo, p.bytes);
  return lo;
}

nlohmann::json MaybeJson(const std::optional<double>& x) { return x ? nlohmann::json(*x) : nlohmann::json(nullptr); }

// report.json's "wire": every series with its bytes per ratio.
nlohmann::json WireJson(const std::vector<WireSeries>& series, const EvalResult& r) {
  nlohmann::json out = nlohmann::json::array();
  for (const WireSeries& w : series) {
    const EvalRow& row = *FindRow(r, w.method);
    nlohmann::json points = nlohmann::json::array();
    for (size_t k = 0; k < w.level_bytes.size(); ++k) {
      points.push_back({{"ratio", r.ratios[k]},
                        {"count", row.cells[k].count},
                        {"level_bytes", w.level_bytes[k]},
                        {"cumulative_bytes", w.Cumulative(k)},
                        {"bytes", w.ToShow(k)},
                        {"psnr", JsonNumber(row.cells[k].mean_psnr)}});
    }
    out.push_back({{"name", w.name},
                   {"method", w.method},
                   {"counted", w.counted},
                   {"bytes_are", w.progressive ? "cumulative_bytes" : "level_bytes"},
                   {"points", points}});
  }
  return out;
}

// report.md's PSNR-against-bytes table.
std::string WireMarkdown(const std::vector<WireSeries>& series, const EvalResult& r) {
  std::string md =
      "| format | ratio | Gaussians | KiB to show | level KiB | cumulative KiB | B/Gaussian | PSNR (dB) |\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const WireSeries& w : series) {
    const EvalRow& row = *FindRow(r, w.method);
    for (size_t k = 0; k < w.level_bytes.size(); ++k) {
      const CloudScore& c = row.cells[k];
      absl::StrAppend(
          &md, absl::StrFormat("| %s | %s | %d | **%s** | %s | %s | %.2f | %s |\n", w.name, RatioLabel(r.ratios[k]),
                               c.count, Kib(w.ToShow(k)), Kib(w.level_bytes[k]), Kib(w.Cumulative(k)),
                               c.count ? static_cast<double>(w.ToShow(k)) / c.count : 0.0, FormatPsnr(c.mean_psnr)));
    }
  }
  return md;
}

// The project's yardstick: at each nested level's cumulative bytes, elastic's PSNR
// against decimation-as-SOG and the LOD pyramid read off their curves at the same
// bytes (linear in log bytes between their levels; null outside their byte range).
nlohmann::json RdSummary(const std::vector<WireSeries>& series, const EvalResult& r, std::string* md) {
  const auto find = [&](const std::string& name) -> const WireSeries* {
    for (const WireSeries& w : series) {
      if (w.name == name) return &w;
    }
    return nullptr;
  };
  const WireSeries* elastic = find("elastic-nested");
  if (!elastic) {
    absl::StrAppend(md, "elastic-nested was not evaluated: no summary.\n");
    return nullptr;
  }
  const EvalRow& erow = *FindRow(r, elastic->method);
  std::vector<std::pair<std::string, RdSeries>> baselines;
  for (const char* name : {kDecimationSog, kLodPyramid}) {
    if (const WireSeries* b = find(name)) baselines.emplace_back(name, RdPointsOf(*b, *FindRow(r, b->method)));
  }
  nlohmann::json j;
  j["elastic"] = elastic->name;
  j["bytes"] = "elastic-nested cumulative stream payload up to the level";
  j["baselines"] = nlohmann::json::array();
  for (const auto& b : baselines) j["baselines"].push_back(b.first);
  j["interpolation"] = "baseline PSNR linear in log(bytes) between its levels; null outside its byte range";
  j["target_margin_db"] = kTargetMarginDb;
  j["levels"] = nlohmann::json::array();
  absl::StrAppend(md, "| ratio | elastic-nested KiB | elastic-nested PSNR |");
  for (const auto& b : baselines) absl::StrAppend(md, " ", b.first, " PSNR at these bytes |");
  absl::StrAppend(md, " margin over the best (dB) |\n| ---: | ---: | ---: |");
  for (size_t i = 0; i < baselines.size(); ++i) absl::StrAppend(md, " ---: |");
  absl::StrAppend(md, " ---: |\n");
  std::optional<double> min_margin;
  bool all_compared = true;
  for (size_t k = 0; k < r.ratios.size(); ++k) {
    const double bytes = static_cast<double>(elastic->ToShow(k));
    const double psnr = erow.cells[k].mean_psnr;
    nlohmann::json level = {{"ratio", r.ratios[k]},
                            {"count", erow.cells[k].count},
                            {"bytes", elastic->ToShow(k)},
                            {"psnr", JsonNumber(psnr)}};
    absl::StrAppend(md, "| ", RatioLabel(r.ratios[k]), " | ", Kib(elastic->ToShow(k)), " | ", FormatPsnr(psnr), " |");
    std::optional<double> best;
    for (const auto& b : baselines) {
      const std::optional<double> at = PsnrAtBytes(b.second, bytes);
      std::optional<double> margin;
      if (at && std::isfinite(psnr)) margin = psnr - *at;
      level[b.first + "_psnr"] = MaybeJson(at);
      level[b.first + "_margin_db"] = MaybeJson(margin);
      // Why a baseline has no PSNR here: "below" = even its smallest level costs more.
      const char* why = b.second.points.empty() ? "no levels" : bytes < MinBytes(b.second) ? "below" : "above";
      level[b.first + "_out_of_range"] = at ? nlohmann::json(nullptr) : nlohmann::json(why);
      if (at && (!best || *at > *best)) best = at;
      absl::StrAppend(md, " ", MaybeDb(at), " |");
    }
    std::optional<double> margin;
    if (best && std::isfinite(psnr)) margin = psnr - *best;
    level["best_baseline_psnr"] = MaybeJson(best);
    level["margin_db"] = MaybeJson(margin);
    absl::StrAppend(md, " ", MaybeDb(margin, true), " |\n");
    if (margin) {
      min_margin = min_margin ? std::min(*min_margin, *margin) : *margin;
    } else {
      all_compared = false;
    }
    j["levels"].push_back(level);
  }
  j["min_margin_db"] = MaybeJson(min_margin);
  // false as soon as one level misses the target; true when every level was compared
  // and clears it; null (cannot tell) otherwise.
  if (min_margin && *min_margin < kTargetMarginDb) {
    j["meets_target"] = false;
  } else if (min_margin && all_compared) {
    j["meets_target"] = true;
  } else {
    j["meets_target"] = nullptr;
  }
  return j;
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  return WriteFileAtomically(path.string(), text);
}

// ---------------------------------------------------------------------------------------
// The steps of `flexgs eval`, in the order RunEval takes them.

// The command line, parsed: what the run is asked to measure.
struct EvalRequest {
  std::vector<double> ratios;  // as NormalizeEvalRatios returns them
  std::array<float, 3> background{};
  Device device = Device::kAuto;
  int sphere_views = 0;  // --views sphere:N; 0: orbit or dataset views
};

// What the command line alone can get wrong beyond CLI11's own checks, so that a typo
// fails before any loading or rendering.
absl::StatusOr<EvalRequest> ParseEvalRequest(const EvalArgs& args) {
  if (args.out.empty()) return absl::InvalidArgumentError("--out DIR is required");
  EvalRequest request;
  auto ratio_list = ParseLadder(args.ratios);
  if (!ratio_list.ok()) return absl::InvalidArgumentError(absl::StrCat("--ratios: ", ratio_list.status().message()));
  auto ratios = NormalizeEvalRatios(*ratio_list);
  if (!ratios.ok()) return absl::InvalidArgumentError(absl::StrCat("--ratios: ", ratios.status().message()));
  request.ratios = *std::move(ratios);
  auto background = ParseBackground(args.background);
  if (!background.ok()) return background.status();
  request.background = *background;
  auto device = ParseDevice(args.device);
  if (!device.ok()) return device.status();
  request.device = *device;
  if (!args.images.empty() && args.cameras.empty()) {
    return absl::InvalidArgumentError("--images needs --cameras FILE|DIR (the poses of the images)");
  }
  if (args.views_given) {
    auto count = ParseViewsFlag(args.views);
    if (!count.ok()) return count.status();
    request.sphere_views = *count;
  }
  return request;
}

// The methods --methods names, and splat-transform's part in them.
struct MethodChoice {
  std::vector<SubsetMethod> builtin;  // in the order given, without kFull
  bool want_full = false;
  bool want_st = false;  // splat-transform's decimation, and with it its delivery formats
  std::string st_exe;    // splat-transform on PATH, or ""
  std::string st_note;   // why "all" ran without splat-transform, for the reports; "" when it did not
};

// "all" (every built-in, plus splat-transform when installed) or a list, each method
// known and named once; an explicit splat-transform must be installed.
absl::StatusOr<MethodChoice> ChooseMethods(const std::string& methods) {
  MethodChoice choice;
  choice.st_exe = FindOnPath(kSplatTransform);
  std::vector<std::string> names;
  if (methods == "all") {
    for (SubsetMethod m : AllSubsetMethods()) names.emplace_back(SubsetMethodName(m));
    names.push_back(kSplatTransform);
    if (choice.st_exe.empty()) {
      names.pop_back();
      choice.st_note =
          "splat-transform is not on PATH: the splat-transform baseline was skipped, and with it the "
          "decimation-sog, decimation-spz and lod-pyramid byte columns";
    }
  } else {
    names = absl::StrSplit(methods, ',', absl::SkipWhitespace());
    if (names.empty()) return absl::InvalidArgumentError("--methods is empty");
  }
  for (const std::string& name : names) {
    if (std::count(names.begin(), names.end(), name) > 1) {
      return absl::InvalidArgumentError(absl::StrCat("--methods lists '", name, "' twice"));
    }
    if (name == kSplatTransform) {
      if (choice.st_exe.empty()) {
        return absl::NotFoundError(
            "--methods asks for splat-transform but it is not on PATH "
            "(install it with FLEXGS_EXTRAS=1 deploy/install-deps.sh)");
      }
      choice.want_st = true;
      continue;
    }
    auto m = ParseSubsetMethod(name);
    if (!m.ok()) {
      std::vector<std::string> known;
      for (SubsetMethod k : AllSubsetMethods()) known.emplace_back(SubsetMethodName(k));
      known.push_back(kSplatTransform);
      return absl::InvalidArgumentError(
          absl::StrCat("--methods: unknown method '", name, "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
    if (*m == SubsetMethod::kFull) {
      choice.want_full = true;
    } else {
      choice.builtin.push_back(*m);
    }
  }
  return choice;
}

// The model under test; a plain PLY has no ranking to evaluate.
absl::StatusOr<ElasticModel> LoadEvalModel(const std::string& path) {
  if (!IsModelBundle(path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not an elastic model bundle (make one with `flexgs elasticize`)"));
  }
  return ReadModelBundle(path);
}

// The test views (4 held-out orbit views unless the flags say otherwise), which must
// include --contact-view.
absl::StatusOr<TestViews> ChooseTestViews(const EvalArgs& args, const EvalRequest& request, const ElasticModel& model) {
  EvalArgs resolved = args;
  if (resolved.cameras.empty() && resolved.orbit == 0 && request.sphere_views == 0) resolved.orbit = 4;
  auto views = ResolveTestViews(resolved, request.sphere_views, model, request.background);
  if (!views.ok()) return views.status();
  if (static_cast<size_t>(args.contact_view) >= views->cameras.size()) {
    return absl::OutOfRangeError(
        absl::StrFormat("--contact-view %d is outside the %d test views", args.contact_view, views->cameras.size()));
  }
  return views;
}

// The report directory, made before the long part of the run so that it cannot fail last.
absl::Status CreateReportDir(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create '", out, "': ", ec.message()));
  return absl::OkStatus();
}

// --original: the untouched scene as the pruning baselines' model and, when the views
// have no targets of their own, its renders as the targets.
absl::StatusOr<ElasticModel> LoadOriginal(const EvalArgs& args, const ElasticModel& model,
                                          const std::array<float, 3>& background, RasterBackend& backend,
                                          TestViews* views) {
  auto original = OriginalBaselineModel(args.original, model, args.threads);
  if (!original.ok()) return original.status();
  if (views->targets.empty()) {
    EvalOptions target_options;
    target_options.render.background = background;
    auto targets = RenderTargets(original->gaussians, views->cameras, target_options, backend);
    if (!targets.ok()) return targets.status();
    views->targets = *std::move(targets);
    views->description += absl::StrCat("; targets and baselines from the original scene ", args.original);
  }
  return original;
}

// The methods as EvaluateMethods runs them: the elastic rows rank the model under test,
// the other baselines (splat-transform included) prune `baseline_model`, which must
// outlive them, as must `pool` and `st_wire` (filled by splat-transform's row).
std::vector<EvalMethod> MakeEvalMethods(const MethodChoice& choice, const ElasticModel& model,
                                        const ElasticModel& baseline_model, uint64_t seed, ThreadPool* pool,
                                        SplatTransformWire* st_wire) {
  std::vector<EvalMethod> methods;
  for (SubsetMethod m : choice.builtin) {
    const bool elastic = m == SubsetMethod::kElasticIndependent || m == SubsetMethod::kElasticNested;
    methods.push_back(BuiltinEvalMethod(elastic ? model : baseline_model, m, seed, pool));
  }
  if (choice.want_st) {
    const GaussianCloud& full = baseline_model.gaussians;
    methods.push_back({kSplatTransform, [&full, exe = choice.st_exe, st_wire](absl::Span<const double> r) {
                         return SplatTransformClouds(exe, full, r, st_wire);
                       }});
  }
  return methods;
}

// The views contact.png shows: --contact-view and, over the sphere, also the first
// close-up (unless the contact view is one).
std::vector<size_t> ContactViews(const TestViews& views, size_t contact_view) {
  std::vector<size_t> out = {contact_view};
  if (views.sphere && !IsCloseUp(contact_view) && views.cameras.size() > 2) out.push_back(2);
  return out;
}

// contact.png as written, for the reports.
struct ContactSheetInfo {
  ContactPlan plan;  // of the first contact view (its rows and columns)
  int width = 0, height = 0;
};

// Captions for the cells of a contact sheet of `view`: each level's PSNR from that view
// and, for a method some delivery format streams (the first in `wire`), the KiB a viewer
// downloads to show it. Lead columns (the reference) stay uncaptioned.
std::vector<std::vector<std::string>> CellCaptions(const EvalResult& r, const std::vector<WireSeries>& wire,
                                                   const ContactPlan& plan, size_t view) {
  const size_t lead = plan.layout.column_labels.size() - r.ratios.size();
  std::vector<std::vector<std::string>> captions;
  for (const EvalRow& row : r.rows) {
    if (row.method == "full") continue;
    const WireSeries* series = nullptr;
    for (const WireSeries& w : wire) {
      if (w.method == row.method) {
        series = &w;
        break;
      }
    }
    std::vector<std::string> line(lead);
    for (size_t k = 0; k < row.cells.size(); ++k) {
      std::string caption = FormatPsnr(row.cells[k].psnr[view]) + " dB";
      if (series != nullptr && k < series->level_bytes.size()) {
        absl::StrAppend(&caption, absl::StrFormat(" %.1f KiB", static_cast<double>(series->ToShow(k)) / 1024.0));
      }
      line.push_back(std::move(caption));
    }
    captions.push_back(std::move(line));
  }
  if (captions.size() != plan.cells.size()) return {};  // only "full" was asked for
  return captions;
}

// contact.png: one sheet per contact view, stacked under captions when there are several;
// each cell carries its PSNR from that view and the bytes to show it.
absl::StatusOr<ContactSheetInfo> WriteContactSheet(const std::string& out, const EvalResult& result,
                                                   const TestViews& views, const std::vector<size_t>& contact_views,
                                                   const std::vector<WireSeries>& wire) {
  const bool images_protocol = views.protocol == "images";
  const Camera& cv = views.cameras[contact_views[0]];
  std::vector<Image> sheets;
  std::vector<std::string> sheet_captions;
  for (size_t slot = 0; slot < contact_views.size(); ++slot) {
    const size_t view = contact_views[slot];
    ContactPlan plan = PlanContact(result, images_protocol, view, slot);
    plan.layout.cell_captions = CellCaptions(result, wire, plan, view);
    auto one = ComposeContactSheet(plan.layout, plan.cells, views.cameras[view].width, views.cameras[view].height);
    if (!one.ok()) return one.status();
    sheets.push_back(*std::move(one));
    sheet_captions.push_back(views.sphere
                                 ? absl::StrFormat("%s%s: distance %g x fit", IsCloseUp(view) ? "close-up " : "",
                                                   views.cameras[view].name, SphereDistance(view))
                                 : views.cameras[view].name);
  }
  absl::StatusOr<Image> sheet = sheets[0];
  if (sheets.size() > 1) {
    std::vector<CaptionedImage> parts;
    for (size_t i = 0; i < sheets.size(); ++i) parts.push_back({sheet_captions[i], &sheets[i]});
    sheet = StackWithCaptions(parts, cv.height >= 160 ? 2 : 1);
    if (!sheet.ok()) return sheet.status();
  }
  if (absl::Status st = WritePng((fs::path(out) / "contact.png").string(), *sheet); !st.ok()) return st;
  return ContactSheetInfo{PlanContact(result, images_protocol, contact_views[0], 0), sheet->width, sheet->height};
}

// rd.png, PSNR against bytes with a line per delivery format; returns whether there was
// anything to draw (a level with a finite PSNR).
absl::StatusOr<bool> WriteRdChart(const EvalArgs& args, const std::vector<WireSeries>& wire, const EvalResult& result,
                                  const TestViews& views) {
  std::vector<RdSeries> rd_series;
  for (const WireSeries& w : wire) {
    RdSeries points = RdPointsOf(w, *FindRow(result, w.method));
    if (!points.points.empty()) rd_series.push_back(std::move(points));
  }
  if (rd_series.empty()) return false;
  RdChartOptions chart_options;
  // ("a/m.flexgs" and "a/m.flexgs/" both name m.flexgs.)
  const std::string model_name = (fs::path(args.model) / "").parent_path().filename().string();
  chart_options.title = absl::StrFormat("PSNR against bytes: %s, %d %s views", model_name, views.cameras.size(),
                                        views.sphere ? "sphere" : views.protocol);
  auto chart = DrawRdChart(rd_series, chart_options);
  if (!chart.ok()) return chart.status();
  if (absl::Status st = WritePng((fs::path(args.out) / "rd.png").string(), *chart); !st.ok()) return st;
  return true;
}

// Everything report.json, report.md and the printed tables are written from.
struct EvalReport {
  const EvalArgs& args;
  const EvalRequest& request;
  const MethodChoice& methods;
  const ElasticModel& model;
  bool original;  // --original given
  const TestViews& views;
  const EvalResult& result;
  std::string device;  // the rasterizer that rendered
  double seconds;      // of EvaluateMethods
  const SplatTransformWire& st_wire;
  const std::vector<size_t>& contact_views;
  const ContactSheetInfo& contact;
  const std::vector<WireSeries>& wire;
  bool rd_chart;  // rd.png was written
  std::string rd_md;
  nlohmann::json rd_summary;
};

// report.json: every setting, score and byte count, for scripts.
nlohmann::json ReportJson(const EvalReport& r) {
  const size_t contact_view = r.contact_views[0];
  nlohmann::json j;
  j["model"] = r.args.model;
  j["digest"] = r.model.digest;
  j["mode"] = r.model.heuristic() ? "heuristic" : "trained";
  j["gaussians"] = r.model.gaussians.size();
  j["sh_degree"] = r.model.gaussians.sh_degree;
  j["protocol"] = r.views.protocol;
  j["original"] = r.args.original.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.args.original);
  j["views"] = r.views.json;
  for (size_t i = 0; i < r.views.cameras.size(); ++i) {
    const Camera& c = r.views.cameras[i];
    nlohmann::json cam = {{"name", c.name}, {"width", c.width}, {"height", c.height}};
    if (r.views.sphere) cam["distance_factor"] = SphereDistance(i);
    j["views"]["cameras"].push_back(cam);
  }
  j["background"] = r.request.background;
  j["ratios"] = r.request.ratios;
  j["seed"] = r.args.seed;
  j["device"] = r.device;
  j["metrics"] = "PSNR and SSIM (3DGS Gaussian window) on 8-bit images, averaged over views";
  j["seconds"] = r.seconds;
  j["methods"] = nlohmann::json::array();
  j["results"] = nlohmann::json::array();
  for (const EvalRow& row : r.result.rows) {
    j["methods"].push_back({{"name", row.method}, {"select_seconds", row.select_seconds}});
    if (row.method == "full") {
      j["full"] = CellJson("full", row.cells[0], r.views.sphere);
      continue;
    }
    for (const CloudScore& s : row.cells) j["results"].push_back(CellJson(row.method, s, r.views.sphere));
  }
  j["skipped"] = nlohmann::json::array();
  if (!r.methods.st_note.empty()) j["skipped"].push_back({{"method", kSplatTransform}, {"reason", r.methods.st_note}});
  j["contact"] = {{"file", "contact.png"},
                  {"width", r.contact.width},
                  {"height", r.contact.height},
                  {"view", r.views.cameras[contact_view].name},
                  {"rows", r.contact.plan.layout.row_labels},
                  {"columns", r.contact.plan.layout.column_labels}};
  j["contact"]["views"] = nlohmann::json::array();
  for (size_t view : r.contact_views) j["contact"]["views"].push_back(r.views.cameras[view].name);
  j["wire"] = WireJson(r.wire, r.result);
  if (r.methods.want_st && !r.st_wire.lod.empty()) {
    j["lod_pyramid"] = {{"files", r.st_wire.lod_files},
                        {"meta_bytes", r.st_wire.lod_meta_bytes},
                        {"chunking", "splat-transform defaults (-C 512 K Gaussians, -X 16 units per chunk)"},
                        {"attribution",
                         "files under <lod>_*/ count for that LOD (LOD 0 = the largest ratio); "
                         "lod-meta.json for the coarsest, which a viewer fetches first"}};
  }
  j["rd_chart"] = r.rd_chart ? nlohmann::json("rd.png") : nlohmann::json(nullptr);
  j["rd_summary"] = r.rd_summary;
  return j;
}

// report.md's opening list: the model, the views, the settings and the protocol.
std::string MarkdownSetup(const EvalReport& r) {
  const bool images_protocol = r.views.protocol == "images";
  const std::array<float, 3>& background = r.request.background;
  std::string md = absl::StrFormat("# flexgs eval: %s\n\n", r.args.model);
  absl::StrAppend(&md, absl::StrFormat("- Model: %d Gaussians, SH degree %d, digest `%s`.\n", r.model.gaussians.size(),
                                       r.model.gaussians.sh_degree, r.model.digest.substr(0, 16)));
  if (r.model.merged_levels) {
    absl::StrAppend(&md,
                    absl::StrFormat("- **Merged levels**: elastic-nested and elastic-stream hold the nested selection "
                                    "with every other Gaussian merged into it%s.\n",
                                    r.model.refined_rungs.empty()
                                        ? " (untrained)"
                                        : absl::StrFormat(", the Gaussians of %d rungs trained against the input "
                                                          "(`flexgs refine`; other ladders use the merge)",
                                                          r.model.refined_rungs.size())));
  } else if (r.model.heuristic()) {
    absl::StrAppend(&md,
                    "- **heuristic model** (no GsNet / transform field): elastic-independent and elastic-nested "
                    "rank by Global Importance with no transform, so they equal gi-topk.\n");
  } else {
    absl::StrAppend(&md, "- Trained model: elastic-* use GsNet's ranking and the transform field.\n");
  }
  absl::StrAppend(&md, "- Test views: ", r.views.description, ".\n");
  absl::StrAppend(&md, absl::StrFormat("- Background %g,%g,%g; metrics on 8-bit images, averaged over views; "
                                       "random seed %d; %s rasterizer; %.1f s.\n",
                                       background[0], background[1], background[2], r.args.seed, r.device, r.seconds));
  if (!images_protocol && r.original) {
    absl::StrAppend(&md,
                    "- Distillation protocol against the original scene: the reference is its render; `full` is "
                    "the trained model's full set (training also adjusts the Gaussians), and the pruning "
                    "baselines prune the original.\n");
  } else if (!images_protocol) {
    absl::StrAppend(&md,
                    "- Distillation protocol: the reference is the full model's render, so `full` is inf / 1 "
                    "by definition.\n");
  }
  if (!r.methods.st_note.empty()) absl::StrAppend(&md, "- Note: ", r.methods.st_note, ".\n");
  return md;
}

// report.md's size table: Gaussians and float32 bytes each ratio keeps, and selection times.
std::string MarkdownSizes(const EvalReport& r) {
  const std::vector<double>& ratios = r.request.ratios;
  std::string md = "\n## Size\n\n| | full |";
  for (double e : ratios) absl::StrAppend(&md, " ", RatioLabel(e), " |");
  absl::StrAppend(&md, "\n| --- | ---: |");
  for (size_t k = 0; k < ratios.size(); ++k) absl::StrAppend(&md, " ---: |");
  const size_t n = r.model.gaussians.size();
  const uint64_t per = RawBytesPerGaussian(r.model.gaussians.sh_degree);
  absl::StrAppend(&md, "\n| Gaussians | ", n, " |");
  for (double e : ratios) absl::StrAppend(&md, " ", ElasticCount(n, e), " |");
  absl::StrAppend(&md, "\n| float32 bytes | ", n * per, " |");
  for (double e : ratios) absl::StrAppend(&md, " ", ElasticCount(n, e) * per, " |");
  absl::StrAppend(&md, "\n\nEvery method keeps floor(e N) Gaussians (bytes: float32 attributes at SH degree ",
                  r.model.gaussians.sh_degree, ").");
  for (const EvalRow& row : r.result.rows) {
    for (const CloudScore& s : row.cells) {
      if (row.method != "full" && s.count != ElasticCount(n, s.ratio)) {
        absl::StrAppend(&md, absl::StrFormat(" %s kept %d at %s.", row.method, s.count, RatioLabel(s.ratio)));
      }
    }
  }
  absl::StrAppend(&md, "\n\nSelection time (s): ");
  std::vector<std::string> times;
  for (const EvalRow& row : r.result.rows) {
    if (row.method != "full") times.push_back(absl::StrFormat("%s %.2f", row.method, row.select_seconds));
  }
  absl::StrAppend(&md, absl::StrJoin(times, ", "), ".\n");
  return md;
}

// report.md's bytes on the wire: the formats, their table, the equal-bytes summary and rd.png.
std::string MarkdownWire(const EvalReport& r) {
  std::string md = "\n## Quality per byte on the wire\n\n";
  if (r.wire.empty()) {
    absl::StrAppend(&md,
                    "No evaluated method has a delivery format (elastic-nested, elastic-independent, "
                    "splat-transform): no byte table and no `rd.png`.\n");
  } else {
    absl::StrAppend(&md,
                    "What a viewer downloads to show each level. **KiB to show** is the cumulative KiB for "
                    "progressive formats (elastic-nested, lod-pyramid) and the level's own KiB for one-download "
                    "formats; the other columns give both readings. PSNR is the row's mean over the views, of "
                    "the unquantized cloud (the LOD pyramid shows splat-transform's decimated clouds).\n\n");
    for (const WireSeries& w : r.wire) absl::StrAppend(&md, "- `", w.name, "`: ", w.counted, ".\n");
    if (r.methods.want_st) {
      absl::StrAppend(
          &md, absl::StrFormat("- LOD pyramid: %d files, lod-meta.json %d bytes; files under `<lod>_*/` count for "
                               "that LOD (LOD 0 = the largest ratio), lod-meta.json for the coarsest level, which a "
                               "viewer fetches first; splat-transform's default chunking. SOG sizes vary by about "
                               "0.1%% from run to run (splat-transform seeds its k-means randomly).\n",
                               r.st_wire.lod_files, r.st_wire.lod_meta_bytes));
    }
    absl::StrAppend(&md, "\n", WireMarkdown(r.wire, r.result));
    absl::StrAppend(
        &md, absl::StrFormat("\n### elastic-nested against decimation-sog and the LOD pyramid at equal bytes\n\n"
                             "At each nested level's cumulative bytes, the baselines' PSNR read off their curves "
                             "(linear in log bytes between their levels; `-` outside their byte range, e.g. below "
                             "the bytes of their smallest level). Goal: a margin of at least %g dB at every level."
                             "\n\n",
                             kTargetMarginDb));
    absl::StrAppend(&md, r.rd_md);
  }
  if (r.rd_chart) {
    absl::StrAppend(&md,
                    "\n`rd.png`: PSNR against KiB to show (log scale), one line per format, a marker per level."
                    "\n");
  } else if (!r.wire.empty()) {
    absl::StrAppend(&md, "\nNo `rd.png`: no level has a finite PSNR (every one is identical to the reference).\n");
  }
  return md;
}

// report.md's description of contact.png: which views, rows and columns.
std::string MarkdownContactSheet(const EvalReport& r) {
  const size_t contact_view = r.contact_views[0];
  const Camera& cv = r.views.cameras[contact_view];
  std::string sheet_text =
      absl::StrFormat("`contact.png` (%dx%d): view `%s`", r.contact.width, r.contact.height, cv.name);
  if (r.contact_views.size() > 1) {
    sheet_text = absl::StrFormat(
        "`contact.png` (%dx%d): two sheets, one above the other: view `%s` (distance %g x "
        "fit), then the close-up `%s` (distance %g x fit)",
        r.contact.width, r.contact.height, cv.name, SphereDistance(contact_view),
        r.views.cameras[r.contact_views[1]].name, SphereDistance(r.contact_views[1]));
  }
  const ContactSheetLayout& layout = r.contact.plan.layout;
  return absl::StrFormat("\n## Contact sheet\n\n%s. Columns, left to right: %s. Rows, top to bottom: %s.%s\n",
                         sheet_text, absl::StrJoin(layout.column_labels, ", "), absl::StrJoin(layout.row_labels, ", "),
                         r.views.protocol == "images"
                             ? " Every row starts with the ground-truth image (and the full model's "
                               "render when `full` was evaluated)."
                             : " Every row starts with the reference, the full model's render.");
}

// report.md: what a reader needs to judge the numbers, then the tables.
std::string ReportMarkdown(const EvalReport& r) {
  std::string md = MarkdownSetup(r);
  absl::StrAppend(&md, "\n## PSNR (dB)\n\n", MarkdownTable(r.result, true));
  absl::StrAppend(&md, "\n## SSIM\n\n", MarkdownTable(r.result, false));
  absl::StrAppend(&md, MarkdownSizes(r), MarkdownWire(r), MarkdownContactSheet(r));
  return md;
}

// The tables on stdout, so that a run at the terminal needs no file to be read.
void PrintTables(const EvalReport& r) {
  std::cout << "\nPSNR (dB), " << r.views.protocol << " protocol" << (r.model.heuristic() ? ", heuristic model" : "")
            << "\n"
            << MarkdownTable(r.result, true) << "\nSSIM\n"
            << MarkdownTable(r.result, false);
  if (!r.wire.empty()) {
    std::cout << "\nPSNR against bytes on the wire\n" << WireMarkdown(r.wire, r.result) << "\n" << r.rd_md;
  }
  std::cout << "\nwrote " << (fs::path(r.args.out) / "report.md").string() << ", report.json, contact.png"
            << (r.rd_chart ? ", rd.png" : "") << "\n";
}

int RunEval(const EvalArgs& args) {
  auto request = ParseEvalRequest(args);
  if (!request.ok()) return Fail(request.status());
  auto methods = ChooseMethods(args.methods);
  if (!methods.ok()) return Fail(methods.status());
  if (!methods->st_note.empty()) std::cout << "note: " << methods->st_note << "\n";

  auto model = LoadEvalModel(args.model);
  if (!model.ok()) return Fail(model.status());
  auto views = ChooseTestViews(args, *request, *model);
  if (!views.ok()) return Fail(views.status());
  if (absl::Status st = CreateReportDir(args.out); !st.ok()) return Fail(st);
  auto backend = CreateRasterBackend(request->device, args.threads);
  if (!backend.ok()) return Fail(backend.status());
  std::optional<ElasticModel> original;
  if (!args.original.empty()) {
    auto loaded = LoadOriginal(args, *model, request->background, **backend, &*views);
    if (!loaded.ok()) return Fail(loaded.status());
    original = *std::move(loaded);
  }

  ThreadPool pool(args.threads);
  SplatTransformWire st_wire;
  const std::vector<EvalMethod> eval_methods =
      MakeEvalMethods(*methods, *model, original ? *original : *model, args.seed, &pool, &st_wire);
  EvalOptions options;
  options.render.background = request->background;
  options.contact_views = ContactViews(*views, static_cast<size_t>(args.contact_view));
  const auto t0 = std::chrono::steady_clock::now();
  auto result = EvaluateMethods(*model, views->cameras, std::move(views->targets), request->ratios, methods->want_full,
                                eval_methods, options, **backend);
  if (!result.ok()) return Fail(result.status());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  auto wire = BuildWireSeries(*result, *model, st_wire, &pool);
  if (!wire.ok()) return Fail(wire.status());
  auto contact = WriteContactSheet(args.out, *result, *views, options.contact_views, *wire);
  if (!contact.ok()) return Fail(contact.status());
  auto rd_chart = WriteRdChart(args, *wire, *result, *views);
  if (!rd_chart.ok()) return Fail(rd_chart.status());
  std::string rd_md;
  nlohmann::json rd_summary = RdSummary(*wire, *result, &rd_md);

  const EvalReport report{args,
                          *request,
                          *methods,
                          *model,
                          original.has_value(),
                          *views,
                          *result,
                          std::string((*backend)->name()),
                          secs,
                          st_wire,
                          options.contact_views,
                          *contact,
                          *wire,
                          *rd_chart,
                          std::move(rd_md),
                          std::move(rd_summary)};
  if (absl::Status st = WriteText(fs::path(args.out) / "report.json", DumpJson(ReportJson(report))); !st.ok()) {
    return Fail(st);
  }
  if (absl::Status st = WriteText(fs::path(args.out) / "report.md", ReportMarkdown(report)); !st.ok()) {
    return Fail(st);
  }
  PrintTables(report);
  return 0;
}

}  // namespace

void RegisterEvalCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Compare the elastic model with baseline subsets at several ratios on held-out views");
  cmd->add_option("model", args->model, "Elastic model bundle (.flexgs dir)")->required();
  cmd->add_option("--ratios", args->ratios, "Ratios to evaluate, in (0, 1]")->capture_default_str();
  auto* images =
      cmd->add_option("--images", args->images, "Ground-truth PNG images (needs --cameras; every 8th is a test view)")
          ->check(CLI::ExistingDirectory);
  auto* cameras =
      cmd->add_option("--cameras", args->cameras, "INRIA cameras.json or COLMAP model dir (test split: every 8th)");
  auto* orbit = cmd->add_option("--orbit", args->orbit, "N held-out orbit views (default 4 when no cameras are given)")
                    ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  orbit->excludes(cameras);
  auto* width = cmd->add_option("--width", args->width, "View width (orbit default 400; with --images, resample them)")
                    ->check(CLI::Range(1, kMaxViewSize));
  auto* height = cmd->add_option("--height", args->height, "View height")->check(CLI::Range(1, kMaxViewSize));
  width->needs(height);
  height->needs(width);
  auto* fov =
      cmd->add_option("--fov", args->fov_x_deg, "Orbit horizontal field of view (degrees)")->capture_default_str();
  auto* elevation =
      cmd->add_option("--elevation", args->elevation_deg, "Orbit elevation (default: the GI orbit's + 15 degrees)");
  auto* views = cmd->add_option("--views", args->views,
                                "sphere:N: N views over the whole sphere (no training or GI view), distances "
                                "cycling 1, 0.7, 0.5 x the fit distance so every third is a close-up");
  views->excludes(orbit)->excludes(images)->excludes(cameras)->excludes(fov)->excludes(elevation);
  cmd->add_option("--background", args->background, "Background r,g,b in [0,1]")->capture_default_str();
  cmd->add_option("--methods", args->methods,
                  "Comma list of full, elastic-independent, elastic-nested, gi-topk, lightgaussian, opacity-topk, "
                  "random, splat-transform (default all; splat-transform when on PATH)")
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed of the random baseline")->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)")->capture_default_str();
  cmd->add_option("--device", args->device, "cpu, cuda or auto")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--contact-view", args->contact_view, "Test view shown in contact.png")
      ->capture_default_str()
      ->check(CLI::Range(0, std::numeric_limits<int>::max()));
  cmd->add_option("--original", args->original,
                  "The untouched scene a trained model came from: distillation targets and the pruning baselines use "
                  "it (GI over the model's training orbit) instead of the trained Gaussians");
  cmd->add_option("--out", args->out, "Report directory")->required();
  cmd->callback([args, exit_code, elevation, views] {
    args->elevation_given = elevation->count() > 0;
    args->views_given = views->count() > 0;
    *exit_code = RunEval(*args);
  });
}

}  // namespace flexgs::tools

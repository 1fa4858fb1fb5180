// `flexgs train <scene.ply> --out <model.flexgs>`: FlexGS stage-2 training on the CPU
// (core/train/elastic_trainer.h), distilling the input scene from orbit views into a trained
// elastic model bundle (GsNet + transform field) that plan/render/eval/flexgs-server read.
//
// A checkpoint lives next to the bundle (<out>.ckpt). It is written atomically (temp
// file + rename), every --checkpoint-every steps, on SIGINT/SIGTERM and at the end, so
// an interrupted run always leaves a valid one; `--resume` continues from it
// bit-identically.
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "elastic/model_bundle.h"
#include "io/dataset_views.h"
#include "kernels/backend.h"
#include "scene/orbit.h"
#include "scene/view_sampler.h"
#include "tools/commands.h"
#include "tools/scene_source.h"
#include "train/elastic_trainer.h"

namespace flexgs::tools {
namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void OnInterrupt(int sig) {
  g_interrupted.store(true);
  // A second signal ends the process at once; the checkpoint on disk stays valid
  // because it is only ever replaced by rename.
  std::signal(sig, SIG_DFL);
}

struct TrainArgs {
  std::string scene;
  std::string out;
  int orbit = 16;
  int64_t iters = 3000;
  int width = 256;
  int height = 0;            // 0 = width
  bool width_given = false;  // dataset views keep their own size unless --width is given
  uint64_t seed = 1;
  std::string ladder = "0.01,0.05,0.10,0.15,0.20";
  std::string background = "0,0,0";
  int64_t checkpoint_every = 500;
  bool resume = false;
  int threads = 0;
  bool nested = false;
  std::string selection = "served";
  double gi_prior_weight = 1.0;
  std::string device = "auto";
  std::string images;          // dataset PNGs (with --cameras)
  std::string cameras;         // cameras.json or COLMAP model
  std::string views = "auto";  // sphere | hemisphere | orbit | auto
  std::string view_distance = "0.45:1.3";
  std::string view_fov = "40:65";
  bool tune_gaussians = false;
  std::string pose = "per-level";  // per-level | insertion
  double near_view_jitter = 0.2;
  double coverage_share = 0.0;
};

// --views, --view-distance and --view-fov as a distribution (unset for fixed targets:
// `orbit`, or `auto` with dataset cameras). Errors name the flag.
absl::StatusOr<std::optional<ViewDistribution>> ResolveViewSampling(const TrainArgs& args, const TrainOptions& opt) {
  const bool dataset = !args.images.empty() || !args.cameras.empty();
  if (args.views == "dataset" && !dataset) {
    return absl::InvalidArgumentError("--views dataset needs --images and --cameras, or --cameras");
  }
  // Tuned Gaussians need fixed targets (the sampled views' teacher is the frozen input).
  if (args.views == "orbit" || args.views == "dataset" || (args.views == "auto" && (dataset || args.tune_gaussians))) {
    return std::optional<ViewDistribution>();
  }
  if (dataset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--views %s samples views of the input scene; with --images/--cameras use --views auto", args.views));
  }
  ViewDistribution d;
  if (args.views != "auto") {
    absl::StatusOr<ViewDirections> dirs = ParseViewDirections(args.views);
    if (!dirs.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("--views must be sphere, hemisphere, orbit or auto, got '%s'",
                                                        absl::CEscape(args.views.substr(0, 64))));
    }
    d.directions = *dirs;
  }
  absl::Status st = ParseRange(args.view_distance, "--view-distance", &d.min_distance, &d.max_distance);
  if (st.ok()) st = ParseRange(args.view_fov, "--view-fov", &d.min_fov_deg, &d.max_fov_deg);
  d.width = opt.width;
  d.height = opt.height;
  if (st.ok()) st = d.Validate();
  if (!st.ok()) return st;
  return std::optional<ViewDistribution>(d);
}

// The training targets: dataset images (every kLlffHold-th camera by name held out),
// renders of the scene at the dataset's training cameras (--cameras alone), or renders
// from an orbit (neither). Fills `source` for the training summary.
absl::StatusOr<std::vector<TrainingView>> ResolveTargets(const TrainArgs& args, const GaussianCloud& cloud,
                                                         const TrainOptions& opt, nlohmann::json* source) {
  if (args.images.empty() && args.cameras.empty()) {
    const OrbitOptions orbit_defaults;
    if (opt.view_sampling.has_value()) {
      // The targets are only GI's views: a Fibonacci sphere at the fitted distance.
      OrbitOptions sphere;
      sphere.count = opt.orbit_views;
      sphere.width = opt.width;
      sphere.height = opt.height;
      sphere.sphere = true;
      *source = {{"kind", "sphere"}, {"count", opt.orbit_views}, {"fov_x_deg", sphere.fov_x_deg}};
      absl::StatusOr<std::vector<Camera>> cams = MakeOrbitCameras(cloud, sphere);
      if (!cams.ok()) return cams.status();
      return RenderTargets(cloud, *std::move(cams), opt);
    }
    *source = {{"kind", "orbit"},
               {"count", opt.orbit_views},
               {"elevation_deg", orbit_defaults.elevation_deg},
               {"fov_x_deg", orbit_defaults.fov_x_deg}};
    return MakeOrbitTargets(cloud, opt);
  }
  if (args.cameras.empty())
    return absl::InvalidArgumentError("--images needs --cameras (cameras.json or a COLMAP model)");
  absl::StatusOr<DatasetCameras> split = SplitDatasetCameras(args.cameras);
  if (!split.ok()) return split.status();
  if (split->train.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s has %d camera(s): every %dth is held out for testing, none is left to train on",
                        args.cameras, split->total(), kLlffHold));
  }
  const bool sized = args.width_given;
  // Resampled views keep the cameras' aspect unless --height is given too.
  const Camera& first = split->train.front();
  const int width = opt.width;
  const int height =
      args.height > 0
          ? args.height
          : std::max(1, static_cast<int>(std::lround(static_cast<double>(width) * first.height / first.width)));
  *source = {{"kind", args.images.empty() ? "dataset-cameras" : "dataset-images"},
             {"cameras_path", args.cameras},
             {"hold", kLlffHold},
             {"train", split->train.size()},
             {"test", split->test.size()}};
  if (args.images.empty()) {
    if (sized) {
      for (Camera& cam : split->train) cam = cam.Resized(width, height);
    }
    return RenderTargets(cloud, std::move(split->train), opt);
  }
  (*source)["images_dir"] = args.images;
  absl::StatusOr<std::vector<DatasetView>> views =
      LoadDatasetViews(args.images, split->train, opt.background, sized ? width : 0, sized ? height : 0);
  if (!views.ok()) return views.status();
  std::vector<TrainingView> targets;
  targets.reserve(views->size());
  for (DatasetView& v : *views) targets.push_back({std::move(v.camera), std::move(v.image)});
  return targets;
}

int Fail(const absl::Status& st) {
  std::cerr << "flexgs train: error: " << st.message() << "\n";
  return 1;
}

std::string Duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

int RunTrain(const TrainArgs& args) {
  // Everything that can be wrong with the inputs is checked before any training.
  TrainOptions opt;
  opt.iters = args.iters;
  opt.orbit_views = args.orbit;
  opt.width = args.width;
  opt.height = args.height > 0 ? args.height : args.width;
  opt.seed = args.seed;
  opt.threads = args.threads;
  opt.checkpoint_every = args.checkpoint_every;
  auto ladder = ParseLadder(args.ladder);
  if (!ladder.ok()) return Fail(ladder.status());
  opt.ladder = *ladder;
  auto bg = ParseBackground(args.background);
  if (!bg.ok()) return Fail(bg.status());
  opt.background = *bg;
  opt.nested = args.nested;
  opt.reference_selection = args.selection == "reference";
  opt.tune_gaussians = args.tune_gaussians;
  opt.coverage_share = args.coverage_share;
  opt.pose_at_insertion = args.pose == "insertion";
  auto sampling = ResolveViewSampling(args, opt);
  if (!sampling.ok()) return Fail(sampling.status());
  opt.view_sampling = *sampling;
  // Tuned Gaussians move away from the input; sampled and near views still render it.
  // Dataset views (auto): every second step a teacher view near a dataset camera.
  const bool dataset = !args.images.empty() || !args.cameras.empty();
  if (dataset && args.views == "auto" && !args.tune_gaussians) opt.near_view_jitter = args.near_view_jitter;
  opt.gi_prior_weight = opt.reference_selection ? 0.0 : args.gi_prior_weight;
  // The renders (forward and backward) run on the chosen device; GsNet, the field and
  // Adam on the CPU. Checked now, so a missing GPU fails before any work.
  auto device = ParseDevice(args.device);
  if (!device.ok()) return Fail(device.status());
  auto probe = CreateDifferentiableRasterBackend(*device, args.threads);
  if (!probe.ok()) return Fail(probe.status());
  const std::string device_name((*probe)->name());
  probe->reset();
  const Device chosen = device_name == "cuda" ? Device::kCuda : Device::kCpu;
  opt.raster_factory = [chosen, threads = args.threads] { return CreateDifferentiableRasterBackend(chosen, threads); };
  if (absl::Status st = opt.Validate(); !st.ok()) return Fail(st);
  if (args.out.empty()) return Fail(absl::InvalidArgumentError("--out is empty"));
  const std::string ckpt = args.out + ".ckpt";
  if (args.resume && !std::filesystem::exists(ckpt)) {
    return Fail(absl::NotFoundError(absl::StrFormat("--resume: no checkpoint '%s' to resume from", ckpt)));
  }
  auto cloud = LoadScene(args.scene);
  if (!cloud.ok()) return Fail(cloud.status());
  if (cloud->empty()) return Fail(absl::InvalidArgumentError(absl::StrFormat("'%s' has no Gaussians", args.scene)));
  if (opt.tune_gaussians && (opt.view_sampling.has_value() || opt.near_view_jitter > 0.0)) {
    opt.teacher = std::make_shared<const GaussianCloud>(*cloud);
  }

  const auto t_setup = std::chrono::steady_clock::now();
  nlohmann::json target_source;
  auto targets = ResolveTargets(args, *cloud, opt, &target_source);
  if (!targets.ok()) return Fail(targets.status());
  const size_t view_count = targets->size();
  const int view_width = targets->front().camera.width, view_height = targets->front().camera.height;
  absl::StatusOr<std::unique_ptr<ElasticTrainer>> trainer;
  if (args.resume) {
    trainer = ElasticTrainer::LoadCheckpoint(ckpt, *std::move(targets), opt);
  } else {
    auto model = InitialElasticModel(*cloud, *targets, opt);
    if (!model.ok()) return Fail(model.status());
    trainer = ElasticTrainer::Create(*std::move(model), *std::move(targets), opt);
  }
  if (!trainer.ok()) return Fail(trainer.status());
  ElasticTrainer& t = **trainer;
  *cloud = GaussianCloud{};  // the trainer holds its own copy
  const std::string view_text =
      opt.view_sampling.has_value()
          ? absl::StrFormat("a fresh %s view per step (distance %s, fov %s; GI on %d sphere views)",
                            ViewDirectionsName(opt.view_sampling->directions), args.view_distance, args.view_fov,
                            view_count)
          : absl::StrFormat("%d %s views", view_count, target_source["kind"].get<std::string>());
  const std::string near_text =
      opt.near_view_jitter > 0
          ? absl::StrFormat(" (every second step a render of the input near one, jitter %g)", opt.near_view_jitter)
          : "";
  std::cerr << absl::StrFormat(
      "flexgs train: %s, %s of %dx%d%s, %s Gaussians, poses %s, on %s, %s at iteration %d "
      "of %d (setup %.1f s)\n",
      args.scene, view_text, view_width, view_height, near_text, opt.tune_gaussians ? "tuned" : "frozen", args.pose,
      device_name, args.resume ? "resumed" : "starting", t.iteration(), opt.iters,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_setup).count());

  g_interrupted.store(false);
  auto old_int = std::signal(SIGINT, OnInterrupt);
  auto old_term = std::signal(SIGTERM, OnInterrupt);
  auto restore = [&] {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto last_print = t0 - std::chrono::seconds(10);
  const int64_t start_it = t.iteration();
  StepStats s;
  while (t.iteration() < opt.iters && !g_interrupted.load()) {
    auto step = t.Step();
    if (!step.ok()) {
      restore();
      return Fail(step.status());
    }
    s = *step;
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - t0).count();
    const double rate = static_cast<double>(t.iteration() - start_it) / std::max(elapsed, 1e-9);
    if (now - last_print >= std::chrono::seconds(1) || t.iteration() == opt.iters) {
      last_print = now;
      std::cerr << absl::StrFormat(
          "step %d/%d  e %.2f  loss %.4f  PSNR(sel) %.2f dB  PSNR(full) %s  GI agree %.3f  %.2f steps/s  ETA %s\n",
          t.iteration(), opt.iters, s.ratio, s.loss, s.psnr_selected,
          std::isnan(s.psnr_full) ? std::string("frozen") : absl::StrFormat("%.2f dB", s.psnr_full), s.gi_agreement,
          rate, Duration(static_cast<double>(opt.iters - t.iteration()) / rate));
    }
    if (opt.checkpoint_every > 0 && t.iteration() % opt.checkpoint_every == 0 && t.iteration() < opt.iters) {
      if (absl::Status st = t.SaveCheckpoint(ckpt); !st.ok()) {
        restore();
        return Fail(st);
      }
    }
  }
  restore();
  if (absl::Status st = t.SaveCheckpoint(ckpt); !st.ok()) return Fail(st);
  if (g_interrupted.load()) {
    std::cerr << absl::StrFormat("flexgs train: interrupted at iteration %d; checkpoint %s (continue with --resume)\n",
                                 t.iteration(), ckpt);
    return 130;
  }
  ElasticModel model = t.Result();
  nlohmann::json summary = nlohmann::json::parse(model.training_summary_json);
  summary["source"] = args.scene;
  summary["background"] = opt.background;
  // The views the targets and GI used, so `flexgs eval` picks held-out views.
  summary["gi_cameras"] = target_source;
  summary["final"] = {{"loss", s.loss}, {"psnr_selected", s.psnr_selected}, {"ratio", s.ratio}};
  model.training_summary_json = summary.dump();
  if (absl::Status st = WriteModelBundle(args.out, model); !st.ok()) return Fail(st);
  std::cout << absl::StrFormat("trained %d iterations (%d Gaussians); wrote model %s (digest %s)\n", t.iteration(),
                               model.gaussians.size(), args.out, model.digest.substr(0, 16));
  return 0;
}

}  // namespace

void RegisterTrainCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train", "FlexGS stage-2 training (GsNet + transform field) distilled from orbit renders of a scene");
  cmd->add_option("scene", args->scene, "Scene PLY (or a model bundle: its full Gaussians)")->required();
  cmd->add_option("--out", args->out, "Output bundle directory (<name>.flexgs); checkpoint at <out>.ckpt")->required();
  cmd->add_option("--orbit", args->orbit, "GI views (on a sphere; with --views orbit also the fixed training ring)")
      ->capture_default_str();
  cmd->add_option("--iters", args->iters, "Total training iterations")->capture_default_str();
  cmd->add_option("--images", args->images,
                  "Dataset PNG folder (with --cameras; every 8th camera by name is held out)");
  cmd->add_option("--cameras", args->cameras,
                  "cameras.json or COLMAP model; without --images, the scene's renders at its training cameras");
  cmd->add_option("--width", args->width, "Target width (dataset views: resample to it; default their own size)")
      ->capture_default_str()
      ->each([args](const std::string&) { args->width_given = true; });
  cmd->add_option("--height", args->height, "Target render height (0 = width)")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed (network init, views, Gumbel noise)")->capture_default_str();
  cmd->add_option("--ladder", args->ladder, "Training ratios, used round-robin")->capture_default_str();
  cmd->add_option("--background", args->background, "Background r,g,b")->capture_default_str();
  cmd->add_option("--checkpoint-every", args->checkpoint_every, "Checkpoint every K steps (0 = only at the end)")
      ->capture_default_str();
  cmd->add_flag("--resume", args->resume, "Continue from <out>.ckpt");
  cmd->add_flag("--nested", args->nested, "Train on nested selections (level k contains level k-1), as streamed");
  cmd->add_option("--selection", args->selection,
                  "served: the exact top-k clients receive (GI prior + GsNet); reference: FlexGS's Gumbel sampling")
      ->capture_default_str()
      ->check(CLI::IsMember({"served", "reference"}));
  cmd->add_option("--gi-prior-weight", args->gi_prior_weight, "Weight of log GI in the ranking (served selection)")
      ->capture_default_str();
  cmd->add_option("--coverage-share", args->coverage_share,
                  "Share of each level that goes first to spatial coverage: the GI-best Gaussian of each octree cell, "
                  "at the finest cell size that fits (0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--device", args->device,
                  "Renders and their gradients on cpu, cuda or auto (the networks and Adam run on the CPU); "
                  "resume is bit-identical on cpu, equal to rounding on cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--views", args->views,
                  "Distillation views: sphere or hemisphere (a fresh camera each step, GI on --orbit sphere views), "
                  "orbit (--orbit fixed ring views), dataset (only the dataset's views), auto (sphere; with "
                  "--images/--cameras the dataset's views and, every second step, a render of the input near one)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "sphere", "hemisphere", "orbit", "dataset"}));
  cmd->add_option("--near-view-jitter", args->near_view_jitter,
                  "With dataset views (auto): how far the views near them move, as a fraction of the distance")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--view-distance", args->view_distance,
                  "LO:HI sampled distance, in multiples of the distance that frames the whole scene (< 1: close-ups)")
      ->capture_default_str();
  cmd->add_option("--view-fov", args->view_fov, "LO:HI sampled horizontal field of view in degrees, in (0, 180)")
      ->capture_default_str();
  cmd->add_flag("--tune-gaussians", args->tune_gaussians,
                "Also train the Gaussians (the reference's joint tuning); by default they stay the input bit for bit");
  cmd->add_option("--pose", args->pose,
                  "per-level: every level re-poses all kept Gaussians (patches on the wire); insertion: a Gaussian "
                  "keeps the pose of the level that first sends it (no patches; needs --nested)")
      ->capture_default_str()
      ->check(CLI::IsMember({"per-level", "insertion"}));
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)");
  cmd->callback([args, exit_code] { *exit_code = RunTrain(*args); });
}

}  // namespace flexgs::tools

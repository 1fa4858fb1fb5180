// `flexgs refine`: trains the level attributes of a merged-level model (LevelRefiner),
// so that its small levels beat decimation from every viewpoint; the input and the
// 100 % level stay as they were.
#include <chrono>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "elastic/model_bundle.h"
#include "kernels/backend.h"
#include "scene/view_sampler.h"
#include "stream/level_planner.h"
#include "tools/commands.h"
#include "tools/scene_source.h"
#include "train/level_refiner.h"

namespace flexgs::tools {
namespace {

struct RefineArgs {
  std::string model;
  std::string out;
  int iters = 300;
  int views = 150;
  int width = 256;
  int height = 0;
  std::string directions = "sphere";
  std::string view_distance = "0.45:1.3";
  std::string view_fov = "40:65";
  bool additions_only = false;
  double replacement_share = 1.0;
  uint64_t seed = 1;
  std::string background = "0,0,0";
  std::string device = "auto";
  int threads = 0;
};

int Fail(const absl::Status& st) {
  std::cerr << "flexgs refine: error: " << st.message() << "\n";
  return 1;
}

int RunRefine(const RefineArgs& args) {
  absl::StatusOr<ElasticModel> model = ReadModelBundle(args.model);
  if (!model.ok()) return Fail(model.status());
  if (!model->merged_levels) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat(args.model, " does not have merged levels (make one with `flexgs elasticize --levels merged`)")));
  }
  LevelRefineOptions options;
  options.iterations = args.iters;
  options.teacher_views = args.views;
  options.seed = args.seed;
  options.replacement_share = args.additions_only ? 0.0 : args.replacement_share;
  options.views.width = args.width;
  options.views.height = args.height > 0 ? args.height : args.width;
  absl::StatusOr<ViewDirections> dirs = ParseViewDirections(args.directions);
  if (!dirs.ok()) return Fail(dirs.status());
  options.views.directions = *dirs;
  absl::Status st =
      ParseRange(args.view_distance, "--view-distance", &options.views.min_distance, &options.views.max_distance);
  if (st.ok()) st = ParseRange(args.view_fov, "--view-fov", &options.views.min_fov_deg, &options.views.max_fov_deg);
  if (st.ok()) st = options.Validate();
  if (!st.ok()) return Fail(st);
  absl::StatusOr<std::array<float, 3>> bg = ParseBackground(args.background);
  if (!bg.ok()) return Fail(bg.status());
  options.background = *bg;
  absl::StatusOr<Device> device = ParseDevice(args.device);
  if (!device.ok()) return Fail(device.status());
  auto teacher = CreateRasterBackend(*device, args.threads);
  if (!teacher.ok()) return Fail(teacher.status());
  auto student = CreateDifferentiableRasterBackend(*device, args.threads);
  if (!student.ok()) return Fail(student.status());

  ThreadPool pool(args.threads);
  ElasticModel& m = *model;
  const auto t0 = std::chrono::steady_clock::now();
  // The merge itself, not an earlier refinement, is what is refined.
  absl::StatusOr<std::vector<MergedRung>> rungs = MergedRungs(m, &pool);
  if (!rungs.ok()) return Fail(rungs.status());
  if (rungs->empty()) return Fail(absl::FailedPreconditionError("the model's ladder has no rung below 1"));
  if (rungs->size() > kMaxRefinedRungs) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "the model's ladder has ", rungs->size(), " rungs below 1; at most ", kMaxRefinedRungs, " can be refined")));
  }
  // What the stream will re-send is what the planner finds visible at the model's tolerance.
  options.visible = [tolerance = m.replacement_tolerance](const GaussianCloud& now, size_t i, const GaussianCloud& held,
                                                          size_t j) {
    return ReplacementIsVisible(now, i, held, j, tolerance);
  };
  std::cout << absl::StrFormat("refining %d rungs of %s: %d steps each, %d views of %dx%d (%s)\n", rungs->size(),
                               args.model, args.iters, args.views, options.views.width, options.views.height,
                               (*student)->name());
  nlohmann::json report = nlohmann::json::array();
  auto progress = [&](const RungReport& r) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << absl::StrFormat("  rung %.4g: %d held, %d trained, loss %.4f -> %.4f (%.0f s)\n", r.ratio, r.held,
                                 r.optimized, r.first_loss, r.last_loss, s)
              << std::flush;
    report.push_back({{"ratio", r.ratio},
                      {"held", r.held},
                      {"trained", r.optimized},
                      {"first_loss", r.first_loss},
                      {"last_loss", r.last_loss}});
  };
  absl::StatusOr<std::vector<RefinedRung>> refined =
      RefineRungs(m.gaussians, *rungs, options, **teacher, **student, &pool, progress);
  if (!refined.ok()) return Fail(refined.status());
  m.refined_rungs = *std::move(refined);
  // Recorded beside the model's own training summary.
  nlohmann::json summary = nlohmann::json::parse(m.training_summary_json, nullptr, false);
  if (!summary.is_object()) summary = nlohmann::json::object();
  summary["refine"] = {{"iterations", args.iters},
                       {"views", args.views},
                       {"width", options.views.width},
                       {"height", options.views.height},
                       {"directions", args.directions},
                       {"view_distance", args.view_distance},
                       {"view_fov", args.view_fov},
                       {"replacement_share", options.replacement_share},
                       {"seed", args.seed},
                       {"rungs", report}};
  m.training_summary_json = summary.dump();
  if (absl::Status w = WriteModelBundle(args.out, m); !w.ok()) return Fail(w);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << absl::StrFormat("wrote %s in %.1f s (digest %s)\n", args.out, s, m.digest.substr(0, 16));
  return 0;
}

}  // namespace

void RegisterRefineCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<RefineArgs>();
  CLI::App* cmd = app.add_subcommand(
      "refine", "Train a merged-level model's level attributes against its input, from views all around");
  cmd->add_option("model", args->model, "Merged-level model bundle (flexgs elasticize --levels merged)")->required();
  cmd->add_option("--out", args->out, "Output bundle directory")->required();
  cmd->add_option("--iters", args->iters, "Adam steps per rung")->capture_default_str();
  cmd->add_option("--views", args->views, "Views of the input rendered once and cycled through")->capture_default_str();
  cmd->add_option("--width", args->width, "View width")->capture_default_str();
  cmd->add_option("--height", args->height, "View height (0 = width)")->capture_default_str();
  cmd->add_option("--directions", args->directions, "sphere or hemisphere (upper)")->capture_default_str();
  cmd->add_option("--view-distance", args->view_distance, "LO:HI distance in multiples of the framing distance")
      ->capture_default_str();
  cmd->add_option("--view-fov", args->view_fov, "LO:HI horizontal field of view in degrees, in (0, 180)")
      ->capture_default_str();
  CLI::Option* share =
      cmd->add_option("--replacement-share", args->replacement_share,
                      "Share of each rung's merge replacements trained and re-sent, largest changes first (0..1)")
          ->capture_default_str();
  cmd->add_flag("--additions-only", args->additions_only,
                "Train only each rung's new Gaussians (--replacement-share 0: nothing re-sent below 100 %)")
      ->excludes(share);
  cmd->add_option("--seed", args->seed, "Seed of the views")->capture_default_str();
  cmd->add_option("--background", args->background, "Background r,g,b")->capture_default_str();
  cmd->add_option("--device", args->device, "auto, cpu or cuda (renders)")->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)");
  cmd->callback([args, exit_code] { *exit_code = RunRefine(*args); });
}

}  // namespace flexgs::tools

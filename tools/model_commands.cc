// `flexgs elasticize` (PLY -> heuristic elastic model bundle) and `flexgs plan`
// (what a client with a given budget would receive).
#include <chrono>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "elastic/elastic_selection.h"  // ElasticCount
#include "elastic/heuristic_model.h"
#include "elastic/model_bundle.h"
#include "io/ply_io.h"
#include "render/global_importance.h"
#include "scene/orbit.h"
#include "stream/level_planner.h"
#include "stream/stream_export.h"
#include "stream/stream_script.h"
#include "tools/commands.h"
#include "tools/scene_source.h"

namespace flexgs::tools {
namespace {

int Fail(const char* cmd, const absl::Status& st) {
  std::cerr << "flexgs " << cmd << ": error: " << st.message() << "\n";
  return 1;
}

struct ElasticizeArgs {
  std::string scene;
  std::string out;
  ViewSpec views;
  std::string variant = "flexgs";
  std::string ladder;
  double coverage_share = 0.0;
  std::string levels = "selected";
  double replacement_tolerance = 2.0;
  int merge_passes = kDefaultMergeRefinePasses;
  bool passes_given = false;
  bool tolerance_given = false;
  int threads = 0;
};

int RunElasticize(ElasticizeArgs args) {
  HeuristicModelOptions heuristic;
  if (args.variant == "flexgs") {
    heuristic.gi_variant = GiVariant::kFlexGs;
  } else if (args.variant == "lightgaussian") {
    heuristic.gi_variant = GiVariant::kLightGaussianVolume;
  } else {
    return Fail("elasticize",
                absl::InvalidArgumentError("--gi must be flexgs or lightgaussian, not '" + args.variant + "'"));
  }
  heuristic.coverage_share = args.coverage_share;
  heuristic.merged_levels = args.levels == "merged";
  heuristic.replacement_tolerance = heuristic.merged_levels ? args.replacement_tolerance : 0.0;
  heuristic.merge_refine_passes = args.merge_passes;
  if (args.passes_given && !heuristic.merged_levels) {
    return Fail("elasticize", absl::InvalidArgumentError("--merge-passes needs --levels merged"));
  }
  if (args.tolerance_given && !heuristic.merged_levels) {
    return Fail("elasticize", absl::InvalidArgumentError("--replacement-tolerance needs --levels merged"));
  }
  if (!args.ladder.empty()) {
    auto ladder = ParseLadder(args.ladder);
    if (!ladder.ok()) return Fail("elasticize", ladder.status());
    heuristic.ladder = *ladder;
  }
  auto cloud = LoadScene(args.scene);
  if (!cloud.ok()) return Fail("elasticize", cloud.status());
  if (args.views.cameras_path.empty() && args.views.orbit <= 0) args.views.orbit = 24;
  auto cams = ResolveCameras(RobustBounds(*cloud), args.views, /*resize_dataset_cameras=*/true);
  if (!cams.ok()) return Fail("elasticize", cams.status());
  // Which views GI saw, so `flexgs eval` can pick test views that are none of them.
  const nlohmann::json gi_cameras =
      args.views.cameras_path.empty()
          ? nlohmann::json{{"kind", "orbit"},
                           {"count", cams->size()},
                           {"elevation_deg", args.views.elevation_deg},
                           {"fov_x_deg", args.views.fov_x_deg}}
          : nlohmann::json{{"kind", "cameras"}, {"path", args.views.cameras_path}, {"count", cams->size()}};
  heuristic.threads = args.threads;
  heuristic.source = args.scene;
  heuristic.gi_cameras_json = gi_cameras.dump();
  const auto t0 = std::chrono::steady_clock::now();
  auto made = MakeHeuristicModel(*std::move(cloud), *cams, heuristic);
  if (!made.ok()) return Fail("elasticize", made.status());
  const double gi_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ElasticModel& model = *made;
  if (absl::Status st = WriteModelBundle(args.out, model); !st.ok()) return Fail("elasticize", st);
  std::cout << absl::StrFormat("GI over %d views of %dx%d in %.2f s; wrote heuristic model %s (digest %s)\n",
                               cams->size(), (*cams)[0].width, (*cams)[0].height, gi_s, args.out,
                               model.digest.substr(0, 16));
  return 0;
}

struct PlanArgs {
  std::string model;
  double budget_ratio = 0.15;
  std::string ladder;
  bool json = false;
  int threads = 0;
  std::string export_levels;  // directory for level-<k>.ply
  int stops_per_doubling = kCanonicalStopsPerDoubling;
};

int RunPlan(const PlanArgs& args) {
  auto model = ReadModelBundle(args.model);
  if (!model.ok()) return Fail("plan", model.status());
  if (!(args.budget_ratio > 0.0 && args.budget_ratio <= 1.0)) {
    return Fail("plan",
                absl::InvalidArgumentError(absl::StrCat("--budget-ratio ", args.budget_ratio, " is outside (0, 1]")));
  }
  // What the server sends: its canonical stream for the ladder, cut at the budget (planned
  // only as far as the budget reaches).
  std::vector<double> ladder;
  if (!args.ladder.empty()) {
    auto parsed = ParseLadder(args.ladder);
    if (!parsed.ok()) return Fail("plan", parsed.status());
    ladder = *parsed;
  }
  ThreadPool pool(args.threads);
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<Plan> plan;
  if (args.stops_per_doubling == kCanonicalStopsPerDoubling) {
    plan = PlanCanonicalUpTo(*model, ladder, args.budget_ratio, &pool);
  } else {
    PlanRequest req = CanonicalPlanRequest(ladder);
    req.stops_per_doubling = args.stops_per_doubling;
    plan = PlanLevels(*model, req, &pool);
  }
  if (!plan.ok()) return Fail("plan", plan.status());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<uint64_t> counts;
  for (const PlanLevel& l : plan->levels) counts.push_back(l.count);
  const int last = LastLevelWithin(counts, ElasticCount(plan->model_gaussians, args.budget_ratio));
  if (last < 0) {
    return Fail("plan", absl::FailedPreconditionError(absl::StrCat("a budget ratio of ", args.budget_ratio,
                                                                   " holds less than the first level (", counts.front(),
                                                                   " Gaussians)")));
  }
  plan->levels.resize(static_cast<size_t>(last) + 1);
  // What the levels cost on the wire with the default (quantized) stream encoding.
  ScriptOptions script_options;
  script_options.sh_degree = plan->sh_degree;
  auto script = BuildStreamScript(*plan, script_options);
  if (!script.ok()) return Fail("plan", script.status());
  nlohmann::json j;
  j["model"] = args.model;
  j["digest"] = model->digest;
  j["mode"] = model->merged_levels ? (model->refined_rungs.empty() ? "merged" : "merged, refined")
              : model->heuristic() ? "heuristic"
                                   : "trained";
  j["gaussians"] = plan->model_gaussians;
  j["sh_degree"] = plan->sh_degree;
  j["plan_seconds"] = secs;
  uint64_t total = 0, cumulative_encoded = 0;
  // Bytes per item, or null for a level without such items.
  const auto PerItem = [](uint64_t bytes, uint64_t items) {
    return items ? nlohmann::json(static_cast<double>(bytes) / static_cast<double>(items)) : nlohmann::json(nullptr);
  };
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    const PlanLevel& l = plan->levels[k];
    total += plan->RawLevelBytes(k);
    j["levels"].push_back(
        {{"ratio", l.ratio},
         {"count", l.count},
         {"added", l.added.size()},
         {"patched", l.patches.size() / kPatchStride + l.replaced.size()},
         {"raw_bytes", plan->RawLevelBytes(k)},
         {"encoded_bytes", script->levels[k].payload_bytes},
         {"added_bytes", script->levels[k].payload_bytes - script->levels[k].patch_bytes},
         {"patch_bytes", script->levels[k].patch_bytes},
         {"bytes_per_added", PerItem(script->levels[k].payload_bytes - script->levels[k].patch_bytes, l.added.size())},
         {"bytes_per_patch",
          PerItem(script->levels[k].patch_bytes, l.patches.size() / kPatchStride + l.replaced.size())},
         {"cumulative_encoded_bytes", cumulative_encoded += script->levels[k].payload_bytes},
         {"bytes_per_delivered", PerItem(cumulative_encoded, l.count)},
         {"cumulative_raw_bytes", total},
         {"overlap_with_independent", l.overlap_with_independent}});
  }
  if (!args.export_levels.empty()) {
    // What a client holds after each level (unquantized), for comparing its renders.
    std::error_code ec;
    std::filesystem::create_directories(args.export_levels, ec);
    if (ec)
      return Fail("plan",
                  absl::UnavailableError(absl::StrCat("cannot create '", args.export_levels, "': ", ec.message())));
    for (size_t k = 0; k < plan->levels.size(); ++k) {
      auto cloud = LevelCloud(*plan, k);
      if (!cloud.ok()) return Fail("plan", cloud.status());
      auto st = WriteGaussianPly(
          (std::filesystem::path(args.export_levels) / absl::StrFormat("level-%d.ply", k)).string(), *cloud);
      if (!st.ok()) return Fail("plan", st);
    }
  }
  if (args.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%s (%s, %d Gaussians, SH %d): plan in %.3f s\n", args.model,
                               j["mode"].get<std::string>(), plan->model_gaussians, plan->sh_degree, secs);
  std::cout << "  level  ratio     count     added   patched   raw bytes  wire bytes  B/added  B/patch  "
               "B/held  overlap\n";
  const auto per = [](const nlohmann::json& v) {
    return v.is_null() ? std::string("-") : absl::StrFormat("%.2f", v.get<double>());
  };
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    const PlanLevel& l = plan->levels[k];
    const nlohmann::json& jl = j["levels"][k];
    std::cout << absl::StrFormat("  %5d  %5.3f  %8d  %8d  %8d  %10d  %10d  %7s  %7s  %6s  %7.4f\n", k + 1, l.ratio,
                                 l.count, l.added.size(), l.patches.size() / kPatchStride + l.replaced.size(),
                                 plan->RawLevelBytes(k), script->levels[k].payload_bytes, per(jl["bytes_per_added"]),
                                 per(jl["bytes_per_patch"]), per(jl["bytes_per_delivered"]),
                                 l.overlap_with_independent);
  }
  return 0;
}

struct ExportStreamArgs {
  std::string model, out, ladder, encoding = "quantized";
  int max_sh_degree = 3;
  uint32_t max_chunk_bytes = ScriptOptions{}.max_chunk_bytes;
  int threads = 0;
};

// The canonical stream the server would build for these parameters, as static files.
int RunExportStream(const ExportStreamArgs& args) {
  auto model = ReadModelBundle(args.model);
  if (!model.ok()) return Fail("export-stream", model.status());
  PlanRequest req = CanonicalPlanRequest({});
  if (!args.ladder.empty()) {
    auto ladder = ParseLadder(args.ladder);
    if (!ladder.ok()) return Fail("export-stream", ladder.status());
    req.ladder = *ladder;
  }
  ThreadPool pool(args.threads);
  auto plan = PlanLevels(*model, req, &pool);
  if (!plan.ok()) return Fail("export-stream", plan.status());
  ScriptOptions options;
  options.encoding = args.encoding == "lossless" ? ChunkEncoding::kLossless : ChunkEncoding::kQuantized;
  options.sh_degree = std::min(args.max_sh_degree, plan->sh_degree);
  options.max_chunk_bytes = args.max_chunk_bytes;
  auto script = BuildStreamScript(*plan, options);
  if (!script.ok()) return Fail("export-stream", script.status());
  const GaussianCloud& g = model->gaussians;
  ExportedScene scene;
  scene.scene_id = std::filesystem::path(args.model).stem().string();
  scene.model_digest = model->digest;
  scene.model_gaussians = g.size();
  scene.model_sh_degree = g.sh_degree;
  scene.trained = !model->heuristic();
  scene.ladder = req.ladder.empty() ? model->ladder : req.ladder;
  const SceneBounds all = RobustBounds(g, 0.0, 1.0), view = RobustBounds(g);
  for (int d = 0; d < 3; ++d) {
    scene.bounds_min[d] = static_cast<float>(all.lo[d]);
    scene.bounds_max[d] = static_cast<float>(all.hi[d]);
    scene.view_min[d] = static_cast<float>(view.lo[d]);
    scene.view_max[d] = static_cast<float>(view.hi[d]);
  }
  if (absl::Status st = WriteStreamExport(*script, scene, args.out); !st.ok()) return Fail("export-stream", st);
  std::cout << absl::StrFormat("%s: %d levels up to 100%%, %d blocks, %d bytes of blocks (%s, SH %d) in %s\n",
                               args.model, script->levels.size(), script->items.size() - 2 - script->levels.size(),
                               script->payload_bytes, args.encoding, options.sh_degree, args.out);
  return 0;
}

}  // namespace

void RegisterExportStreamCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ExportStreamArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export-stream", "Write the server's canonical stream of a model as static files (index.json + blocks.bin)");
  cmd->add_option("model", args->model, "Model bundle directory")->required();
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--ladder", args->ladder, "Ladder override, e.g. 0.01,0.05,0.10,0.15");
  cmd->add_option("--encoding", args->encoding, "quantized or lossless")
      ->capture_default_str()
      ->check(CLI::IsMember({"quantized", "lossless"}));
  cmd->add_option("--max-sh-degree", args->max_sh_degree, "Highest SH degree streamed")
      ->capture_default_str()
      ->check(CLI::Range(0, 3));
  cmd->add_option("--max-chunk-bytes", args->max_chunk_bytes, "Largest block message")
      ->capture_default_str()
      ->check(CLI::Range(kMinChunkBytes, kMaxChunkBytes));
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)");
  cmd->callback([args, exit_code] { *exit_code = RunExportStream(*args); });
}

absl::StatusOr<std::vector<double>> ParseLadder(const std::string& text) {
  std::vector<double> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double v;
    if (!absl::SimpleAtod(part, &v)) {
      return absl::InvalidArgumentError(absl::StrFormat("ladder value '%s' is not a number", std::string(part)));
    }
    out.push_back(v);
  }
  return out;
}

void RegisterElasticizeCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ElasticizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "elasticize", "Compute Global Importance and write a heuristic elastic model bundle (servable at once)");
  cmd->add_option("scene", args->scene, "Scene PLY")->required();
  cmd->add_option("--out", args->out, "Output bundle directory (<name>.flexgs)")->required();
  auto* orbit = cmd->add_option("--orbit", args->views.orbit, "Orbit views for GI (default 24)");
  auto* cams = cmd->add_option("--cameras", args->views.cameras_path, "INRIA cameras.json or COLMAP model dir");
  orbit->excludes(cams);
  cmd->add_option("--width", args->views.width, "GI render width")->capture_default_str();
  cmd->add_option("--height", args->views.height, "GI render height")->capture_default_str();
  cmd->add_option("--gi", args->variant, "GI variant: flexgs or lightgaussian")->capture_default_str();
  cmd->add_option("--ladder", args->ladder, "Default streaming ladder, e.g. 0.01,0.05,0.10,0.15");
  cmd->add_option("--coverage-share", args->coverage_share,
                  "Share of each level reserved for spatial coverage (octree cell representatives; 0 = GI only)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--levels", args->levels,
                  "What a level's Gaussians are: 'selected' (the kept ones as they are) or 'merged' (each kept one "
                  "merged with the dropped ones nearest it, as decimation does; pair with --coverage-share 1)")
      ->check(CLI::IsMember({"selected", "merged"}))
      ->capture_default_str();
  auto* tolerance =
      cmd->add_option("--replacement-tolerance", args->replacement_tolerance,
                      "Merged levels: skip re-sending an earlier Gaussian whose merge changed by less than this many "
                      "codec steps (0 = send every change; the full scene is exact either way)")
          ->check(CLI::Range(0.0, 16.0))
          ->capture_default_str();
  auto* passes =
      cmd->add_option("--merge-passes", args->merge_passes,
                      "Merged levels: hard-EM passes of the merge (each about a third of the plan time; 0 is "
                      "fastest, 0.1-0.6 dB lower)")
          ->check(CLI::Range(0, 8))
          ->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)");
  cmd->callback([args, exit_code, tolerance, passes] {
    args->tolerance_given = tolerance->count() > 0;
    args->passes_given = passes->count() > 0;
    *exit_code = RunElasticize(*args);
  });
}

void RegisterPlanCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Show the nested levels a client with a budget would receive (the server's stream, cut at the budget)");
  cmd->add_option("model", args->model, "Model bundle directory")->required();
  cmd->add_option("--budget-ratio", args->budget_ratio, "Top ratio the budget allows, in [0,1]")->capture_default_str();
  cmd->add_option("--ladder", args->ladder, "Ladder override, e.g. 0.01,0.05,0.10,0.15");
  cmd->add_option("--stops-per-doubling", args->stops_per_doubling,
                  "Levels between ladder rungs per doubling of the ratio (0: rungs only); the server uses the default")
      ->capture_default_str()
      ->check(CLI::Range(0, kMaxStopsPerDoubling));
  cmd->add_flag("--json", args->json, "Print machine-readable JSON");
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)");
  cmd->add_option("--export-levels", args->export_levels,
                  "Write level-<k>.ply (what a client holds after level k, unquantized) to this directory");
  cmd->callback([args, exit_code] { *exit_code = RunPlan(*args); });
}

}  // namespace flexgs::tools

// `flexgs train <scene.ply> --out <model.flexgs>`: FlexGS stage-2 training on the CPU
// (core/elastic_trainer.h), distilling the input scene from orbit views into a trained
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

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "core/elastic_trainer.h"
#include "core/model_bundle.h"
#include "core/orbit.h"
#include "tools/commands.h"
#include "tools/scene_source.h"

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
  int height = 0;  // 0 = width
  uint64_t seed = 1;
  std::string ladder = "0.01,0.05,0.10,0.15,0.20";
  std::string background = "0,0,0";
  int64_t checkpoint_every = 500;
  bool resume = false;
  int threads = 0;
};

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
  if (absl::Status st = opt.Validate(); !st.ok()) return Fail(st);
  if (args.out.empty()) return Fail(absl::InvalidArgumentError("--out is empty"));
  const std::string ckpt = args.out + ".ckpt";
  if (args.resume && !std::filesystem::exists(ckpt)) {
    return Fail(absl::NotFoundError(absl::StrFormat("--resume: no checkpoint '%s' to resume from", ckpt)));
  }
  auto cloud = LoadScene(args.scene);
  if (!cloud.ok()) return Fail(cloud.status());
  if (cloud->empty()) return Fail(absl::InvalidArgumentError(absl::StrFormat("'%s' has no Gaussians", args.scene)));

  const auto t_setup = std::chrono::steady_clock::now();
  auto targets = MakeOrbitTargets(*cloud, opt);
  if (!targets.ok()) return Fail(targets.status());
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
  std::cerr << absl::StrFormat("flexgs train: %s, %d views of %dx%d, %s at iteration %d of %d (setup %.1f s)\n",
                               args.scene, opt.orbit_views, opt.width, opt.height,
                               args.resume ? "resumed" : "starting", t.iteration(), opt.iters,
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
          "step %d/%d  e %.2f  loss %.4f  PSNR(sel) %.2f dB  kept %.3f  %.2f steps/s  ETA %s\n", t.iteration(),
          opt.iters, s.ratio, s.loss, s.psnr_selected, s.kept_fraction, rate,
          Duration(static_cast<double>(opt.iters - t.iteration()) / rate));
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
  // The orbit the targets and GI used, so `flexgs eval` picks held-out views.
  const OrbitOptions orbit_defaults;
  summary["gi_cameras"] = {{"kind", "orbit"},
                           {"count", opt.orbit_views},
                           {"elevation_deg", orbit_defaults.elevation_deg},
                           {"fov_x_deg", orbit_defaults.fov_x_deg}};
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
  cmd->add_option("--orbit", args->orbit, "Orbit views (training targets and GI)")->capture_default_str();
  cmd->add_option("--iters", args->iters, "Total training iterations")->capture_default_str();
  cmd->add_option("--width", args->width, "Target render width")->capture_default_str();
  cmd->add_option("--height", args->height, "Target render height (0 = width)")->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed (network init, views, Gumbel noise)")->capture_default_str();
  cmd->add_option("--ladder", args->ladder, "Training ratios, used round-robin")->capture_default_str();
  cmd->add_option("--background", args->background, "Background r,g,b")->capture_default_str();
  cmd->add_option("--checkpoint-every", args->checkpoint_every, "Checkpoint every K steps (0 = only at the end)")
      ->capture_default_str();
  cmd->add_flag("--resume", args->resume, "Continue from <out>.ckpt");
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)");
  cmd->callback([args, exit_code] { *exit_code = RunTrain(*args); });
}

}  // namespace flexgs::tools

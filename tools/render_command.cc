// `flexgs render <scene> --orbit N --index I ... --out out.png`: one view of a scene.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <limits>

#include "absl/strings/str_format.h"
#include "io/png_io.h"
#include "kernels/backend.h"
#include "tools/commands.h"
#include "tools/scene_source.h"

namespace flexgs::tools {
namespace {

struct RenderArgs {
  std::string scene;
  ViewSpec views;
  int index = 0;
  std::string out;
  std::string device = "auto";
  std::string background = "0,0,0";
  int sh_degree = 3;
  int repeat = 1;
  int threads = 0;
  double ratio = 1.0;
};

int Fail(const absl::Status& st) {
  std::cerr << "flexgs render: error: " << st.message() << "\n";
  return 1;
}

int RunRender(const RenderArgs& args) {
  auto device = ParseDevice(args.device);
  if (!device.ok()) return Fail(device.status());
  auto bg = ParseBackground(args.background);
  if (!bg.ok()) return Fail(bg.status());
  SceneBounds bounds;
  auto cloud = LoadSceneAtRatio(args.scene, args.ratio, &bounds);
  if (!cloud.ok()) return Fail(cloud.status());
  auto cameras = ResolveCameras(bounds, args.views, /*resize_dataset_cameras=*/false);
  if (!cameras.ok()) return Fail(cameras.status());
  if (args.index < 0 || args.index >= static_cast<int>(cameras->size())) {
    return Fail(absl::OutOfRangeError(
        absl::StrFormat("--index %d outside 0..%d", args.index, static_cast<int>(cameras->size()) - 1)));
  }
  auto backend = CreateRasterBackend(*device, args.threads);
  if (!backend.ok()) return Fail(backend.status());
  RenderOptions opt;
  opt.background = *bg;
  opt.max_sh_degree = args.sh_degree;
  const Camera& cam = (*cameras)[args.index];
  std::vector<double> ms;
  absl::StatusOr<RenderResult> result;
  for (int r = 0; r < args.repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    result = (*backend)->Render(*cloud, cam, opt);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!result.ok()) return Fail(result.status());
  }
  if (absl::Status st = WritePng(args.out, result->color); !st.ok()) return Fail(st);
  std::sort(ms.begin(), ms.end());
  std::cout << absl::StrFormat(
      "rendered %s view %d (%dx%d) on %s: %.2f ms%s, %d of %d Gaussians visible, %d tile intersections -> %s\n",
      args.scene, args.index, cam.width, cam.height, (*backend)->name(), ms[ms.size() / 2],
      args.repeat > 1 ? absl::StrFormat(" (median of %d)", args.repeat) : "", result->visible, cloud->size(),
      result->intersections, args.out);
  return 0;
}

}  // namespace

void RegisterRenderCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<RenderArgs>();
  CLI::App* cmd = app.add_subcommand("render", "Render one view of a scene to PNG");
  cmd->add_option("scene", args->scene, "Scene PLY or elastic model bundle (.flexgs dir)")->required();
  cmd->add_option("--ratio", args->ratio, "Elastic ratio in [0,1] (bundles; 1 = full model)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  auto* orbit = cmd->add_option("--orbit", args->views.orbit, "Generate N orbit views around the scene");
  auto* cams = cmd->add_option("--cameras", args->views.cameras_path, "INRIA cameras.json or COLMAP model dir");
  orbit->excludes(cams);
  cmd->add_option("--index", args->index, "Which view to render")->capture_default_str();
  cmd->add_option("--width", args->views.width, "Orbit view width")->capture_default_str();
  cmd->add_option("--height", args->views.height, "Orbit view height")->capture_default_str();
  cmd->add_option("--fov", args->views.fov_x_deg, "Orbit horizontal field of view (degrees)")->capture_default_str();
  cmd->add_option("--elevation", args->views.elevation_deg, "Orbit elevation (degrees)")->capture_default_str();
  cmd->add_option("--out", args->out, "Output PNG")->required();
  cmd->add_option("--device", args->device, "cpu, cuda or auto")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--background", args->background, "Background r,g,b in [0,1]")->capture_default_str();
  cmd->add_option("--sh-degree", args->sh_degree, "Highest SH band used for colour")->capture_default_str();
  cmd->add_option("--repeat", args->repeat, "Render R times and report the median time")
      ->capture_default_str()
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
  cmd->add_option("--threads", args->threads, "CPU threads (0 = all)")->capture_default_str();
  cmd->callback([args, exit_code] { *exit_code = RunRender(*args); });
}

}  // namespace flexgs::tools

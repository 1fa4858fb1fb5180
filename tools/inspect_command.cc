// `flexgs inspect <scene.ply> [--json]`: what is in a scene file.
#include <cmath>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "io/ply_io.h"
#include "scene/orbit.h"
#include "tools/commands.h"

namespace flexgs::tools {
namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
};

int RunInspect(const InspectArgs& args) {
  PlyReadReport report;
  auto cloud = ReadGaussianPly(args.path, {}, &report);
  if (!cloud.ok()) {
    std::cerr << "flexgs inspect: error: " << cloud.status().message() << "\n";
    return 1;
  }
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(INFINITY), hi = Eigen::Vector3d::Constant(-INFINITY);
  for (size_t i = 0; i < cloud->size(); ++i)
    for (int d = 0; d < 3; ++d) {
      lo[d] = std::min<double>(lo[d], cloud->positions[i * 3 + d]);
      hi[d] = std::max<double>(hi[d], cloud->positions[i * 3 + d]);
    }
  const SceneBounds robust = RobustBounds(*cloud);
  nlohmann::json j;
  j["path"] = args.path;
  j["file_bytes"] = report.file_bytes;
  j["format"] = report.format;
  j["vertices_in_file"] = report.vertices;
  j["gaussians"] = cloud->size();
  j["sh_degree"] = cloud->sh_degree;
  j["had_normals"] = report.had_normals;
  j["ignored_properties"] = report.ignored_properties;
  j["non_finite"] = {{"opacity_clamped", report.non_finite.opacity_clamped}, {"dropped", report.non_finite.dropped}};
  j["bounds"] = {{"min", {lo.x(), lo.y(), lo.z()}}, {"max", {hi.x(), hi.y(), hi.z()}}};
  j["robust_bounds"] = {{"min", {robust.lo.x(), robust.lo.y(), robust.lo.z()}},
                        {"max", {robust.hi.x(), robust.hi.y(), robust.hi.z()}},
                        {"quantiles", {0.01, 0.99}}};
  j["bytes_per_gaussian_in_file"] =
      cloud->empty() ? 0.0 : static_cast<double>(report.file_bytes) / static_cast<double>(report.vertices);
  if (args.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat("%s\n  format          %s, %.1f MiB (%.1f bytes/Gaussian)\n", args.path, report.format,
                               report.file_bytes / 1048576.0, j["bytes_per_gaussian_in_file"].get<double>());
  std::cout << absl::StrFormat("  Gaussians       %d (file declares %d)\n  SH degree       %d\n", cloud->size(),
                               report.vertices, cloud->sh_degree);
  std::cout << absl::StrFormat("  bounds          [%.4g %.4g %.4g] .. [%.4g %.4g %.4g]\n", lo.x(), lo.y(), lo.z(),
                               hi.x(), hi.y(), hi.z());
  std::cout << absl::StrFormat("  robust bounds   [%.4g %.4g %.4g] .. [%.4g %.4g %.4g] (1st..99th percentile)\n",
                               robust.lo.x(), robust.lo.y(), robust.lo.z(), robust.hi.x(), robust.hi.y(),
                               robust.hi.z());
  std::cout << absl::StrFormat("  non-finite      %d opacity logits clamped, %d Gaussians dropped\n",
                               report.non_finite.opacity_clamped, report.non_finite.dropped);
  if (!report.ignored_properties.empty()) {
    std::cout << "  ignored         ";
    for (const auto& p : report.ignored_properties) std::cout << p << " ";
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

void RegisterInspectCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show count, SH degree, bounds and non-finite values of a scene");
  cmd->add_option("scene", args->path, "3DGS PLY (INRIA, any property order, or SuperSplat compressed)")->required();
  cmd->add_flag("--json", args->json, "Print machine-readable JSON");
  cmd->callback([args, exit_code] { *exit_code = RunInspect(*args); });
}

}  // namespace flexgs::tools

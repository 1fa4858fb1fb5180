// `flexgs generate --out scene.ply [--count N] [--sh-degree D] [--seed S]`: the
// project's own synthetic scene, so demos and benchmarks need no download.
#include <iostream>

#include "absl/strings/str_format.h"
#include "io/ply_io.h"
#include "scene/synthetic_scene.h"
#include "tools/commands.h"

namespace flexgs::tools {
namespace {

struct GenerateArgs {
  std::string out;
  int64_t count = 200000;
  int sh_degree = 0;
  uint64_t seed = 7;
};

int RunGenerate(const GenerateArgs& args) {
  const GaussianCloud cloud =
      MakeSyntheticScene({.count = static_cast<size_t>(args.count), .sh_degree = args.sh_degree, .seed = args.seed});
  if (absl::Status st = WriteGaussianPly(args.out, cloud); !st.ok()) {
    std::cerr << "flexgs generate: error: " << st.message() << "\n";
    return 1;
  }
  std::cout << absl::StrFormat("wrote %d Gaussians (SH degree %d) to %s\n", cloud.size(), cloud.sh_degree, args.out);
  return 0;
}

}  // namespace

void RegisterGenerateCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Write the project's synthetic default scene as a PLY");
  cmd->add_option("--out", args->out, "Output PLY")->required();
  cmd->add_option("--count", args->count, "Number of Gaussians")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{200'000'000}));
  cmd->add_option("--sh-degree", args->sh_degree, "SH degree 0..3")->capture_default_str()->check(CLI::Range(0, 3));
  cmd->add_option("--seed", args->seed, "Random seed")->capture_default_str();
  cmd->callback([args, exit_code] { *exit_code = RunGenerate(*args); });
}

}  // namespace flexgs::tools

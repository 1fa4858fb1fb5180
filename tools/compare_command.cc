// `flexgs compare a.png b.png [--min-psnr DB]`: PSNR and SSIM between two images, for
// checking a streamed level's render against a local one (tests, and by hand).
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "io/png_io.h"
#include "render/image_metrics.h"
#include "tools/commands.h"

namespace flexgs::tools {
namespace {

struct CompareArgs {
  std::string a, b;
  double min_psnr = 0;
  bool json = false;
};

int RunCompare(const CompareArgs& args) {
  auto fail = [](const absl::Status& st) {
    std::cerr << "flexgs compare: error: " << st.message() << "\n";
    return 1;
  };
  auto a = ReadPng(args.a);
  if (!a.ok()) return fail(a.status());
  auto b = ReadPng(args.b);
  if (!b.ok()) return fail(b.status());
  auto psnr = Psnr(*a, *b);
  if (!psnr.ok()) return fail(psnr.status());
  auto ssim = Ssim(*a, *b);
  if (!ssim.ok()) return fail(ssim.status());
  const bool identical = a->pixels == b->pixels;
  if (args.json) {
    // Identical images have infinite PSNR, which JSON cannot hold: report null.
    nlohmann::json j = {{"a", args.a}, {"b", args.b}, {"ssim", *ssim}, {"identical", identical}};
    j["psnr_db"] = identical ? nlohmann::json(nullptr) : nlohmann::json(*psnr);
    std::cout << j.dump() << "\n";
  } else {
    std::cout << absl::StrFormat("psnr %s dB  ssim %.6f%s\n", identical ? "inf" : absl::StrFormat("%.3f", *psnr), *ssim,
                                 identical ? "  (identical)" : "");
  }
  if (args.min_psnr > 0 && !identical && *psnr < args.min_psnr) {
    std::cerr << absl::StrFormat("flexgs compare: PSNR %.3f dB is below --min-psnr %.3f\n", *psnr, args.min_psnr);
    return 3;
  }
  return 0;
}

}  // namespace

void RegisterCompareCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<CompareArgs>();
  CLI::App* cmd = app.add_subcommand("compare", "PSNR and SSIM between two PNG images of the same size");
  cmd->add_option("a", args->a, "First PNG")->required();
  cmd->add_option("b", args->b, "Second PNG")->required();
  cmd->add_option("--min-psnr", args->min_psnr, "Exit 3 when PSNR (dB) is below this");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args, exit_code] { *exit_code = RunCompare(*args); });
}

}  // namespace flexgs::tools

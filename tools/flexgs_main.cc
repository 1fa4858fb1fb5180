// flexgs: offline command line for flexgs-stream scenes and models.
#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"flexgs: inspect, render and prepare 3D Gaussian Splatting scenes for elastic streaming"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Debug logging");
  int exit_code = 0;
  flexgs::tools::RegisterInspectCommand(app, &exit_code);
  flexgs::tools::RegisterRenderCommand(app, &exit_code);
  flexgs::tools::RegisterGenerateCommand(app, &exit_code);
  flexgs::tools::RegisterElasticizeCommand(app, &exit_code);
  flexgs::tools::RegisterPlanCommand(app, &exit_code);
  flexgs::tools::RegisterExportStreamCommand(app, &exit_code);
  flexgs::tools::RegisterCompareCommand(app, &exit_code);
  flexgs::tools::RegisterEvalCommand(app, &exit_code);
  flexgs::tools::RegisterTrainCommand(app, &exit_code);
  flexgs::tools::RegisterRefineCommand(app, &exit_code);
  app.parse_complete_callback([&] { spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info); });
  // Logs go to stderr so that --json output on stdout stays machine-readable.
  spdlog::set_default_logger(spdlog::stderr_color_mt("flexgs"));
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message (or the help); a bad option is a failure like any other
    // of this tool, exit 1, rather than CLI11's own code per error kind.
    return app.exit(e) == 0 ? 0 : 1;
  }
  return exit_code;
}

// Sub-commands of the `flexgs` CLI. Each Register* adds a CLI11 sub-command whose
// callback stores the process exit code in *exit_code (0 ok, 1 error).
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "elastic/transform_field.h"
#include "scene/gaussian_cloud.h"

namespace flexgs::tools {

void RegisterInspectCommand(CLI::App& app, int* exit_code);
void RegisterRenderCommand(CLI::App& app, int* exit_code);
void RegisterGenerateCommand(CLI::App& app, int* exit_code);
void RegisterElasticizeCommand(CLI::App& app, int* exit_code);
void RegisterPlanCommand(CLI::App& app, int* exit_code);
void RegisterExportStreamCommand(CLI::App& app, int* exit_code);
void RegisterCompareCommand(CLI::App& app, int* exit_code);
void RegisterEvalCommand(CLI::App& app, int* exit_code);
void RegisterTrainCommand(CLI::App& app, int* exit_code);
void RegisterRefineCommand(CLI::App& app, int* exit_code);

// "0.01,0.05,0.10" -> {0.01, 0.05, 0.10} (validated later by the planner).
absl::StatusOr<std::vector<double>> ParseLadder(const std::string& text);

}  // namespace flexgs::tools

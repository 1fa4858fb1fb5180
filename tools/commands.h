// Sub-commands of the `flexgs` CLI. Each Register* adds a CLI11 sub-command whose
// callback stores the process exit code in *exit_code (0 ok, 1 error).
#pragma once

#include <CLI/CLI.hpp>

namespace flexgs::tools {

void RegisterInspectCommand(CLI::App& app, int* exit_code);
void RegisterRenderCommand(CLI::App& app, int* exit_code);
void RegisterGenerateCommand(CLI::App& app, int* exit_code);

}  // namespace flexgs::tools

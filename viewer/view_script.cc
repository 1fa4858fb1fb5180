#include "viewer/view_script.h"

#include <cmath>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flexgs::viewer {
namespace {

struct Command {
  ScriptStep::Kind kind;
  size_t arity;  // numbers after the command (wait-level, compare and frame: 1 word)
};

const std::map<std::string, Command>& Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"wait-level", {ScriptStep::Kind::kWaitLevel, 1}},
      {"orbit", {ScriptStep::Kind::kOrbit, 3}},
      {"drag", {ScriptStep::Kind::kDrag, 2}},
      {"pan", {ScriptStep::Kind::kPan, 2}},
      {"zoom", {ScriptStep::Kind::kZoom, 1}},
      {"fly", {ScriptStep::Kind::kFly, 4}},
      {"reset", {ScriptStep::Kind::kReset, 0}},
      {"compare", {ScriptStep::Kind::kCompare, 1}},
      {"frame", {ScriptStep::Kind::kFrame, 1}},
  };
  return *commands;
}

absl::Status LineError(int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("view script line ", line, ": ", what));
}

}  // namespace

absl::StatusOr<std::vector<ScriptStep>> ParseViewScript(const std::string& text) {
  std::vector<ScriptStep> steps;
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    raw = raw.substr(0, raw.find('#'));
    std::vector<std::string> words = absl::StrSplit(raw, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    const auto it = Commands().find(words[0]);
    if (it == Commands().end()) return LineError(line_no, absl::StrCat("unknown command '", words[0], "'"));
    const Command& cmd = it->second;
    if (words.size() != cmd.arity + 1) {
      return LineError(line_no, absl::StrCat("'", words[0], "' takes ", cmd.arity, " argument",
                                             cmd.arity == 1 ? "" : "s", ", got ", words.size() - 1));
    }
    ScriptStep step;
    step.kind = cmd.kind;
    step.line = line_no;
    if (cmd.kind == ScriptStep::Kind::kFrame) {
      const std::string& name = words[1];
      if (name.find('/') != std::string::npos || name.size() < 5 || name.substr(name.size() - 4) != ".png" ||
          name[0] == '.') {
        return LineError(line_no, absl::StrCat("frame name '", name, "' must be a plain file name ending in .png"));
      }
      step.name = name;
    } else if (cmd.kind == ScriptStep::Kind::kCompare) {
      if (words[1] != "on" && words[1] != "off") return LineError(line_no, "compare takes 'on' or 'off'");
      step.on = words[1] == "on";
    } else if (cmd.kind == ScriptStep::Kind::kWaitLevel && words[1] == "last") {
      step.args = {-1};
    } else {
      for (size_t i = 1; i < words.size(); ++i) {
        double v = 0;
        if (!absl::SimpleAtod(words[i], &v) || !std::isfinite(v)) {
          return LineError(line_no, absl::StrCat("'", words[i], "' is not a finite number"));
        }
        step.args.push_back(v);
      }
      if (cmd.kind == ScriptStep::Kind::kWaitLevel && (step.args[0] < 0 || step.args[0] != std::floor(step.args[0]))) {
        return LineError(line_no, "wait-level takes a level index >= 0 or 'last'");
      }
      if (cmd.kind == ScriptStep::Kind::kFly) {
        for (int i = 0; i < 3; ++i) {
          if (std::abs(step.args[i]) > 1) return LineError(line_no, "fly's F, R and U must be within [-1, 1]");
        }
        if (step.args[3] < 0) return LineError(line_no, "fly's SECONDS must be >= 0");
      }
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

}  // namespace flexgs::viewer

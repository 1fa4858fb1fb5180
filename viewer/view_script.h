// View scripts: a camera path for `flexgs-view --headless --script FILE`, one command a
// line, for tests and for making videos ('#' starts a comment):
//
//   wait-level K        until level K is complete (K = "last": until the stream ends);
//                       later frames show level K even if more has arrived since
//   orbit YAW PITCH D   pose around the scene centre: degrees, degrees, fit distances
//   drag DX DY          as a left-button drag of DX, DY pixels (orbit)
//   pan DX DY           as a right-button drag
//   zoom STEPS          as wheel steps (positive: closer)
//   fly F R U SECONDS   as WASD/QE held for SECONDS (F, R, U in [-1, 1])
//   reset               back to the first framing
//   compare on|off      show the level before the one shown
//   frame NAME.png      render the view and write it to the output folder
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flexgs::viewer {

struct ScriptStep {
  enum class Kind { kWaitLevel, kOrbit, kDrag, kPan, kZoom, kFly, kReset, kCompare, kFrame };
  Kind kind = Kind::kReset;
  int line = 0;              // 1-based, for messages
  std::vector<double> args;  // numbers of the command; wait-level "last" is -1
  std::string name;          // frame's file name
  bool on = false;           // compare
};

// INVALID_ARGUMENT naming the line and what is wrong: an unknown command, a wrong
// number of arguments, a value that is not a finite number, a negative level, a fly
// component outside [-1, 1], a frame name that is not a plain *.png file name.
absl::StatusOr<std::vector<ScriptStep>> ParseViewScript(const std::string& text);

}  // namespace flexgs::viewer

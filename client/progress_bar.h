// ProgressBar: one status line on a terminal (stderr), redrawn in place:
//   level 2/4 (10%)  [#########-----------]  1.9/4.2 MB  9.6 Mbit/s  ETA 2s
// Redraws at most every `min_interval` so it costs nothing on fast links; does nothing
// when the stream is not a terminal (logs and CI stay clean).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace flexgs::client {

struct ProgressState {
  int level = 0;             // 0-based level being received
  int levels = 0;            // levels in the stream
  double ratio = 0;          // that level's ratio
  uint64_t bytes = 0;        // received so far
  uint64_t total_bytes = 0;  // expected total (0: unknown)
  double seconds = 0;        // since the stream began
};

// The line for a state (no newline, no escape codes); rate and ETA from bytes/seconds.
std::string FormatProgressLine(const ProgressState& state, int bar_width = 20);

class ProgressBar {
 public:
  // enabled = false makes every call a no-op; use IsTerminal(out) to decide.
  ProgressBar(std::FILE* out, bool enabled, std::chrono::milliseconds min_interval = std::chrono::milliseconds(100));
  ~ProgressBar();  // Finish()

  void Update(const ProgressState& state);  // rate-limited redraw ("\r" + line + erase-to-EOL)
  void Finish();                            // final redraw and newline, once
  // Erases the bar's line so other output can be printed; the next Update redraws it.
  void Clear();

  static bool IsTerminal(std::FILE* out);

 private:
  std::FILE* out_;
  bool enabled_, drawn_ = false, finished_ = false;
  std::chrono::milliseconds min_interval_;
  std::chrono::steady_clock::time_point last_draw_{};
  ProgressState last_{};
};

}  // namespace flexgs::client

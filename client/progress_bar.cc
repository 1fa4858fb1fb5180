#include "client/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/budget_spec.h"

namespace flexgs::client {
namespace {

std::string FormatRate(double bytes_per_s) {
  const double mbit = bytes_per_s * 8.0 / 1e6;
  // Slow links (the point of --max-bandwidth) would read "0.0 Mbit/s" with one decimal.
  return mbit >= 1.0 ? absl::StrFormat("%.1f Mbit/s", mbit) : absl::StrFormat("%.2f Mbit/s", mbit);
}

std::string FormatEta(double seconds) {
  // A nearly stalled start can predict years; past this the exact figure means nothing.
  if (!(seconds <= 999.0 * 60.0)) return "ETA >999min";
  const long s = static_cast<long>(std::ceil(seconds));
  if (s < 60) return absl::StrCat("ETA ", s, "s");
  return absl::StrFormat("ETA %ldmin%02lds", s / 60, s % 60);
}

}  // namespace

std::string FormatProgressLine(const ProgressState& state, int bar_width) {
  std::string line;
  if (state.levels > 0) {
    const int shown = std::clamp(state.level, 0, state.levels - 1) + 1;
    absl::StrAppend(&line, "level ", shown, "/", state.levels);
    // %.3g keeps 1%, 2.5%, 12.5%, 33.3% and 100% short without trailing zeros.
    if (state.ratio > 0 && std::isfinite(state.ratio)) {
      absl::StrAppend(&line, absl::StrFormat(" (%.3g%%)", state.ratio * 100));
    }
  } else {
    absl::StrAppend(&line, "level -");  // the stream header has not arrived yet
  }

  const bool total_known = state.total_bytes > 0;
  if (total_known && bar_width > 0) {
    const double done = std::min(1.0, static_cast<double>(state.bytes) / static_cast<double>(state.total_bytes));
    const int filled = std::clamp(static_cast<int>(done * bar_width), 0, bar_width);
    absl::StrAppend(&line, "  [", std::string(filled, '#'), std::string(bar_width - filled, '-'), "]");
  }
  absl::StrAppend(&line, "  ", FormatBytes(state.bytes));
  if (total_known) absl::StrAppend(&line, "/", FormatBytes(state.total_bytes));

  // No rate or ETA before any time has passed: bytes/0 says nothing.
  if (state.seconds > 0 && std::isfinite(state.seconds)) {
    const double rate = static_cast<double>(state.bytes) / state.seconds;
    absl::StrAppend(&line, "  ", FormatRate(rate));
    if (total_known) {
      if (state.bytes >= state.total_bytes) {
        absl::StrAppend(&line, "  ETA 0s");
      } else if (rate > 0) {
        absl::StrAppend(&line, "  ", FormatEta(static_cast<double>(state.total_bytes - state.bytes) / rate));
      }
    }
  }
  return line;
}

ProgressBar::ProgressBar(std::FILE* out, bool enabled, std::chrono::milliseconds min_interval)
    : out_(out), enabled_(enabled && out != nullptr), min_interval_(min_interval) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(const ProgressState& state) {
  if (!enabled_ || finished_) return;
  last_ = state;  // kept even when not drawn, so Finish shows the latest state
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < min_interval_) return;
  // "\r" returns to column 0 and ESC[K erases what a longer previous line left behind.
  std::fprintf(out_, "\r%s\x1b[K", FormatProgressLine(state).c_str());
  std::fflush(out_);  // stderr-like streams may be buffered; a progress line must show now
  drawn_ = true;
  last_draw_ = now;
}

void ProgressBar::Finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  // Nothing was ever drawn (no Update): leave the terminal untouched rather than print an empty state.
  if (!drawn_) return;
  std::fprintf(out_, "\r%s\x1b[K\n", FormatProgressLine(last_).c_str());
  std::fflush(out_);
}

void ProgressBar::Clear() {
  if (!enabled_ || finished_ || !drawn_) return;
  std::fprintf(out_, "\r\x1b[K");
  std::fflush(out_);
  drawn_ = false;  // the next Update draws at once
}

bool ProgressBar::IsTerminal(std::FILE* out) {
  if (out == nullptr) return false;
  const int fd = fileno(out);
  return fd >= 0 && isatty(fd) == 1;
}

}  // namespace flexgs::client

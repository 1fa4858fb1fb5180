#include "eval/rd_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/contact_sheet.h"

namespace flexgs {
namespace {

constexpr std::array<float, 3> kWhite = {1.0f, 1.0f, 1.0f};
constexpr std::array<float, 3> kInk = {0.1f, 0.1f, 0.1f};
constexpr std::array<float, 3> kGrid = {0.88f, 0.88f, 0.88f};
constexpr int kPad = 8;
constexpr int kTickLength = 4;
constexpr int kTextGap = 6;       // between a tick and its label, and between text rows
constexpr int kSwatchWidth = 18;  // legend line sample
constexpr int kMinPlotSide = 60;
constexpr double kRangeMargin = 0.06;  // of the data span, on each side
constexpr double kMinLogSpan = 0.25;   // decades
constexpr double kMinPsnrSpan = 2.0;   // dB
constexpr char kXLabel[] = "KiB on the wire (log scale)";
constexpr char kYLabel[] = "PSNR (dB)";

double Log10Kib(double bytes) { return std::log10(bytes / 1024.0); }

// [lo, hi] widened by kRangeMargin of its span on each side, then to `min_span` about its centre.
std::pair<double, double> Widen(double lo, double hi, double min_span) {
  const double span = hi - lo;
  lo -= kRangeMargin * span;
  hi += kRangeMargin * span;
  if (hi - lo < min_span) {
    const double mid = 0.5 * (lo + hi);
    lo = mid - 0.5 * min_span;
    hi = mid + 0.5 * min_span;
  }
  return {lo, hi};
}

struct Tick {
  double value;  // axis units (log10 KiB or dB)
  std::string label;
};

// KiB ticks on 1-2-5 steps per decade; every decade's 1 alone when that would crowd the
// axis, 1..9 when 1-2-5 leaves fewer than two, the range ends as a last resort.
std::vector<Tick> LogTicks(double lo, double hi) {
  const auto ticks_with = [&](std::initializer_list<int> mantissas) {
    std::vector<Tick> out;
    for (int e = static_cast<int>(std::floor(lo)); e <= static_cast<int>(std::ceil(hi)); ++e) {
      for (int m : mantissas) {
        const double v = m * std::pow(10.0, e);
        const double lv = std::log10(v);
        if (lv >= lo && lv <= hi) out.push_back({lv, absl::StrFormat("%g", v)});
      }
    }
    return out;
  };
  std::vector<Tick> ticks = ticks_with({1, 2, 5});
  if (ticks.size() > 10) ticks = ticks_with({1});
  if (ticks.size() < 2) ticks = ticks_with({1, 2, 3, 4, 5, 6, 7, 8, 9});
  if (ticks.size() < 2) {
    ticks = {{lo, absl::StrFormat("%.3g", std::pow(10.0, lo))}, {hi, absl::StrFormat("%.3g", std::pow(10.0, hi))}};
  }
  return ticks;
}

// dB ticks at multiples of the smallest 1-2-5 step giving at most 8 intervals.
std::vector<Tick> LinearTicks(double lo, double hi) {
  double step = 0;
  for (int e = -3; e <= 6 && step == 0; ++e) {
    for (int m : {1, 2, 5}) {
      const double s = m * std::pow(10.0, e);
      if ((hi - lo) / s <= 8.0) {
        step = s;
        break;
      }
    }
  }
  if (step == 0) step = hi - lo;
  const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  std::vector<Tick> out;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) {
    out.push_back({v, absl::StrFormat("%.*f", decimals, std::abs(v) < 1e-12 ? 0.0 : v)});
  }
  return out;
}

void Plot(Image& image, int x, int y, const std::array<float, 3>& color) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
  for (int c = 0; c < 3; ++c) image.at(x, y, c) = color[c];
}

void FillSquare(Image& image, int cx, int cy, int radius, const std::array<float, 3>& color) {
  for (int y = cy - radius; y <= cy + radius; ++y)
    for (int x = cx - radius; x <= cx + radius; ++x) Plot(image, x, y, color);
}

// Bresenham, `thickness` 1 or 2 (a 2x2 pen).
void DrawLine(Image& image, int x0, int y0, int x1, int y1, int thickness, const std::array<float, 3>& color) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    for (int t = 0; t < thickness; ++t) {
      Plot(image, x0 + t, y0, color);
      Plot(image, x0, y0 + t, color);
    }
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

// A marker: a filled square in the series colour with a darker rim, so that markers
// stay visible where lines of other series cross them.
void DrawMarker(Image& image, int x, int y, int radius, const std::array<float, 3>& color) {
  const std::array<float, 3> rim = {color[0] * 0.5f, color[1] * 0.5f, color[2] * 0.5f};
  FillSquare(image, x, y, radius + 1, rim);
  FillSquare(image, x, y, radius, color);
}

absl::Status CheckSeries(const std::vector<RdSeries>& series) {
  if (series.empty()) return absl::InvalidArgumentError("a rate-distortion chart needs at least one series");
  for (const RdSeries& s : series) {
    if (s.name.empty()) return absl::InvalidArgumentError("a rate-distortion series has no name");
    if (s.points.empty()) return absl::InvalidArgumentError(absl::StrCat("series '", s.name, "' has no points"));
    for (const RdPoint& p : s.points) {
      if (!std::isfinite(p.bytes) || p.bytes <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("series '", s.name, "': bytes must be finite and > 0, got ", p.bytes));
      }
      if (!std::isfinite(p.psnr)) {
        return absl::InvalidArgumentError(absl::StrCat("series '", s.name, "': PSNR must be finite, got ", p.psnr));
      }
    }
  }
  return absl::OkStatus();
}

int TitleScale(const std::string& title, int width) { return TextWidth(title, 2) + 2 * kPad <= width ? 2 : 1; }

}  // namespace

int RdChartLayout::X(double bytes) const {
  const double t = (Log10Kib(bytes) - log_kib_lo) / (log_kib_hi - log_kib_lo);
  return plot_left + static_cast<int>(std::lround(t * (plot_right - plot_left)));
}

int RdChartLayout::Y(double psnr) const {
  const double t = (psnr - psnr_lo) / (psnr_hi - psnr_lo);
  return plot_bottom - static_cast<int>(std::lround(t * (plot_bottom - plot_top)));
}

absl::StatusOr<RdChartLayout> LayoutRdChart(const std::vector<RdSeries>& series, const RdChartOptions& options) {
  if (absl::Status st = CheckSeries(series); !st.ok()) return st;
  if (options.width < 240 || options.height < 160 || options.width > 8192 || options.height > 8192) {
    return absl::InvalidArgumentError(absl::StrFormat("rate-distortion chart size %dx%d is outside 240x160..8192x8192",
                                                      options.width, options.height));
  }
  if (options.marker_radius < 1 || options.marker_radius > 10) {
    return absl::InvalidArgumentError(absl::StrCat("marker radius ", options.marker_radius, " is outside 1..10"));
  }
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const RdSeries& s : series) {
    for (const RdPoint& p : s.points) {
      xlo = std::min(xlo, Log10Kib(p.bytes));
      xhi = std::max(xhi, Log10Kib(p.bytes));
      ylo = std::min(ylo, p.psnr);
      yhi = std::max(yhi, p.psnr);
    }
  }
  RdChartLayout l;
  std::tie(l.log_kib_lo, l.log_kib_hi) = Widen(xlo, xhi, kMinLogSpan);
  std::tie(l.psnr_lo, l.psnr_hi) = Widen(ylo, yhi, kMinPsnrSpan);

  int y_label_width = 0;
  for (const Tick& t : LinearTicks(l.psnr_lo, l.psnr_hi)) {
    y_label_width = std::max(y_label_width, TextWidth(t.label, 1));
  }
  int name_width = 0;
  for (const RdSeries& s : series) name_width = std::max(name_width, TextWidth(s.name, 1));
  const int title_height =
      options.title.empty() ? 0 : kGlyphHeight * TitleScale(options.title, options.width) + kTextGap;
  l.plot_top = kPad + title_height + kGlyphHeight + kTextGap;  // room for the y axis name
  l.plot_left = kPad + y_label_width + kTextGap + kTickLength;
  const int legend_width = kSwatchWidth + kTextGap + name_width + kPad;
  l.plot_right = options.width - 1 - kPad - legend_width;
  l.plot_bottom = options.height - 1 - kPad - 2 * (kGlyphHeight + kTextGap) - kTickLength;
  if (l.plot_right - l.plot_left < kMinPlotSide || l.plot_bottom - l.plot_top < kMinPlotSide) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rate-distortion chart %dx%d is too small for its labels and legend", options.width, options.height));
  }
  l.legend_left = l.plot_right + kPad + 2;
  l.legend_top = l.plot_top;
  if (l.legend_top + static_cast<int>(series.size()) * RdChartLayout::kLegendRowHeight > options.height - kPad) {
    return absl::InvalidArgumentError(absl::StrFormat("rate-distortion chart %dx%d is too short for %d legend entries",
                                                      options.width, options.height, series.size()));
  }
  return l;
}

absl::StatusOr<Image> DrawRdChart(const std::vector<RdSeries>& series, const RdChartOptions& options) {
  auto layout = LayoutRdChart(series, options);
  if (!layout.ok()) return layout.status();
  const RdChartLayout& l = *layout;
  Image image(options.width, options.height, 3, 1.0f);

  if (!options.title.empty()) {
    const int scale = TitleScale(options.title, options.width);
    DrawText(image, std::max(kPad, (options.width - TextWidth(options.title, scale)) / 2), kPad, options.title, scale,
             kInk);
  }
  DrawText(image, kPad, l.plot_top - kGlyphHeight - kTextGap, kYLabel, 1, kInk);

  // Grid and ticks.
  for (const Tick& t : LinearTicks(l.psnr_lo, l.psnr_hi)) {
    const int y = l.Y(t.value);
    DrawLine(image, l.plot_left, y, l.plot_right, y, 1, kGrid);
    DrawLine(image, l.plot_left - kTickLength, y, l.plot_left, y, 1, kInk);
    DrawText(image, l.plot_left - kTickLength - kTextGap / 2 - TextWidth(t.label, 1), y - kGlyphHeight / 2, t.label, 1,
             kInk);
  }
  for (const Tick& t : LogTicks(l.log_kib_lo, l.log_kib_hi)) {
    const int x = l.X(1024.0 * std::pow(10.0, t.value));
    DrawLine(image, x, l.plot_top, x, l.plot_bottom, 1, kGrid);
    DrawLine(image, x, l.plot_bottom, x, l.plot_bottom + kTickLength, 1, kInk);
    DrawText(image, x - TextWidth(t.label, 1) / 2, l.plot_bottom + kTickLength + kTextGap / 2, t.label, 1, kInk);
  }
  DrawText(image, (l.plot_left + l.plot_right - TextWidth(kXLabel, 1)) / 2,
           l.plot_bottom + kTickLength + kTextGap / 2 + kGlyphHeight + kTextGap, kXLabel, 1, kInk);
  // Plot frame.
  DrawLine(image, l.plot_left, l.plot_top, l.plot_right, l.plot_top, 1, kInk);
  DrawLine(image, l.plot_left, l.plot_bottom, l.plot_right, l.plot_bottom, 1, kInk);
  DrawLine(image, l.plot_left, l.plot_top, l.plot_left, l.plot_bottom, 1, kInk);
  DrawLine(image, l.plot_right, l.plot_top, l.plot_right, l.plot_bottom, 1, kInk);

  // Lines first, then every marker on top of every line.
  std::vector<std::vector<RdPoint>> sorted;
  for (const RdSeries& s : series) {
    std::vector<RdPoint> pts = s.points;
    std::stable_sort(pts.begin(), pts.end(), [](const RdPoint& a, const RdPoint& b) { return a.bytes < b.bytes; });
    for (size_t i = 1; i < pts.size(); ++i) {
      DrawLine(image, l.X(pts[i - 1].bytes), l.Y(pts[i - 1].psnr), l.X(pts[i].bytes), l.Y(pts[i].psnr), 2, s.color);
    }
    sorted.push_back(std::move(pts));
  }
  for (size_t i = 0; i < series.size(); ++i) {
    for (const RdPoint& p : sorted[i]) {
      DrawMarker(image, l.X(p.bytes), l.Y(p.psnr), options.marker_radius, series[i].color);
    }
  }

  // Legend.
  for (size_t i = 0; i < series.size(); ++i) {
    const int y = l.legend_top + static_cast<int>(i) * RdChartLayout::kLegendRowHeight;
    const int mid = y + kGlyphHeight / 2;
    DrawLine(image, l.legend_left, mid, l.legend_left + kSwatchWidth, mid, 2, series[i].color);
    DrawMarker(image, l.legend_left + kSwatchWidth / 2, mid, 2, series[i].color);
    DrawText(image, l.legend_left + kSwatchWidth + kTextGap, y, series[i].name, 1, kInk);
  }
  return image;
}

std::optional<double> PsnrAtBytes(const RdSeries& series, double bytes) {
  if (series.points.empty() || !(bytes > 0) || !std::isfinite(bytes)) return std::nullopt;
  std::vector<RdPoint> pts = series.points;
  std::sort(pts.begin(), pts.end(), [](const RdPoint& a, const RdPoint& b) {
    return a.bytes < b.bytes || (a.bytes == b.bytes && a.psnr > b.psnr);
  });
  // Equal byte counts keep their best PSNR (sorted first).
  pts.erase(std::unique(pts.begin(), pts.end(), [](const RdPoint& a, const RdPoint& b) { return a.bytes == b.bytes; }),
            pts.end());
  if (bytes < pts.front().bytes || bytes > pts.back().bytes) return std::nullopt;
  for (size_t i = 0; i < pts.size(); ++i) {
    if (pts[i].bytes == bytes) return pts[i].psnr;
    if (i + 1 < pts.size() && pts[i + 1].bytes > bytes) {
      const double t =
          (std::log(bytes) - std::log(pts[i].bytes)) / (std::log(pts[i + 1].bytes) - std::log(pts[i].bytes));
      return pts[i].psnr + t * (pts[i + 1].psnr - pts[i].psnr);
    }
  }
  return std::nullopt;
}

}  // namespace flexgs

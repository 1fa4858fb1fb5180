// Rate-distortion curves: quality (PSNR) against bytes on the wire, drawn as a chart
// and read at a byte count.
//
// `flexgs eval` compares delivery formats that spend bytes differently (our nested
// stream, decimation written as SOG or SPZ, a PlayCanvas LOD pyramid). A table per
// ratio hides the trade-off; one chart with bytes on a log axis shows which format is
// better at every size, and PsnrAtBytes answers "how good is format B at the bytes
// format A spent" for the report's summary. Drawn with the contact sheet's 5x7 font
// into an Image so no plotting or font library is needed.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "scene/image.h"

namespace flexgs {

struct RdPoint {
  double bytes = 0;  // > 0 and finite
  double psnr = 0;   // dB, finite
};

struct RdSeries {
  std::string name;  // legend text
  std::array<float, 3> color{0, 0, 0};
  std::vector<RdPoint> points;  // one per level, in any order (drawn sorted by bytes)
};

struct RdChartOptions {
  int width = 760;  // whole image, legend included; at least 240 x 160
  int height = 440;
  std::string title;      // drawn above the plot when not empty
  int marker_radius = 3;  // markers are filled squares of side 2 * radius + 1
};

// Where a chart puts things, so callers and tests can find the markers: the plot
// rectangle in pixels and the data range it spans (x in log10 KiB, y in dB).
struct RdChartLayout {
  int plot_left = 0, plot_top = 0, plot_right = 0, plot_bottom = 0;  // inclusive pixels
  double log_kib_lo = 0, log_kib_hi = 1;
  double psnr_lo = 0, psnr_hi = 1;
  int legend_left = 0, legend_top = 0;  // first legend entry; entries are kLegendRowHeight apart

  static constexpr int kLegendRowHeight = 14;
  // Pixel of a data point (rounded to the nearest pixel centre).
  int X(double bytes) const;
  int Y(double psnr) const;
};

// Checks the series (at least one; each with a name and at least one point; bytes
// finite and > 0; PSNR finite) and the size; InvalidArgument naming the first problem.
// The x range is the points' KiB range widened by 6% of its log span on each side
// (at least a quarter decade in all), the y range likewise in dB (at least 2 dB).
absl::StatusOr<RdChartLayout> LayoutRdChart(const std::vector<RdSeries>& series, const RdChartOptions& options);

// A white chart: grid and labelled ticks (KiB on a log axis, 1-2-5 steps; dB), one
// polyline per series in its colour joining its points in byte order, a marker at
// every point (series drawn in order, so a later series covers an earlier one where
// they meet), and a legend right of the plot. Errors as LayoutRdChart.
absl::StatusOr<Image> DrawRdChart(const std::vector<RdSeries>& series, const RdChartOptions& options);

// The PSNR of `series` at `bytes`, interpolated linearly in log(bytes) between the two
// points around it (the chart's straight segments); nullopt outside the points' byte
// range or for an empty series. Points with equal bytes count with their best PSNR.
std::optional<double> PsnrAtBytes(const RdSeries& series, double bytes);

}  // namespace flexgs

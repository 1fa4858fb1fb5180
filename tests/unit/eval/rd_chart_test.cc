#include "eval/rd_chart.h"

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

constexpr std::array<float, 3> kRed = {0.9f, 0.1f, 0.1f};
constexpr std::array<float, 3> kBlue = {0.1f, 0.2f, 0.9f};

std::vector<RdSeries> TwoSeries() {
  return {{"elastic", kRed, {{10 * 1024.0, 30.0}, {40 * 1024.0, 36.0}, {160 * 1024.0, 40.0}}},
          {"decimation as sog", kBlue, {{20 * 1024.0, 27.0}, {80 * 1024.0, 31.0}}}};
}

bool HasColor(const Image& img, int x, int y, const std::array<float, 3>& c) {
  return img.at(x, y, 0) == c[0] && img.at(x, y, 1) == c[1] && img.at(x, y, 2) == c[2];
}

TEST(RdChartTest, MarkersSitWhereTheAxesPutThem) {
  const std::vector<RdSeries> series = TwoSeries();
  RdChartOptions opt;
  opt.title = "guitar";
  auto layout = LayoutRdChart(series, opt);
  ASSERT_TRUE(layout.ok()) << layout.status();
  // x: log10 KiB over [1, log10 160] widened by 6% of the span each side; y: 27..40 dB likewise.
  const double span = std::log10(160.0) - 1.0;
  EXPECT_NEAR(layout->log_kib_lo, 1.0 - 0.06 * span, 1e-12);
  EXPECT_NEAR(layout->log_kib_hi, std::log10(160.0) + 0.06 * span, 1e-12);
  EXPECT_NEAR(layout->psnr_lo, 27.0 - 0.06 * 13.0, 1e-12);
  EXPECT_NEAR(layout->psnr_hi, 40.0 + 0.06 * 13.0, 1e-12);
  // Inside the plot, ordered by bytes left to right and by PSNR bottom to top.
  EXPECT_GT(layout->X(10 * 1024.0), layout->plot_left);
  EXPECT_LT(layout->X(160 * 1024.0), layout->plot_right);
  EXPECT_LT(layout->X(10 * 1024.0), layout->X(20 * 1024.0));
  EXPECT_LT(layout->Y(40.0), layout->Y(30.0));
  // Equal steps in log bytes are equal steps in pixels (log axis): 10 -> 40 -> 160 KiB.
  EXPECT_NEAR(layout->X(40 * 1024.0) - layout->X(10 * 1024.0), layout->X(160 * 1024.0) - layout->X(40 * 1024.0), 1);

  auto chart = DrawRdChart(series, opt);
  ASSERT_TRUE(chart.ok()) << chart.status();
  EXPECT_EQ(chart->width, opt.width);
  EXPECT_EQ(chart->height, opt.height);
  EXPECT_EQ(chart->channels, 3);
  for (const RdSeries& s : series) {
    for (const RdPoint& p : s.points) {
      const int x = layout->X(p.bytes), y = layout->Y(p.psnr);
      for (int d = -opt.marker_radius; d <= opt.marker_radius; ++d) {
        EXPECT_TRUE(HasColor(*chart, x + d, y, s.color)) << s.name << " marker at " << x + d << "," << y;
        EXPECT_TRUE(HasColor(*chart, x, y + d, s.color)) << s.name << " marker at " << x << "," << y + d;
      }
    }
  }
  // Legend swatches: each series' colour at the centre of its entry's sample.
  for (size_t i = 0; i < series.size(); ++i) {
    const int y = layout->legend_top + static_cast<int>(i) * RdChartLayout::kLegendRowHeight + 3;
    EXPECT_TRUE(HasColor(*chart, layout->legend_left + 9, y, series[i].color)) << series[i].name;
  }
  // Somewhere between the first two red markers the red line is drawn.
  const int xm = (layout->X(10 * 1024.0) + layout->X(40 * 1024.0)) / 2;
  int red = 0;
  for (int y = layout->plot_top; y <= layout->plot_bottom; ++y) red += HasColor(*chart, xm, y, kRed);
  EXPECT_GT(red, 0);
  // The corner of the image is background.
  EXPECT_TRUE(HasColor(*chart, 0, 0, {1.0f, 1.0f, 1.0f}));
}

TEST(RdChartTest, OnePointAndFlatSeriesStillGetAnAxis) {
  std::vector<RdSeries> one = {{"only", kRed, {{5000.0, 33.0}}}};
  auto layout = LayoutRdChart(one, {});
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_NEAR(layout->log_kib_hi - layout->log_kib_lo, 0.25, 1e-12);
  EXPECT_NEAR(layout->psnr_hi - layout->psnr_lo, 2.0, 1e-12);
  auto chart = DrawRdChart(one, {});
  ASSERT_TRUE(chart.ok()) << chart.status();
  EXPECT_TRUE(HasColor(*chart, layout->X(5000.0), layout->Y(33.0), kRed));
}

TEST(RdChartTest, BadInputIsInvalidArgument) {
  const auto expect_invalid = [](const std::vector<RdSeries>& s, const std::string& text, RdChartOptions o = {}) {
    auto chart = DrawRdChart(s, o);
    ASSERT_FALSE(chart.ok());
    EXPECT_EQ(chart.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(chart.status().message()), HasSubstr(text));
  };
  expect_invalid({}, "at least one series");
  expect_invalid({{"a", kRed, {}}}, "no points");
  expect_invalid({{"a", kRed, {{0.0, 30.0}}}}, "bytes must be finite and > 0");
  expect_invalid({{"a", kRed, {{-5.0, 30.0}}}}, "bytes must be finite and > 0");
  expect_invalid({{"a", kRed, {{NAN, 30.0}}}}, "bytes must be finite and > 0");
  expect_invalid({{"a", kRed, {{INFINITY, 30.0}}}}, "bytes must be finite and > 0");
  expect_invalid({{"a", kRed, {{100.0, INFINITY}}}}, "PSNR must be finite");
  expect_invalid({{"", kRed, {{100.0, 30.0}}}}, "no name");
  RdChartOptions tiny;
  tiny.width = 100;
  expect_invalid(TwoSeries(), "outside", tiny);
}

TEST(RdChartTest, PsnrAtBytesInterpolatesInLogBytes) {
  const RdSeries s = {"s", kRed, {{4000.0, 40.0}, {1000.0, 30.0}, {1000.0, 28.0}}};
  EXPECT_DOUBLE_EQ(*PsnrAtBytes(s, 1000.0), 30.0);  // equal bytes: the best
  EXPECT_DOUBLE_EQ(*PsnrAtBytes(s, 4000.0), 40.0);
  EXPECT_NEAR(*PsnrAtBytes(s, 2000.0), 35.0, 1e-12);  // half way in log bytes
  EXPECT_FALSE(PsnrAtBytes(s, 999.0).has_value());
  EXPECT_FALSE(PsnrAtBytes(s, 4001.0).has_value());
  EXPECT_FALSE(PsnrAtBytes(s, NAN).has_value());
  EXPECT_FALSE(PsnrAtBytes(RdSeries{"empty", kRed, {}}, 1000.0).has_value());
}

}  // namespace
}  // namespace flexgs

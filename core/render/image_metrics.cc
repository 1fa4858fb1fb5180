#include "render/image_metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flexgs {
namespace {

absl::Status CheckComparable(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.channels != b.channels) {
    return absl::InvalidArgumentError(absl::StrCat("images differ in shape: ", a.width, "x", a.height, "x", a.channels,
                                                   " vs ", b.width, "x", b.height, "x", b.channels));
  }
  if (a.width <= 0 || a.height <= 0 || a.channels <= 0) {
    return absl::InvalidArgumentError("cannot compare empty images");
  }
  const size_t n = static_cast<size_t>(a.width) * a.height * a.channels;
  if (a.pixels.size() != n || b.pixels.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("image pixel buffers have ", a.pixels.size(), " and ", b.pixels.size(), " values, expected ", n));
  }
  return absl::OkStatus();
}

constexpr int kWindow = kSsimWindow;
constexpr int kRadius = kWindow / 2;

// In-place 'same' separable blur with zero padding. Equivalent to the 2D
// zero-padded convolution because out-of-image rows are zero after the
// horizontal pass too.
void Blur(std::vector<double>& plane, int w, int h, const std::array<double, kWindow>& k, std::vector<double>& tmp) {
  tmp.assign(plane.size(), 0.0);
  for (int y = 0; y < h; ++y) {
    const double* src = &plane[static_cast<size_t>(y) * w];
    double* dst = &tmp[static_cast<size_t>(y) * w];
    for (int x = 0; x < w; ++x) {
      const int lo = std::max(0, x - kRadius), hi = std::min(w - 1, x + kRadius);
      double s = 0;
      for (int xx = lo; xx <= hi; ++xx) s += k[xx - x + kRadius] * src[xx];
      dst[x] = s;
    }
  }
  for (int y = 0; y < h; ++y) {
    double* dst = &plane[static_cast<size_t>(y) * w];
    for (int x = 0; x < w; ++x) dst[x] = 0.0;
    const int lo = std::max(0, y - kRadius), hi = std::min(h - 1, y + kRadius);
    for (int yy = lo; yy <= hi; ++yy) {
      const double wk = k[yy - y + kRadius];
      const double* src = &tmp[static_cast<size_t>(yy) * w];
      for (int x = 0; x < w; ++x) dst[x] += wk * src[x];
    }
  }
}

}  // namespace

double PsnrFromMse(double mse) {
  if (!(mse > 0)) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(1.0 / mse);
}

absl::StatusOr<double> Psnr(const Image& a, const Image& b) {
  absl::Status s = CheckComparable(a, b);
  if (!s.ok()) return s;
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const double d = static_cast<double>(a.pixels[i]) - b.pixels[i];
    sum += d * d;
  }
  return PsnrFromMse(sum / static_cast<double>(a.pixels.size()));
}

absl::StatusOr<double> Ssim(const Image& a, const Image& b) {
  absl::Status s = CheckComparable(a, b);
  if (!s.ok()) return s;
  constexpr double kC1 = 0.01 * 0.01;
  constexpr double kC2 = 0.03 * 0.03;
  const auto kernel = SsimGaussianWindow();
  const int w = a.width, h = a.height, nc = a.channels;
  const size_t n = static_cast<size_t>(w) * h;
  std::vector<double> mu1(n), mu2(n), s11(n), s22(n), s12(n), tmp;
  double total = 0;
  for (int c = 0; c < nc; ++c) {
    for (size_t i = 0; i < n; ++i) {
      const double x = a.pixels[i * nc + c], y = b.pixels[i * nc + c];
      mu1[i] = x;
      mu2[i] = y;
      s11[i] = x * x;
      s22[i] = y * y;
      s12[i] = x * y;
    }
    for (auto* p : {&mu1, &mu2, &s11, &s22, &s12}) Blur(*p, w, h, kernel, tmp);
    for (size_t i = 0; i < n; ++i) {
      const double m1 = mu1[i], m2 = mu2[i];
      const double var1 = s11[i] - m1 * m1, var2 = s22[i] - m2 * m2, cov = s12[i] - m1 * m2;
      total += ((2 * m1 * m2 + kC1) * (2 * cov + kC2)) / ((m1 * m1 + m2 * m2 + kC1) * (var1 + var2 + kC2));
    }
  }
  return total / (static_cast<double>(n) * nc);
}

std::array<double, kSsimWindow> SsimGaussianWindow() {
  constexpr int kHalf = kSsimWindow / 2;
  std::array<double, kSsimWindow> w{};
  double sum = 0;
  for (int i = 0; i < kSsimWindow; ++i) {
    const double d = i - kHalf;
    w[i] = std::exp(-d * d / (2.0 * 1.5 * 1.5));
    sum += w[i];
  }
  for (double& v : w) v /= sum;
  return w;
}

}  // namespace flexgs

// ImageLoss (weighted L1 + D-SSIM): its SSIM equals image_metrics' Ssim, its value and
// gradient match an independent float64 reference (direct 2D convolution, no separable
// filter) and central finite differences, weights combine linearly, and every output is
// bit-identical for any thread count.
#include "train/image_loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "base/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "render/image_metrics.h"
#include "scene/synthetic_scene.h"

namespace flexgs {
namespace {

Image RandomImage(int w, int h, int c, uint64_t seed) {
  SplitMix64 rng(seed);
  Image img(w, h, c);
  for (float& v : img.pixels) v = static_cast<float>(rng.Uniform());
  return img;
}

// A target that is a noisy version of `img` (SSIM well away from 0 and 1).
Image NoisyCopy(const Image& img, double noise, uint64_t seed) {
  SplitMix64 rng(seed);
  Image out = img;
  for (float& v : out.pixels) v = static_cast<float>(std::clamp(v + noise * rng.Uniform(-1, 1), 0.0, 1.0));
  return out;
}

// float64 reference written from the 3DGS definition: F.conv2d with the 11x11 outer
// product window (sigma 1.5) and zero padding 5, per channel; map mean.
double ReferenceLoss(const std::vector<double>& x, const std::vector<double>& y, int w, int h, int nc, double l1_w,
                     double dssim_w) {
  double g[11], sum = 0;
  for (int i = 0; i < 11; ++i) sum += g[i] = std::exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
  for (double& v : g) v /= sum;
  auto conv = [&](const std::vector<double>& img, int c, int px, int py) {
    double acc = 0;
    for (int dy = -5; dy <= 5; ++dy) {
      for (int dx = -5; dx <= 5; ++dx) {
        const int xx = px + dx, yy = py + dy;
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        acc += g[dx + 5] * g[dy + 5] * img[(static_cast<size_t>(yy) * w + xx) * nc + c];
      }
    }
    return acc;
  };
  std::vector<double> xx(x.size()), yy(x.size()), xy(x.size());
  double l1 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
    l1 += std::abs(x[i] - y[i]);
  }
  double ssim = 0;
  for (int c = 0; c < nc; ++c) {
    for (int py = 0; py < h; ++py) {
      for (int px = 0; px < w; ++px) {
        const double m1 = conv(x, c, px, py), m2 = conv(y, c, px, py);
        const double v1 = conv(xx, c, px, py) - m1 * m1, v2 = conv(yy, c, px, py) - m2 * m2;
        const double cov = conv(xy, c, px, py) - m1 * m2;
        const double c1 = 1e-4, c2 = 9e-4;
        ssim += (2 * m1 * m2 + c1) * (2 * cov + c2) / ((m1 * m1 + m2 * m2 + c1) * (v1 + v2 + c2));
      }
    }
  }
  const double n = static_cast<double>(x.size());
  return l1_w * l1 / n + dssim_w * (1.0 - ssim / n);
}

std::vector<double> ToDouble(const Image& img) { return std::vector<double>(img.pixels.begin(), img.pixels.end()); }

void ExpectGradientMatchesFiniteDifferences(const Image& render, const Image& target, const ImageLossWeights& w) {
  const auto result = ImageLoss(render, target, w);
  ASSERT_TRUE(result.ok()) << result.status();
  std::vector<double> x = ToDouble(render);
  const std::vector<double> y = ToDouble(target);
  const double ref = ReferenceLoss(x, y, render.width, render.height, render.channels, w.l1, w.dssim);
  EXPECT_NEAR(result->value, ref, 1e-12);
  double max_fd = 0;
  std::vector<double> fd(x.size());
  const double h = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double plus = ReferenceLoss(x, y, render.width, render.height, render.channels, w.l1, w.dssim);
    x[i] = x0 - h;
    const double minus = ReferenceLoss(x, y, render.width, render.height, render.channels, w.l1, w.dssim);
    x[i] = x0;
    fd[i] = (plus - minus) / (2 * h);
    max_fd = std::max(max_fd, std::abs(fd[i]));
  }
  ASSERT_GT(max_fd, 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(result->grad[i], fd[i], 1e-4 * std::abs(fd[i]) + 1e-6 * max_fd)
        << "pixel value " << i << " of " << render.width << "x" << render.height << "x" << render.channels;
  }
}

TEST(ImageLossTest, SsimEqualsImageMetricsSsim) {
  for (const auto& [w, h, c] : {std::tuple{64, 48, 3}, std::tuple{7, 5, 3}, std::tuple{33, 20, 1}}) {
    const Image a = RandomImage(w, h, c, 1);
    const Image b = NoisyCopy(a, 0.2, 2);
    const auto loss = ImageLoss(a, b);
    ASSERT_TRUE(loss.ok()) << loss.status();
    const double ssim = *Ssim(a, b);
    EXPECT_NEAR(loss->ssim, ssim, 1e-15) << w << "x" << h << "x" << c;
    double l1 = 0;
    for (size_t i = 0; i < a.pixels.size(); ++i) l1 += std::abs(static_cast<double>(a.pixels[i]) - b.pixels[i]);
    EXPECT_NEAR(loss->l1, l1 / a.pixels.size(), 1e-15);
    EXPECT_NEAR(loss->value, loss->l1 + 0.2 * (1.0 - ssim), 1e-14);  // defaults: L1 + 0.2 D-SSIM
  }
}

TEST(ImageLossTest, GradientMatchesFiniteDifferences) {
  // Larger than the window, smaller than it, and a single channel.
  const Image a = RandomImage(14, 12, 3, 3);
  ExpectGradientMatchesFiniteDifferences(a, NoisyCopy(a, 0.3, 4), {});
  const Image small = RandomImage(5, 4, 3, 5);
  ExpectGradientMatchesFiniteDifferences(small, RandomImage(5, 4, 3, 6), kStage2SelectedRenderLoss);
  const Image gray = RandomImage(13, 9, 1, 7);
  ExpectGradientMatchesFiniteDifferences(gray, NoisyCopy(gray, 0.1, 8), {0.0, 1.0});  // D-SSIM alone
  ExpectGradientMatchesFiniteDifferences(gray, NoisyCopy(gray, 0.1, 8), {1.0, 0.0});  // L1 alone
}

TEST(ImageLossTest, WeightsCombineLinearly) {
  const Image a = RandomImage(40, 30, 3, 9);
  const Image b = NoisyCopy(a, 0.25, 10);
  const auto l1 = ImageLoss(a, b, {1.0, 0.0});
  const auto dssim = ImageLoss(a, b, {0.0, 1.0});
  const auto both = ImageLoss(a, b, kStage2FullRenderLoss);
  ASSERT_TRUE(l1.ok() && dssim.ok() && both.ok());
  EXPECT_NEAR(both->value, 0.5 * l1->value + 0.2 * dssim->value, 1e-14);
  EXPECT_NEAR(dssim->value, 1.0 - *Ssim(a, b), 1e-14);
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const double combined = 0.5 * l1->grad[i] + 0.2 * dssim->grad[i];  // float gradients: relative tolerance
    ASSERT_NEAR(both->grad[i], combined, 1e-6 * std::abs(combined) + 1e-12) << i;
  }
}

TEST(ImageLossTest, IdenticalImagesHaveZeroLossAndGradient) {
  const Image a = RandomImage(20, 17, 3, 11);
  const auto loss = ImageLoss(a, a);
  ASSERT_TRUE(loss.ok());
  EXPECT_EQ(loss->l1, 0.0);
  EXPECT_NEAR(loss->ssim, 1.0, 1e-12);
  EXPECT_NEAR(loss->value, 0.0, 1e-12);
  // |0|' = 0 (torch's sign) and SSIM is stationary at its maximum.
  for (float g : loss->grad) ASSERT_NEAR(g, 0.0f, 1e-9f);
}

TEST(ImageLossTest, IdenticalAcrossThreadCounts) {
  const Image a = RandomImage(97, 61, 3, 12);
  const Image b = NoisyCopy(a, 0.3, 13);
  const auto serial = ImageLoss(a, b, kStage2SelectedRenderLoss, nullptr);
  ASSERT_TRUE(serial.ok());
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    const auto parallel = ImageLoss(a, b, kStage2SelectedRenderLoss, &pool);
    ASSERT_TRUE(parallel.ok());
    EXPECT_EQ(serial->value, parallel->value) << threads;
    EXPECT_EQ(serial->ssim, parallel->ssim) << threads;
    EXPECT_EQ(0, std::memcmp(serial->grad.data(), parallel->grad.data(), serial->grad.size() * sizeof(float)))
        << threads;
  }
}

TEST(ImageLossTest, RejectsMismatchedOrEmptyImages) {
  EXPECT_EQ(ImageLoss(Image(4, 4, 3), Image(4, 5, 3)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageLoss(Image(4, 4, 3), Image(4, 4, 1)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageLoss(Image(0, 0, 3), Image(0, 0, 3)).status().code(), absl::StatusCode::kInvalidArgument);
  Image bad(4, 4, 3);
  bad.pixels.pop_back();
  EXPECT_EQ(ImageLoss(bad, Image(4, 4, 3)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flexgs

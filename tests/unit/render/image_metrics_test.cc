#include "render/image_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace flexgs {
namespace {

Image RandomImage(int w, int h, int c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Image img(w, h, c);
  for (float& v : img.pixels) v = u(rng);
  return img;
}

Image AddNoise(const Image& img, double sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(0.0, sigma);
  Image out = img;
  for (float& v : out.pixels) v = static_cast<float>(std::clamp(v + n(rng), 0.0, 1.0));
  return out;
}

// Independent reference: the 3DGS definition evaluated literally with a 2D
// 11x11 window and explicit zero padding, in double precision.
double BruteForceSsim(const Image& a, const Image& b) {
  double g[11], sum = 0;
  for (int i = 0; i < 11; ++i) sum += g[i] = std::exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
  for (double& v : g) v /= sum;
  const double c1 = 0.0001, c2 = 0.0009;
  const auto val = [](const Image& im, int x, int y, int c) -> double {
    if (x < 0 || y < 0 || x >= im.width || y >= im.height) return 0.0;
    return im.at(x, y, c);
  };
  double total = 0;
  for (int c = 0; c < a.channels; ++c) {
    for (int y = 0; y < a.height; ++y) {
      for (int x = 0; x < a.width; ++x) {
        double m1 = 0, m2 = 0, e11 = 0, e22 = 0, e12 = 0;
        for (int dy = -5; dy <= 5; ++dy) {
          for (int dx = -5; dx <= 5; ++dx) {
            const double w = g[dy + 5] * g[dx + 5];
            const double p = val(a, x + dx, y + dy, c), q = val(b, x + dx, y + dy, c);
            m1 += w * p;
            m2 += w * q;
            e11 += w * p * p;
            e22 += w * q * q;
            e12 += w * p * q;
          }
        }
        const double v1 = e11 - m1 * m1, v2 = e22 - m2 * m2, cov = e12 - m1 * m2;
        total += (2 * m1 * m2 + c1) * (2 * cov + c2) / ((m1 * m1 + m2 * m2 + c1) * (v1 + v2 + c2));
      }
    }
  }
  return total / (static_cast<double>(a.width) * a.height * a.channels);
}

TEST(PsnrTest, KnownMse) {
  Image a(16, 8, 3, 0.25f), b(16, 8, 3, 0.375f);  // exact difference 1/8 -> mse 1/64
  auto p = Psnr(a, b);
  ASSERT_TRUE(p.ok());
  EXPECT_NEAR(*p, 10 * std::log10(64.0), 1e-12);
  Image c(16, 8, 3, 0.3f), d(16, 8, 3, 0.4f);  // difference 0.1 up to float rounding
  EXPECT_NEAR(*Psnr(c, d), 20.0, 1e-5);
  EXPECT_DOUBLE_EQ(PsnrFromMse(0.01), 20.0);
  EXPECT_DOUBLE_EQ(PsnrFromMse(1.0), 0.0);
}

TEST(PsnrTest, IdenticalIsInfinite) {
  const Image a = RandomImage(10, 7, 4, 1);
  auto p = Psnr(a, a);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(std::isinf(*p) && *p > 0);
  EXPECT_TRUE(std::isinf(PsnrFromMse(0.0)));
}

TEST(MetricsTest, ShapeMismatchIsInvalidArgument) {
  const Image a(10, 7, 3), b(7, 10, 3), c(10, 7, 4);
  EXPECT_EQ(Psnr(a, b).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Psnr(a, c).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ssim(a, b).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ssim(a, c).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ssim(Image(), Image()).status().code(), absl::StatusCode::kInvalidArgument);
  Image broken(4, 4, 3);
  broken.pixels.pop_back();
  EXPECT_EQ(Ssim(broken, broken).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SsimTest, IdenticalIsOne) {
  const Image a = RandomImage(64, 48, 3, 2);
  auto s = Ssim(a, a);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(*s, 1.0, 1e-12);
}

TEST(SsimTest, MatchesBruteForceDefinition) {
  const Image a = RandomImage(29, 17, 3, 3);
  const Image b = AddNoise(a, 0.1, 4);
  auto s = Ssim(a, b);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(*s, BruteForceSsim(a, b), 1e-12);
  // Images smaller than the window exercise padding on both sides at once.
  const Image c = RandomImage(4, 3, 4, 5), d = RandomImage(4, 3, 4, 6);
  EXPECT_NEAR(*Ssim(c, d), BruteForceSsim(c, d), 1e-12);
}

// For constant images a and b the zero padding makes the local statistics
// depend only on W, the window mass inside the image at that pixel:
// mu = aW, sigma^2 = a^2 W (1 - W), cov = ab W (1 - W).
TEST(SsimTest, ConstantImagesMatchClosedForm) {
  const int w = 20, h = 14;
  const double va = 0.25, vb = 0.75;
  Image a(w, h, 3, static_cast<float>(va)), b(w, h, 3, static_cast<float>(vb));
  double g[11], sum = 0;
  for (int i = 0; i < 11; ++i) sum += g[i] = std::exp(-(i - 5) * (i - 5) / 4.5);
  const auto mass = [&](int p, int n) {  // 1D window mass inside [0, n)
    double m = 0;
    for (int d = -5; d <= 5; ++d) {
      if (p + d >= 0 && p + d < n) m += g[d + 5] / sum;
    }
    return m;
  };
  double expected = 0;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double W = mass(x, w) * mass(y, h);
      const double l = (2 * va * vb * W * W + 1e-4) / ((va * va + vb * vb) * W * W + 1e-4);
      const double cs = (2 * va * vb * W * (1 - W) + 9e-4) / ((va * va + vb * vb) * W * (1 - W) + 9e-4);
      expected += l * cs;
    }
  }
  expected /= w * h;
  auto s = Ssim(a, b);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(*s, expected, 1e-12);
  // Interior pixels alone would give (2ab + C1) / (a^2 + b^2 + C1) = 0.6001...; the border raises it.
  EXPECT_LT(*s, 1.0);
}

TEST(SsimTest, DecreasesWithNoise) {
  const Image a = RandomImage(80, 60, 3, 7);
  double prev = 1.0;
  for (double sigma : {0.01, 0.03, 0.1, 0.3}) {
    auto s = Ssim(a, AddNoise(a, sigma, 8));
    ASSERT_TRUE(s.ok());
    EXPECT_LT(*s, prev) << sigma;
    prev = *s;
  }
  EXPECT_LT(prev, 0.7);
}

TEST(SsimTest, ReasonablyFast) {
  // Smoke test at a realistic size (separable filter: ~0.3 s unoptimised).
  const Image a = RandomImage(1024, 1024, 3, 9), b = AddNoise(a, 0.05, 10);
  auto s = Ssim(a, b);
  ASSERT_TRUE(s.ok());
  EXPECT_GT(*s, 0.0);
  EXPECT_LT(*s, 1.0);
}

}  // namespace
}  // namespace flexgs

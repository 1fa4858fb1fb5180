#include "train/image_loss.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "render/image_metrics.h"

namespace flexgs {
namespace {

constexpr int kWindow = kSsimWindow;
constexpr int kRadius = kWindow / 2;
constexpr double kC1 = 0.01 * 0.01;
constexpr double kC2 = 0.03 * 0.03;

void ForRows(ThreadPool* pool, size_t rows, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (pool != nullptr) {
    pool->ParallelFor(rows, grain, [&](size_t b, size_t e, int) { fn(b, e); });
  } else {
    fn(0, rows);
  }
}

// In-place 'same' separable blur with zero padding of several w x h planes, the same
// per-pixel arithmetic (order included) as image_metrics.cc's Blur. The filter is
// symmetric, so this is also its own transpose (used for the backward).
void BlurPlanes(const std::vector<std::vector<double>*>& planes, int w, int h, const std::array<double, kWindow>& k,
                std::vector<std::vector<double>>& tmp, ThreadPool* pool) {
  const size_t count = planes.size();
  const size_t n = static_cast<size_t>(w) * h;
  tmp.resize(count);
  for (auto& t : tmp) t.resize(n);
  const size_t grain = std::max<size_t>(1, 8192 / static_cast<size_t>(w));
  ForRows(pool, count * h, grain, [&](size_t b, size_t e) {
    for (size_t job = b; job < e; ++job) {
      const size_t p = job / h, y = job % h;
      const double* src = &(*planes[p])[y * w];
      double* dst = &tmp[p][y * w];
      for (int x = 0; x < w; ++x) {
        const int lo = std::max(0, x - kRadius), hi = std::min(w - 1, x + kRadius);
        double s = 0;
        for (int xx = lo; xx <= hi; ++xx) s += k[xx - x + kRadius] * src[xx];
        dst[x] = s;
      }
    }
  });
  ForRows(pool, count * h, grain, [&](size_t b, size_t e) {
    for (size_t job = b; job < e; ++job) {
      const size_t p = job / h;
      const int y = static_cast<int>(job % h);
      double* dst = &(*planes[p])[static_cast<size_t>(y) * w];
      for (int x = 0; x < w; ++x) dst[x] = 0.0;
      const int lo = std::max(0, y - kRadius), hi = std::min(h - 1, y + kRadius);
      for (int yy = lo; yy <= hi; ++yy) {
        const double wk = k[yy - y + kRadius];
        const double* src = &tmp[p][static_cast<size_t>(yy) * w];
        for (int x = 0; x < w; ++x) dst[x] += wk * src[x];
      }
    }
  });
}

}  // namespace

absl::StatusOr<ImageLossResult> ImageLoss(const Image& render, const Image& target, const ImageLossWeights& weights,
                                          ThreadPool* pool) {
  if (render.width != target.width || render.height != target.height || render.channels != target.channels) {
    return absl::InvalidArgumentError(absl::StrCat("ImageLoss: images differ in shape: ", render.width, "x",
                                                   render.height, "x", render.channels, " vs ", target.width, "x",
                                                   target.height, "x", target.channels));
  }
  if (render.width <= 0 || render.height <= 0 || render.channels <= 0) {
    return absl::InvalidArgumentError("ImageLoss: empty images");
  }
  const int w = render.width, h = render.height, nc = render.channels;
  const size_t n = static_cast<size_t>(w) * h;
  const size_t total = n * nc;
  if (render.pixels.size() != total || target.pixels.size() != total) {
    return absl::InvalidArgumentError(absl::StrCat("ImageLoss: pixel buffers have ", render.pixels.size(), " and ",
                                                   target.pixels.size(), " values, expected ", total));
  }
  ImageLossResult result;
  result.grad.assign(total, 0.0f);
  const double inv_total = 1.0 / static_cast<double>(total);
  const size_t row_values = static_cast<size_t>(w) * nc;

  // L1: per-row sums, added in row order.
  std::vector<double> row_sums(h, 0.0);
  const double l1_grad = weights.l1 * inv_total;
  ForRows(pool, h, std::max<size_t>(1, 16384 / row_values), [&](size_t b, size_t e) {
    for (size_t y = b; y < e; ++y) {
      double s = 0.0;
      for (size_t v = y * row_values; v < (y + 1) * row_values; ++v) {
        const double d = static_cast<double>(render.pixels[v]) - target.pixels[v];
        s += std::abs(d);
        result.grad[v] = static_cast<float>(d > 0 ? l1_grad : (d < 0 ? -l1_grad : 0.0));
      }
      row_sums[y] = s;
    }
  });
  double l1_sum = 0.0;
  for (double s : row_sums) l1_sum += s;
  result.l1 = l1_sum * inv_total;

  // SSIM per channel. S = A B / (Cc D) with A = 2 m1 m2 + C1, B = 2 cov + C2,
  // Cc = m1^2 + m2^2 + C1, D = var1 + var2 + C2, where m = blur(x), var1 = blur(x^2) - m1^2,
  // cov = blur(x y) - m1 m2. With E11 = blur(x^2), E12 = blur(x y) held fixed:
  //   dS/dm1 = 2 m2 (B - A) / (Cc D) - 2 m1 S (1/Cc - 1/D),  dS/dE11 = -S / D,
  //   dS/dE12 = 2 A / (Cc D),
  // and dL/dx = blur^T(g dS/dm1) + 2 x blur^T(g dS/dE11) + y blur^T(g dS/dE12).
  const auto kernel = SsimGaussianWindow();
  const bool backward = weights.dssim != 0.0;
  const double g_s = -weights.dssim * inv_total;  // dL/dS per map value
  std::vector<double> mu1(n), mu2(n), s11(n), s22(n), s12(n);
  std::vector<std::vector<double>> tmp;
  double ssim_sum = 0.0;
  const size_t grain = std::max<size_t>(1, 8192 / static_cast<size_t>(w));
  for (int c = 0; c < nc; ++c) {
    for (size_t i = 0; i < n; ++i) {
      const double x = render.pixels[i * nc + c], y = target.pixels[i * nc + c];
      mu1[i] = x;
      mu2[i] = y;
      s11[i] = x * x;
      s22[i] = y * y;
      s12[i] = x * y;
    }
    BlurPlanes({&mu1, &mu2, &s11, &s22, &s12}, w, h, kernel, tmp, pool);
    // Per pixel: the map value goes to s22 (summed below in pixel order, as Ssim does);
    // the backward's three maps overwrite mu1, s11, s12.
    ForRows(pool, h, grain, [&](size_t b, size_t e) {
      for (size_t i = b * w; i < e * w; ++i) {
        const double m1 = mu1[i], m2 = mu2[i];
        const double var1 = s11[i] - m1 * m1, var2 = s22[i] - m2 * m2, cov = s12[i] - m1 * m2;
        const double A = 2 * m1 * m2 + kC1, B = 2 * cov + kC2;
        const double Cc = m1 * m1 + m2 * m2 + kC1, D = var1 + var2 + kC2;
        const double S = (A * B) / (Cc * D);
        s22[i] = S;
        if (backward) {
          mu1[i] = g_s * (2 * m2 * (B - A) / (Cc * D) - 2 * m1 * S * (1 / Cc - 1 / D));
          s11[i] = g_s * (-S / D);
          s12[i] = g_s * (2 * A / (Cc * D));
        }
      }
    });
    for (size_t i = 0; i < n; ++i) ssim_sum += s22[i];
    if (!backward) continue;
    BlurPlanes({&mu1, &s11, &s12}, w, h, kernel, tmp, pool);
    ForRows(pool, h, grain, [&](size_t b, size_t e) {
      for (size_t i = b * w; i < e * w; ++i) {
        const double x = render.pixels[i * nc + c], y = target.pixels[i * nc + c];
        result.grad[i * nc + c] += static_cast<float>(mu1[i] + 2 * x * s11[i] + y * s12[i]);
      }
    });
  }
  result.ssim = ssim_sum / static_cast<double>(total);  // as Ssim(): sum, then divide
  result.value = weights.l1 * result.l1 + weights.dssim * (1.0 - result.ssim);
  return result;
}

}  // namespace flexgs

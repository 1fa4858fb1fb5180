#include "train/image_loss.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "render/image_metrics.h"

namespace flexgs {
namespace {

void ForRows(ThreadPool* pool, size_t rows, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (pool != nullptr) {
    pool->ParallelFor(rows, grain, [&](size_t b, size_t e, int) { fn(b, e); });
  } else {
    fn(0, rows);
  }
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

  // SSIM per channel (render/image_metrics.h): the moments, the map from them (summed in
  // pixel order, as Ssim does), and for the backward dL/dS = g_s through the map and the
  // moments.
  const bool backward = weights.dssim != 0.0;
  const double g_s = -weights.dssim * inv_total;  // dL/dS per map value
  SsimMoments m;
  std::vector<double> map(n);
  double ssim_sum = 0.0;
  const size_t grain = std::max<size_t>(1, 8192 / static_cast<size_t>(w));
  for (int c = 0; c < nc; ++c) {
    SsimChannelMoments(render, target, c, &m, pool);
    // The backward's three gradient maps overwrite mu1, e11 and e12 once read.
    ForRows(pool, h, grain, [&](size_t b, size_t e) {
      for (size_t i = b * w; i < e * w; ++i) {
        const double m1 = m.mu1[i], m2 = m.mu2[i];
        const SsimTerms t = SsimPixel(m1, m2, m.e11[i], m.e22[i], m.e12[i]);
        map[i] = t.S;
        if (backward) SsimPixelVjp(t, m1, m2, g_s, &m.mu1[i], &m.e11[i], &m.e12[i]);
      }
    });
    for (size_t i = 0; i < n; ++i) ssim_sum += map[i];
    if (backward) SsimChannelMomentsVjp(render, target, c, &m.mu1, &m.e11, &m.e12, result.grad.data(), pool);
  }
  result.ssim = ssim_sum / static_cast<double>(total);  // as Ssim(): sum, then divide
  result.value = weights.l1 * result.l1 + weights.dssim * (1.0 - result.ssim);
  return result;
}

}  // namespace flexgs

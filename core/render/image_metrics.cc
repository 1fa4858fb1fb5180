#include "render/image_metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
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

constexpr int kRadius = kSsimWindow / 2;

// Rows per block: about 8192 values.
size_t RowGrain(int w) { return std::max<size_t>(1, 8192 / static_cast<size_t>(w)); }

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
  const size_t n = static_cast<size_t>(a.width) * a.height;
  SsimMoments m;
  double total = 0;
  for (int c = 0; c < a.channels; ++c) {
    SsimChannelMoments(a, b, c, &m, nullptr);
    for (size_t i = 0; i < n; ++i) total += SsimPixel(m.mu1[i], m.mu2[i], m.e11[i], m.e22[i], m.e12[i]).S;
  }
  return total / (static_cast<double>(n) * a.channels);
}

void SsimBlur(const std::vector<std::vector<double>*>& planes, int w, int h, ThreadPool* pool) {
  const std::array<double, kSsimWindow> k = SsimGaussianWindow();
  const size_t count = planes.size();
  const size_t n = static_cast<size_t>(w) * h;
  // Horizontal pass into tmp (every value written before it is read), vertical back.
  const std::unique_ptr<double[]> tmp(new double[count * n]);
  ThreadPool inline_pool(1);  // one thread: runs every block on the caller
  ThreadPool& run = pool != nullptr ? *pool : inline_pool;
  run.ParallelFor(count * h, RowGrain(w), [&](size_t b, size_t e, int) {
    for (size_t job = b; job < e; ++job) {
      const size_t p = job / h, y = job % h;
      const double* src = &(*planes[p])[y * w];
      double* dst = &tmp[p * n + y * w];
      for (int x = 0; x < w; ++x) {
        const int lo = std::max(0, x - kRadius), hi = std::min(w - 1, x + kRadius);
        double s = 0;
        for (int xx = lo; xx <= hi; ++xx) s += k[xx - x + kRadius] * src[xx];
        dst[x] = s;
      }
    }
  });
  run.ParallelFor(count * h, RowGrain(w), [&](size_t b, size_t e, int) {
    for (size_t job = b; job < e; ++job) {
      const size_t p = job / h;
      const int y = static_cast<int>(job % h);
      double* dst = &(*planes[p])[static_cast<size_t>(y) * w];
      for (int x = 0; x < w; ++x) dst[x] = 0.0;
      const int lo = std::max(0, y - kRadius), hi = std::min(h - 1, y + kRadius);
      for (int yy = lo; yy <= hi; ++yy) {
        const double wk = k[yy - y + kRadius];
        const double* src = &tmp[p * n + static_cast<size_t>(yy) * w];
        for (int x = 0; x < w; ++x) dst[x] += wk * src[x];
      }
    }
  });
}

void SsimChannelMoments(const Image& a, const Image& b, int c, SsimMoments* m, ThreadPool* pool) {
  const int nc = a.channels;
  const size_t n = static_cast<size_t>(a.width) * a.height;
  for (auto* p : {&m->mu1, &m->mu2, &m->e11, &m->e22, &m->e12}) p->resize(n);
  for (size_t i = 0; i < n; ++i) {
    const double x = a.pixels[i * nc + c], y = b.pixels[i * nc + c];
    m->mu1[i] = x;
    m->mu2[i] = y;
    m->e11[i] = x * x;
    m->e22[i] = y * y;
    m->e12[i] = x * y;
  }
  SsimBlur({&m->mu1, &m->mu2, &m->e11, &m->e22, &m->e12}, a.width, a.height, pool);
}

void SsimChannelMomentsVjp(const Image& a, const Image& b, int c, std::vector<double>* d_mu1,
                           std::vector<double>* d_e11, std::vector<double>* d_e12, float* grad, ThreadPool* pool) {
  const int w = a.width, h = a.height, nc = a.channels;
  SsimBlur({d_mu1, d_e11, d_e12}, w, h, pool);
  ThreadPool inline_pool(1);
  ThreadPool& run = pool != nullptr ? *pool : inline_pool;
  run.ParallelFor(h, RowGrain(w), [&](size_t rb, size_t re, int) {
    for (size_t i = rb * w; i < re * w; ++i) {
      const double x = a.pixels[i * nc + c], y = b.pixels[i * nc + c];
      grad[i * nc + c] += static_cast<float>((*d_mu1)[i] + 2 * x * (*d_e11)[i] + y * (*d_e12)[i]);
    }
  });
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

// Image quality metrics with the definitions used by 3DGS evaluation.
#pragma once

#include <array>
#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "scene/image.h"

namespace flexgs {

// 10 * log10(1 / mse) for signals in [0, 1]; +infinity when mse <= 0.
double PsnrFromMse(double mse);

// PSNR over all pixels and channels of the float values (no quantisation).
// Identical images give +infinity. Size or channel mismatch -> InvalidArgument.
absl::StatusOr<double> Psnr(const Image& a, const Image& b);

// Mean SSIM as in 3DGS utils/loss_utils.py::ssim: per channel, 11x11 Gaussian
// window (sigma 1.5, normalised), zero padding of 5 ("same" F.conv2d),
// C1 = 0.01^2, C2 = 0.03^2, map averaged over all pixels and channels (summed in pixel
// order, then divided). Computed in double precision with a separable filter, from the
// pieces below.
absl::StatusOr<double> Ssim(const Image& a, const Image& b);

// SSIM in pieces, shared with the differentiable D-SSIM loss (train/image_loss.h) so the
// two compute the very same map: each forward piece is followed by its gradient.

// The window: kSsimWindow taps of a normalised 1D Gaussian (sigma 1.5); the 2D window is
// its outer product. C1 and C2 are SSIM's stabilising constants for signals in [0, 1].
inline constexpr int kSsimWindow = 11;
inline constexpr double kSsimC1 = 0.01 * 0.01;
inline constexpr double kSsimC2 = 0.03 * 0.03;
std::array<double, kSsimWindow> SsimGaussianWindow();

// In-place 'same' blur of several w x h planes with the window, zero padding (equivalent
// to the 2D zero-padded convolution, F.conv2d with padding 5), rows split over `pool`
// (bit-identical for any thread count). The filter is symmetric, so this is also its own
// transpose: the backward blurs the gradient maps with it.
void SsimBlur(const std::vector<std::vector<double>*>& planes, int w, int h, ThreadPool* pool);

// Channel c of two same-shaped images as SSIM's local moments, per pixel: the blurred
// means mu1 = blur(x), mu2 = blur(y) and second moments e11 = blur(x^2), e22 = blur(y^2),
// e12 = blur(x y), x from `a` and y from `b`.
struct SsimMoments {
  std::vector<double> mu1, mu2, e11, e22, e12;
};
void SsimChannelMoments(const Image& a, const Image& b, int c, SsimMoments* m, ThreadPool* pool);

// Gradient of SsimChannelMoments with respect to channel c of `a`, from dL/dmu1, dL/de11
// and dL/de12 per pixel (blurred in place): dL/dx = blur(d_mu1) + 2 x blur(d_e11) +
// y blur(d_e12), added to grad (a.pixels layout).
void SsimChannelMomentsVjp(const Image& a, const Image& b, int c, std::vector<double>* d_mu1,
                           std::vector<double>* d_e11, std::vector<double>* d_e12, float* grad, ThreadPool* pool);

// SSIM at one pixel from its moments: S = A B / (Cc D), with A = 2 m1 m2 + C1,
// B = 2 cov + C2, Cc = m1^2 + m2^2 + C1, D = var1 + var2 + C2, var1 = e11 - m1^2,
// var2 = e22 - m2^2, cov = e12 - m1 m2.
struct SsimTerms {
  double A, B, Cc, D, S;
};
inline SsimTerms SsimPixel(double m1, double m2, double e11, double e22, double e12) {
  const double var1 = e11 - m1 * m1, var2 = e22 - m2 * m2, cov = e12 - m1 * m2;
  const double A = 2 * m1 * m2 + kSsimC1, B = 2 * cov + kSsimC2;
  const double Cc = m1 * m1 + m2 * m2 + kSsimC1, D = var1 + var2 + kSsimC2;
  return {A, B, Cc, D, (A * B) / (Cc * D)};
}

// Gradient of SsimPixel times g = dL/dS with respect to the moments of the first image
// (e12 counted as its moment: y is held fixed). With E11 and E12 held fixed,
//   dS/dm1 = 2 m2 (B - A) / (Cc D) - 2 m1 S (1/Cc - 1/D),  dS/dE11 = -S / D,
//   dS/dE12 = 2 A / (Cc D).
inline void SsimPixelVjp(const SsimTerms& t, double m1, double m2, double g, double* d_m1, double* d_e11,
                         double* d_e12) {
  *d_m1 = g * (2 * m2 * (t.B - t.A) / (t.Cc * t.D) - 2 * m1 * t.S * (1 / t.Cc - 1 / t.D));
  *d_e11 = g * (-t.S / t.D);
  *d_e12 = g * (2 * t.A / (t.Cc * t.D));
}

}  // namespace flexgs

// Image quality metrics with the definitions used by 3DGS evaluation.
#pragma once

#include <array>

#include "absl/status/statusor.h"
#include "scene/image.h"

namespace flexgs {

// 10 * log10(1 / mse) for signals in [0, 1]; +infinity when mse <= 0.
double PsnrFromMse(double mse);

// PSNR over all pixels and channels of the float values (no quantisation).
// Identical images give +infinity. Size or channel mismatch -> InvalidArgument.
absl::StatusOr<double> Psnr(const Image& a, const Image& b);

// Mean SSIM as in 3DGS utils/loss_utils.py::ssim: per channel, 11x11 Gaussian
// window (sigma 1.5, normalised), zero padding of 5 ("same" F.conv2d),
// C1 = 0.01^2, C2 = 0.03^2, map averaged over all pixels and channels.
// Computed in double precision with a separable filter.
absl::StatusOr<double> Ssim(const Image& a, const Image& b);

// SSIM's window, shared with the differentiable D-SSIM loss (core/train/image_loss.h) so the
// two cannot drift apart: kSsimWindow taps of a normalised 1D Gaussian (sigma 1.5); the
// 2D window is its outer product.
inline constexpr int kSsimWindow = 11;
std::array<double, kSsimWindow> SsimGaussianWindow();

}  // namespace flexgs

// Image quality metrics with the definitions used by 3DGS evaluation.
#pragma once

#include "absl/status/statusor.h"
#include "core/image.h"

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

}  // namespace flexgs

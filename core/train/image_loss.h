// Photometric training loss with its gradient: weighted L1 + D-SSIM, as in the
// reference's train.py.
//
//   value = l1 * mean|render - target| + dssim * (1 - SSIM(render, target))
//
// SSIM is exactly image_metrics' Ssim (3DGS utils/loss_utils.py::ssim: 11x11 Gaussian
// window, sigma 1.5, zero padding, C1 = 0.01^2, C2 = 0.03^2, mean over pixels and
// channels), computed in double with the same separable filter, so
// ImageLossResult::ssim equals Ssim() up to the last bits. The defaults are the
// reference's stage-1 weights (L1 + lambda_dssim (1 - SSIM), lambda_dssim = 0.2; note:
// not 3DGS's (1 - lambda) L1); stage 2 adds two such terms with the constants below.
// |x|' uses sign(0) = 0, as torch.
//
// The gradient is dL/drender in Image::pixels layout (what
// DifferentiableRasterizer::Backward takes). Work is split over rows on the pool; every
// value and gradient is bit-identical for any thread count.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "scene/image.h"

namespace flexgs {

struct ImageLossWeights {
  double l1 = 1.0;
  double dssim = 0.2;  // lambda_dssim
};

// Stage-2 loss of the reference: 0.5 L1(I_s) + 0.1 D-SSIM(I_s) for the render of the
// selected, transformed Gaussians and 0.5 L1(I_f) + 0.2 D-SSIM(I_f) for the full model
// (full_weight = 1, lambda_dssim = 0.2; the asymmetry is the reference's).
inline constexpr ImageLossWeights kStage2SelectedRenderLoss{0.5, 0.1};
inline constexpr ImageLossWeights kStage2FullRenderLoss{0.5, 0.2};

struct ImageLossResult {
  double value = 0.0;       // weighted loss
  double l1 = 0.0;          // mean |render - target|
  double ssim = 0.0;        // mean SSIM (D-SSIM = 1 - ssim)
  std::vector<float> grad;  // dL/drender, render.pixels layout
};

// InvalidArgument on empty images or a shape mismatch.
absl::StatusOr<ImageLossResult> ImageLoss(const Image& render, const Image& target,
                                          const ImageLossWeights& weights = {}, ThreadPool* pool = nullptr);

}  // namespace flexgs

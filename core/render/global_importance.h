// Global Importance (GI): how much each Gaussian contributes over a set of views.
//
//   GI_i = sum over views, sum over pixels p where Gaussian i is composited, of
//          opacity_i * T_i(p)       (T_i(p): transmittance in front of i at p)
//
// "Composited" uses the rasterizer's own rules (alpha >= 1/255, transmittance after
// it >= 1e-4), as in FlexGS's counting kernel. Unlike the reference kernel, whose
// non-atomic updates race and lose most contributions, sums here are exact and
// deterministic: per-(tile, Gaussian) partial sums are converted to 2^-32 fixed
// point and added as integers, so the result does not depend on thread count or
// scheduling. Cameras are processed one at a time: memory is O(N + one image)
// whatever the number of views.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "render/cpu_rasterizer.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

enum class GiVariant {
  kFlexGs,               // sum of opacity * T (FlexGS prune_list)
  kLightGaussianVolume,  // kFlexGs * (V / V_ref)^0.1, V = product of scales (LightGaussian)
};

struct GlobalImportanceOptions {
  GiVariant variant = GiVariant::kFlexGs;
  RenderOptions render;  // near plane, radius mode (background and SH are irrelevant)
  double volume_power = 0.1;
};

absl::StatusOr<std::vector<float>> ComputeGlobalImportance(const GaussianCloud& cloud,
                                                           const std::vector<Camera>& cameras,
                                                           const GlobalImportanceOptions& options,
                                                           CpuRasterizer& rasterizer);

// LightGaussian's volume weighting applied to raw scores (exposed for tests):
// V_ref is the element at index floor(0.9 N) of the volumes sorted descending.
std::vector<float> ApplyVolumeWeighting(const GaussianCloud& cloud, const std::vector<float>& scores, double power);

}  // namespace flexgs

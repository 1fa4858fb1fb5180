#include "render/rasterizer.h"

namespace flexgs {

raster::CameraParams ToCameraParams(const Camera& camera, float near_plane) {
  raster::CameraParams p{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) p.R[r * 3 + c] = static_cast<float>(camera.R(r, c));
    p.t[r] = static_cast<float>(camera.t[r]);
  }
  const Eigen::Vector3d centre = camera.Centre();
  for (int i = 0; i < 3; ++i) p.campos[i] = static_cast<float>(centre[i]);
  p.fx = static_cast<float>(camera.fx);
  p.fy = static_cast<float>(camera.fy);
  p.cx = static_cast<float>(camera.cx);
  p.cy = static_cast<float>(camera.cy);
  p.width = camera.width;
  p.height = camera.height;
  p.near_plane = near_plane;
  return p;
}

}  // namespace flexgs

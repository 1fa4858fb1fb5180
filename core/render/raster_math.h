// Per-Gaussian rasterization math shared by the CPU rasterizer (core/) and the
// CUDA kernels (kernels/), so both paths evaluate the very same expressions.
//
// Plain C++ with no CUDA headers: when compiled by nvcc the functions become
// __host__ __device__ through FLEXGS_HD. Constants follow the INRIA/gsplat
// rasterizers (see shared/docs/reference/rendering-reference.md).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FLEXGS_HD __host__ __device__ __forceinline__
#else
#define FLEXGS_HD inline
#endif

namespace flexgs::raster {

#if !defined(__CUDACC__)
using std::isfinite;
#endif

inline constexpr int kTileSize = 16;               // 16x16 pixel tiles, one CUDA block each
inline constexpr float kDilation = 0.3f;           // EWA low-pass added to the 2D covariance diagonal
inline constexpr float kAlphaMin = 1.0f / 255.0f;  // contributions below this are skipped
inline constexpr float kAlphaMax = 0.99f;          // alpha is clamped here
inline constexpr float kTransmittanceMin = 1e-4f;  // a pixel stops once T would fall below this
inline constexpr float kFovGuard = 0.3f;           // Jacobian clamp: 30% beyond the image edge
inline constexpr float kOpacityAwareExtentMax = 3.33f;

inline constexpr float kShC0 = 0.28209479177387814f;
inline constexpr float kShC1 = 0.4886025119029199f;
inline constexpr float kShC2[5] = {1.0925484305920792f, -1.0925484305920792f, 0.31539156525252005f,
                                   -1.0925484305920792f, 0.5462742152960396f};
inline constexpr float kShC3[7] = {-0.5900435899266435f, 2.890611442640554f, -0.4570457994644658f, 0.3731763325901154f,
                                   -0.4570457994644658f, 1.445305721320277f, -0.5900435899266435f};

enum class RadiusMode : int {
  kThreeSigma = 0,    // INRIA: ceil(3 * sqrt(largest eigenvalue)), isotropic
  kOpacityAware = 1,  // gsplat: per axis, extent min(3.33, sqrt(2 ln(255 * opacity))) sigma
};

// Camera in the flat float form the kernels use. R is row-major world->camera.
struct CameraParams {
  float R[9];
  float t[3];
  float campos[3];
  float fx, fy, cx, cy;
  int width, height;
  float near_plane;
};

// Screen-space footprint of one Gaussian.
struct Projected {
  float mean_x, mean_y;             // pixel coordinates (pixel centres at +0.5)
  float depth;                      // camera-space z
  float conic_a, conic_b, conic_c;  // inverse 2D covariance [a b; b c]
  float opacity;                    // sigmoid(logit)
  int radius_x, radius_y;           // screen radius in pixels used for tile binning
};

FLEXGS_HD float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Tiles touched by a footprint: inclusive-exclusive ranges [x0,x1) x [y0,y1).
FLEXGS_HD void TileRect(const Projected& p, int tiles_x, int tiles_y, int* x0, int* y0, int* x1, int* y1) {
  const float fx0 = floorf((p.mean_x - p.radius_x) / kTileSize);
  const float fy0 = floorf((p.mean_y - p.radius_y) / kTileSize);
  const float fx1 = floorf((p.mean_x + p.radius_x) / kTileSize) + 1.0f;
  const float fy1 = floorf((p.mean_y + p.radius_y) / kTileSize) + 1.0f;
  *x0 = static_cast<int>(fminf(fmaxf(fx0, 0.0f), static_cast<float>(tiles_x)));
  *y0 = static_cast<int>(fminf(fmaxf(fy0, 0.0f), static_cast<float>(tiles_y)));
  *x1 = static_cast<int>(fminf(fmaxf(fx1, 0.0f), static_cast<float>(tiles_x)));
  *y1 = static_cast<int>(fminf(fmaxf(fy1, 0.0f), static_cast<float>(tiles_y)));
}

// EWA projection of one Gaussian. Returns false when it is culled (behind the near
// plane, degenerate, invisible, non-finite or entirely off-screen). `opacity_scale`
// multiplies the activated opacity before culling and radius (the training-time
// elastic mask); the default 1 leaves every result bit-identical.
FLEXGS_HD bool ProjectGaussian(const float* pos, const float* log_scale, const float* quat, float opacity_logit,
                               const CameraParams& cam, RadiusMode mode, Projected* out, float opacity_scale = 1.0f) {
  const float* R = cam.R;
  const float tx = R[0] * pos[0] + R[1] * pos[1] + R[2] * pos[2] + cam.t[0];
  const float ty = R[3] * pos[0] + R[4] * pos[1] + R[5] * pos[2] + cam.t[1];
  const float tz = R[6] * pos[0] + R[7] * pos[1] + R[8] * pos[2] + cam.t[2];
  if (!(tz > cam.near_plane) || !isfinite(tz)) return false;

  const float opacity = Sigmoid(opacity_logit) * opacity_scale;
  if (!(opacity >= kAlphaMin)) return false;

  // Rotation from the (normalised) quaternion w,x,y,z.
  const float qn = sqrtf(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
  if (!(qn > 1e-12f) || !isfinite(qn)) return false;
  const float w = quat[0] / qn, x = quat[1] / qn, y = quat[2] / qn, z = quat[3] / qn;
  const float Rq[9] = {1.f - 2.f * (y * y + z * z), 2.f * (x * y - w * z),       2.f * (x * z + w * y),
                       2.f * (x * y + w * z),       1.f - 2.f * (x * x + z * z), 2.f * (y * z - w * x),
                       2.f * (x * z - w * y),       2.f * (y * z + w * x),       1.f - 2.f * (x * x + y * y)};
  const float s[3] = {expf(log_scale[0]), expf(log_scale[1]), expf(log_scale[2])};
  // M = Rq * S ; Sigma = M M^T
  float M[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) M[r * 3 + c] = Rq[r * 3 + c] * s[c];
  float S3[6];  // xx xy xz yy yz zz
  S3[0] = M[0] * M[0] + M[1] * M[1] + M[2] * M[2];
  S3[1] = M[0] * M[3] + M[1] * M[4] + M[2] * M[5];
  S3[2] = M[0] * M[6] + M[1] * M[7] + M[2] * M[8];
  S3[3] = M[3] * M[3] + M[4] * M[4] + M[5] * M[5];
  S3[4] = M[3] * M[6] + M[4] * M[7] + M[5] * M[8];
  S3[5] = M[6] * M[6] + M[7] * M[7] + M[8] * M[8];

  // Jacobian of the perspective projection, with the point clamped to a guard band
  // around the view frustum so that Gaussians far off-axis do not explode.
  const float tan_fovx = 0.5f * cam.width / cam.fx;
  const float tan_fovy = 0.5f * cam.height / cam.fy;
  const float lim_x_pos = (cam.width - cam.cx) / cam.fx + kFovGuard * tan_fovx;
  const float lim_x_neg = cam.cx / cam.fx + kFovGuard * tan_fovx;
  const float lim_y_pos = (cam.height - cam.cy) / cam.fy + kFovGuard * tan_fovy;
  const float lim_y_neg = cam.cy / cam.fy + kFovGuard * tan_fovy;
  const float rz = 1.0f / tz;
  const float cxz = fminf(lim_x_pos, fmaxf(-lim_x_neg, tx * rz)) * tz;
  const float cyz = fminf(lim_y_pos, fmaxf(-lim_y_neg, ty * rz)) * tz;
  const float J00 = cam.fx * rz, J02 = -cam.fx * cxz * rz * rz;
  const float J11 = cam.fy * rz, J12 = -cam.fy * cyz * rz * rz;
  // T = J * W (2x3), W = camera rotation.
  const float T0[3] = {J00 * R[0] + J02 * R[6], J00 * R[1] + J02 * R[7], J00 * R[2] + J02 * R[8]};
  const float T1[3] = {J11 * R[3] + J12 * R[6], J11 * R[4] + J12 * R[7], J11 * R[5] + J12 * R[8]};
  // cov2d = T * Sigma * T^T
  const float S0[3] = {S3[0] * T0[0] + S3[1] * T0[1] + S3[2] * T0[2], S3[1] * T0[0] + S3[3] * T0[1] + S3[4] * T0[2],
                       S3[2] * T0[0] + S3[4] * T0[1] + S3[5] * T0[2]};
  const float S1[3] = {S3[0] * T1[0] + S3[1] * T1[1] + S3[2] * T1[2], S3[1] * T1[0] + S3[3] * T1[1] + S3[4] * T1[2],
                       S3[2] * T1[0] + S3[4] * T1[1] + S3[5] * T1[2]};
  const float a = T0[0] * S0[0] + T0[1] * S0[1] + T0[2] * S0[2] + kDilation;
  const float b = T0[0] * S1[0] + T0[1] * S1[1] + T0[2] * S1[2];
  const float c = T1[0] * S1[0] + T1[1] * S1[1] + T1[2] * S1[2] + kDilation;
  const float det = a * c - b * b;
  if (!(det > 0.0f) || !isfinite(det)) return false;
  const float inv_det = 1.0f / det;

  out->mean_x = cam.fx * tx * rz + cam.cx;
  out->mean_y = cam.fy * ty * rz + cam.cy;
  out->depth = tz;
  out->conic_a = c * inv_det;
  out->conic_b = -b * inv_det;
  out->conic_c = a * inv_det;
  out->opacity = opacity;
  if (mode == RadiusMode::kThreeSigma) {
    const float mid = 0.5f * (a + c);
    const float lambda = mid + sqrtf(fmaxf(0.1f, mid * mid - det));
    const int r = static_cast<int>(ceilf(3.0f * sqrtf(lambda)));
    out->radius_x = r;
    out->radius_y = r;
  } else {
    const float extent = fminf(kOpacityAwareExtentMax, sqrtf(2.0f * logf(opacity / kAlphaMin)));
    out->radius_x = static_cast<int>(ceilf(extent * sqrtf(a)));
    out->radius_y = static_cast<int>(ceilf(extent * sqrtf(c)));
  }
  if (!isfinite(out->mean_x) || !isfinite(out->mean_y)) return false;
  if (out->radius_x <= 0 && out->radius_y <= 0) return false;
  // Entirely off-screen?
  if (out->mean_x + out->radius_x < 0.0f || out->mean_y + out->radius_y < 0.0f ||
      out->mean_x - out->radius_x > static_cast<float>(cam.width) ||
      out->mean_y - out->radius_y > static_cast<float>(cam.height))
    return false;
  return true;
}

// Real SH basis functions of bands 1..degree (band 0 is the constant kShC0) at the unit
// direction (x, y, z), in the INRIA order; returns how many were written (0, 3, 8 or 15).
FLEXGS_HD int ShBasis(int degree, float x, float y, float z, float* basis) {
  // Local copies: nvcc treats namespace-scope constexpr arrays as host-only.
  constexpr float c2[5] = {kShC2[0], kShC2[1], kShC2[2], kShC2[3], kShC2[4]};
  constexpr float c3[7] = {kShC3[0], kShC3[1], kShC3[2], kShC3[3], kShC3[4], kShC3[5], kShC3[6]};
  if (degree < 1) return 0;
  basis[0] = -kShC1 * y;
  basis[1] = kShC1 * z;
  basis[2] = -kShC1 * x;
  if (degree < 2) return 3;
  const float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  basis[3] = c2[0] * xy;
  basis[4] = c2[1] * yz;
  basis[5] = c2[2] * (2.0f * zz - xx - yy);
  basis[6] = c2[3] * xz;
  basis[7] = c2[4] * (xx - yy);
  if (degree < 3) return 8;
  basis[8] = c3[0] * y * (3.0f * xx - yy);
  basis[9] = c3[1] * xy * z;
  basis[10] = c3[2] * y * (4.0f * zz - xx - yy);
  basis[11] = c3[3] * z * (2.0f * zz - 3.0f * xx - 3.0f * yy);
  basis[12] = c3[4] * x * (4.0f * zz - xx - yy);
  basis[13] = c3[5] * z * (xx - yy);
  basis[14] = c3[6] * x * (xx - 3.0f * yy);
  return 15;
}

// View-dependent colour from SH up to `degree`, +0.5 and clamped at 0 (INRIA).
// `rest` is channel-major with `k` coefficients per channel (k >= ShRestCoeffs(degree)).
FLEXGS_HD void EvalShColor(int degree, const float* dc, const float* rest, int k, float dx, float dy, float dz,
                           float* rgb) {
  const float inv = 1.0f / fmaxf(sqrtf(dx * dx + dy * dy + dz * dz), 1e-12f);
  float basis[15];
  const int n = ShBasis(degree, dx * inv, dy * inv, dz * inv, basis);
  for (int ch = 0; ch < 3; ++ch) {
    float v = kShC0 * dc[ch];
    const float* r = rest + ch * k;
    for (int j = 0; j < n; ++j) v += basis[j] * r[j];
    v += 0.5f;
    rgb[ch] = v > 0.0f ? v : 0.0f;
  }
}

// Alpha of a Gaussian with (scaled) opacity at falloff exponent `power` <= 0. Every
// blend loop (CPU forward, CUDA forward, CUDA backward) calls this one expression: the
// CUDA backward re-derives which pairs the forward composited, and the transmittance
// before each, from it, so the forward and backward values must agree bit for bit
// (keep nvcc's fast-math off for the same reason).
FLEXGS_HD float BlendAlpha(float opacity, float power) {
  const float alpha = opacity * expf(power);
  return alpha < kAlphaMax ? alpha : kAlphaMax;  // std::min's rule; a plain select on the CPU
}

// Gaussian falloff exponent at pixel centre (px, py) (integer pixel indices).
FLEXGS_HD float FalloffPower(const Projected& p, int px, int py) {
  const float dx = p.mean_x - (static_cast<float>(px) + 0.5f);
  const float dy = p.mean_y - (static_cast<float>(py) + 0.5f);
  return -0.5f * (p.conic_a * dx * dx + p.conic_c * dy * dy) - p.conic_b * dx * dy;
}

}  // namespace flexgs::raster

// Per-Gaussian and per-pixel rasterization math shared by the CPU rasterizer and its
// backward pass (render/) and the CUDA kernels (kernels/), so every path evaluates the
// very same expressions and the float64 finite-difference checks of the CPU backward
// also cover the math the GPU runs. Each forward function is followed by its
// vector-Jacobian product (..Vjp / ..Backward), as gsplat keeps quat_to_rotmat beside
// quat_to_rotmat_vjp: the VJP recomputes the forward's intermediates with the same
// float expressions (often by calling the forward), so the two cannot drift apart.
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

// |q| of a quaternion (w, x, y, z); ProjectGaussian culls a Gaussian unless it is
// finite and above 1e-12.
FLEXGS_HD float QuatNorm(const float* quat) {
  return sqrtf(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
}

// The factor M = Rq diag(s) of a Gaussian's 3D covariance Sigma = M M^T, with Rq the
// rotation of the normalised quaternion and s = exp(log_scale).
struct RotationScale {
  float w, x, y, z;  // quat / |quat|
  float Rq[9];       // row-major
  float s[3];
  float M[9];  // row-major
};

// `qn` is QuatNorm(quat), > 0.
FLEXGS_HD RotationScale QuatScaleToMatrix(const float* quat, float qn, const float* log_scale) {
  RotationScale r;
  const float w = quat[0] / qn, x = quat[1] / qn, y = quat[2] / qn, z = quat[3] / qn;
  r.w = w;
  r.x = x;
  r.y = y;
  r.z = z;
  const float Rq[9] = {1.f - 2.f * (y * y + z * z), 2.f * (x * y - w * z),       2.f * (x * z + w * y),
                       2.f * (x * y + w * z),       1.f - 2.f * (x * x + z * z), 2.f * (y * z - w * x),
                       2.f * (x * z - w * y),       2.f * (y * z + w * x),       1.f - 2.f * (x * x + y * y)};
  for (int k = 0; k < 9; ++k) r.Rq[k] = Rq[k];
  for (int k = 0; k < 3; ++k) r.s[k] = expf(log_scale[k]);
  for (int row = 0; row < 3; ++row)
    for (int c = 0; c < 3; ++c) r.M[row * 3 + c] = Rq[row * 3 + c] * r.s[c];
  return r;
}

// VJP of QuatScaleToMatrix: from dL/dM (gM, row-major), adds dL/d log_scale and dL/d
// raw quaternion (through q / |q|). `r` and `qn` are the forward's.
FLEXGS_HD void QuatScaleToMatrixVjp(const RotationScale& r, float qn, const float* gM, float* g_log_scale,
                                    float* g_quat) {
  const float w = r.w, x = r.x, y = r.y, z = r.z;
  // M = Rq diag(s), s = exp(log_scale).
  float gR[9];
  for (int q = 0; q < 3; ++q) {
    float gs = 0.0f;
    for (int row = 0; row < 3; ++row) {
      gR[row * 3 + q] = gM[row * 3 + q] * r.s[q];
      gs += gM[row * 3 + q] * r.Rq[row * 3 + q];
    }
    g_log_scale[q] += gs * r.s[q];
  }
  // Rq(w, x, y, z) on the normalised quaternion, then through q / |q|.
  const float gw = 2.0f * (-z * gR[1] + y * gR[2] + z * gR[3] - x * gR[5] - y * gR[6] + x * gR[7]);
  const float gx = 2.0f * (y * gR[1] + z * gR[2] + y * gR[3] - 2.0f * x * gR[4] - w * gR[5] + z * gR[6] + w * gR[7] -
                           2.0f * x * gR[8]);
  const float gy = 2.0f * (-2.0f * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + z * gR[5] - w * gR[6] + z * gR[7] -
                           2.0f * y * gR[8]);
  const float gz = 2.0f * (-2.0f * z * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - 2.0f * z * gR[4] + y * gR[5] +
                           x * gR[6] + y * gR[7]);
  const float dot = w * gw + x * gx + y * gy + z * gz;
  g_quat[0] += (gw - w * dot) / qn;
  g_quat[1] += (gx - x * dot) / qn;
  g_quat[2] += (gy - y * dot) / qn;
  g_quat[3] += (gz - z * dot) / qn;
}

// The guard band of the projection's Jacobian: J is taken at the camera-space point
// clamped to tx / tz in [-x_neg, x_pos] and ty / tz in [-y_neg, y_pos], kFovGuard of the
// field of view beyond the image edge, so that Gaussians far off-axis do not explode.
struct GuardBand {
  float x_pos, x_neg, y_pos, y_neg;
};
FLEXGS_HD GuardBand JacobianGuardBand(const CameraParams& cam) {
  const float tan_fovx = 0.5f * cam.width / cam.fx;
  const float tan_fovy = 0.5f * cam.height / cam.fy;
  return {(cam.width - cam.cx) / cam.fx + kFovGuard * tan_fovx, cam.cx / cam.fx + kFovGuard * tan_fovx,
          (cam.height - cam.cy) / cam.fy + kFovGuard * tan_fovy, cam.cy / cam.fy + kFovGuard * tan_fovy};
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

  const float qn = QuatNorm(quat);
  if (!(qn > 1e-12f) || !isfinite(qn)) return false;
  const RotationScale rs = QuatScaleToMatrix(quat, qn, log_scale);
  const float* M = rs.M;  // Sigma = M M^T
  float S3[6];            // xx xy xz yy yz zz
  S3[0] = M[0] * M[0] + M[1] * M[1] + M[2] * M[2];
  S3[1] = M[0] * M[3] + M[1] * M[4] + M[2] * M[5];
  S3[2] = M[0] * M[6] + M[1] * M[7] + M[2] * M[8];
  S3[3] = M[3] * M[3] + M[4] * M[4] + M[5] * M[5];
  S3[4] = M[3] * M[6] + M[4] * M[7] + M[5] * M[8];
  S3[5] = M[6] * M[6] + M[7] * M[7] + M[8] * M[8];

  // Jacobian of the perspective projection, with the point clamped to the guard band.
  const GuardBand lim = JacobianGuardBand(cam);
  const float rz = 1.0f / tz;
  const float cxz = fminf(lim.x_pos, fmaxf(-lim.x_neg, tx * rz)) * tz;
  const float cyz = fminf(lim.y_pos, fmaxf(-lim.y_neg, ty * rz)) * tz;
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

// VJP of ProjectGaussian's mean and conic for a Gaussian it kept. Recomputes the
// forward's intermediates with the same functions and float expressions (so the Jacobian
// clamp decides the same way) and adds dL/d position, log-scale and raw quaternion.
FLEXGS_HD void ProjectBackward(const float* pos, const float* log_scale, const float* quat, const CameraParams& cam,
                               const float* g_mean, const float* g_conic, float* g_pos, float* g_log_scale,
                               float* g_quat) {
  const float* R = cam.R;
  const float tx = R[0] * pos[0] + R[1] * pos[1] + R[2] * pos[2] + cam.t[0];
  const float ty = R[3] * pos[0] + R[4] * pos[1] + R[5] * pos[2] + cam.t[1];
  const float tz = R[6] * pos[0] + R[7] * pos[1] + R[8] * pos[2] + cam.t[2];
  const float qn = QuatNorm(quat);
  const RotationScale rs = QuatScaleToMatrix(quat, qn, log_scale);
  const float* M = rs.M;
  float Sig[9];  // full symmetric Sigma = M M^T
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      Sig[r * 3 + c] = M[r * 3] * M[c * 3] + M[r * 3 + 1] * M[c * 3 + 1] + M[r * 3 + 2] * M[c * 3 + 2];

  // Jacobian of the perspective projection, with the point clamped to the guard band.
  const GuardBand lim = JacobianGuardBand(cam);
  const float rz = 1.0f / tz;
  const float u = tx * rz, v = ty * rz;
  const float ucl = fminf(lim.x_pos, fmaxf(-lim.x_neg, u));
  const float vcl = fminf(lim.y_pos, fmaxf(-lim.y_neg, v));
  // Inside the guard band the clamp is the identity; outside it is constant in u.
  const bool x_free = u >= -lim.x_neg && u <= lim.x_pos;
  const bool y_free = v >= -lim.y_neg && v <= lim.y_pos;
  const float cxz = ucl * tz, cyz = vcl * tz;
  const float J00 = cam.fx * rz, J02 = -cam.fx * cxz * rz * rz;
  const float J11 = cam.fy * rz, J12 = -cam.fy * cyz * rz * rz;
  const float T0[3] = {J00 * R[0] + J02 * R[6], J00 * R[1] + J02 * R[7], J00 * R[2] + J02 * R[8]};
  const float T1[3] = {J11 * R[3] + J12 * R[6], J11 * R[4] + J12 * R[7], J11 * R[5] + J12 * R[8]};
  float S0[3], S1[3];  // Sigma T0, Sigma T1
  for (int r = 0; r < 3; ++r) {
    S0[r] = Sig[r * 3] * T0[0] + Sig[r * 3 + 1] * T0[1] + Sig[r * 3 + 2] * T0[2];
    S1[r] = Sig[r * 3] * T1[0] + Sig[r * 3 + 1] * T1[1] + Sig[r * 3 + 2] * T1[2];
  }
  const float a = T0[0] * S0[0] + T0[1] * S0[1] + T0[2] * S0[2] + kDilation;
  const float b = T0[0] * S1[0] + T0[1] * S1[1] + T0[2] * S1[2];
  const float c = T1[0] * S1[0] + T1[1] * S1[1] + T1[2] * S1[2] + kDilation;
  const float inv_det = 1.0f / (a * c - b * b);

  // conic = (c, -b, a) / det  ->  2D covariance (the dilation is a constant offset).
  const float id2 = inv_det * inv_det;
  const float gA = g_conic[0], gB = g_conic[1], gC = g_conic[2];
  const float ga = (-c * c * gA + b * c * gB - b * b * gC) * id2;
  const float gb = (2.0f * b * c * gA - (a * c + b * b) * gB + 2.0f * a * b * gC) * id2;
  const float gc = (-b * b * gA + a * b * gB - a * a * gC) * id2;

  // cov2d = [T0; T1] Sigma [T0; T1]^T.
  float gT0[3], gT1[3];
  for (int r = 0; r < 3; ++r) {
    gT0[r] = 2.0f * ga * S0[r] + gb * S1[r];
    gT1[r] = gb * S0[r] + 2.0f * gc * S1[r];
  }
  // dL/dSigma as a symmetric matrix G; Sigma = M M^T gives dL/dM = 2 G M.
  float G[9];
  for (int r = 0; r < 3; ++r)
    for (int q = 0; q < 3; ++q)
      G[r * 3 + q] = ga * T0[r] * T0[q] + 0.5f * gb * (T0[r] * T1[q] + T1[r] * T0[q]) + gc * T1[r] * T1[q];
  float gM[9];
  for (int r = 0; r < 3; ++r)
    for (int q = 0; q < 3; ++q)
      gM[r * 3 + q] = 2.0f * (G[r * 3] * M[q] + G[r * 3 + 1] * M[3 + q] + G[r * 3 + 2] * M[6 + q]);
  QuatScaleToMatrixVjp(rs, qn, gM, g_log_scale, g_quat);

  // T0 = J00 W_0 + J02 W_2, T1 = J11 W_1 + J12 W_2 (W_r = rows of the camera rotation).
  const float gJ00 = gT0[0] * R[0] + gT0[1] * R[1] + gT0[2] * R[2];
  const float gJ02 = gT0[0] * R[6] + gT0[1] * R[7] + gT0[2] * R[8];
  const float gJ11 = gT1[0] * R[3] + gT1[1] * R[4] + gT1[2] * R[5];
  const float gJ12 = gT1[0] * R[6] + gT1[1] * R[7] + gT1[2] * R[8];
  float g_rz = cam.fx * gJ00 + cam.fy * gJ11 - 2.0f * cam.fx * cxz * rz * gJ02 - 2.0f * cam.fy * cyz * rz * gJ12;
  const float g_cxz = -cam.fx * rz * rz * gJ02, g_cyz = -cam.fy * rz * rz * gJ12;
  // cxz = clamp(tx / tz) * tz.
  float g_tx = 0.0f, g_ty = 0.0f, g_tz = ucl * g_cxz + vcl * g_cyz;
  if (x_free) {
    g_tx += tz * g_cxz * rz;
    g_rz += tz * g_cxz * tx;
  }
  if (y_free) {
    g_ty += tz * g_cyz * rz;
    g_rz += tz * g_cyz * ty;
  }
  // mean = f * t / tz + c.
  g_tx += cam.fx * rz * g_mean[0];
  g_ty += cam.fy * rz * g_mean[1];
  g_rz += cam.fx * tx * g_mean[0] + cam.fy * ty * g_mean[1];
  g_tz -= rz * rz * g_rz;
  // t = R p + t0.
  for (int d = 0; d < 3; ++d) g_pos[d] += R[d] * g_tx + R[3 + d] * g_ty + R[6 + d] * g_tz;
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

// Gradient of the view-dependent colour (EvalShColor) for one Gaussian. `g_rgb`
// is dL/d(clamped colour) and `rgb` the forward colour (> 0 exactly where unclamped).
// Writes dL/d sh_dc (3), dL/d sh_rest (3*k, zero beyond the evaluated degree) and adds
// dL/d position through the normalised view direction.
FLEXGS_HD void ShColorBackward(int degree, const float* rest, int k, float dx, float dy, float dz, const float* rgb,
                               const float* g_rgb, float* g_dc, float* g_rest, float* g_pos) {
  float g_v[3];
  for (int ch = 0; ch < 3; ++ch) {
    g_v[ch] = rgb[ch] > 0.0f ? g_rgb[ch] : 0.0f;  // v -> max(v, 0): no gradient where clamped
    g_dc[ch] = kShC0 * g_v[ch];
  }
  if (degree < 1) return;
  const float norm = sqrtf(dx * dx + dy * dy + dz * dz);
  const float inv = 1.0f / fmaxf(norm, 1e-12f);
  const float x = dx * inv, y = dy * inv, z = dz * inv;
  // Local copies: nvcc treats namespace-scope constexpr arrays as host-only.
  constexpr float c2[5] = {kShC2[0], kShC2[1], kShC2[2], kShC2[3], kShC2[4]};
  constexpr float c3[7] = {kShC3[0], kShC3[1], kShC3[2], kShC3[3], kShC3[4], kShC3[5], kShC3[6]};
  const float C1 = kShC1;
  float basis[15];
  const int n = ShBasis(degree, x, y, z, basis);
  const float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  // dL/d basis_j = sum_ch g_v[ch] * rest[ch][j]; and the rest coefficients' own gradient.
  float gb[15];
  for (int j = 0; j < n; ++j) {
    gb[j] = 0.0f;
    for (int ch = 0; ch < 3; ++ch) {
      gb[j] += g_v[ch] * rest[ch * k + j];
      g_rest[ch * k + j] = basis[j] * g_v[ch];
    }
  }
  // d basis / d (x, y, z) on the unit direction.
  float gx = -C1 * gb[2], gy = -C1 * gb[0], gz = C1 * gb[1];
  if (degree >= 2) {
    gx += c2[0] * y * gb[3] - 2.0f * c2[2] * x * gb[5] + c2[3] * z * gb[6] + 2.0f * c2[4] * x * gb[7];
    gy += c2[0] * x * gb[3] + c2[1] * z * gb[4] - 2.0f * c2[2] * y * gb[5] - 2.0f * c2[4] * y * gb[7];
    gz += c2[1] * y * gb[4] + 4.0f * c2[2] * z * gb[5] + c2[3] * x * gb[6];
    if (degree >= 3) {
      gx += c3[0] * 6.0f * xy * gb[8] + c3[1] * yz * gb[9] - c3[2] * 2.0f * xy * gb[10] - c3[3] * 6.0f * xz * gb[11] +
            c3[4] * (4.0f * zz - 3.0f * xx - yy) * gb[12] + c3[5] * 2.0f * xz * gb[13] +
            c3[6] * 3.0f * (xx - yy) * gb[14];
      gy += c3[0] * 3.0f * (xx - yy) * gb[8] + c3[1] * xz * gb[9] + c3[2] * (4.0f * zz - xx - 3.0f * yy) * gb[10] -
            c3[3] * 6.0f * yz * gb[11] - c3[4] * 2.0f * xy * gb[12] - c3[5] * 2.0f * yz * gb[13] -
            c3[6] * 6.0f * xy * gb[14];
      gz += c3[1] * xy * gb[9] + c3[2] * 8.0f * yz * gb[10] + c3[3] * (6.0f * zz - 3.0f * xx - 3.0f * yy) * gb[11] +
            c3[4] * 8.0f * xz * gb[12] + c3[5] * (xx - yy) * gb[13];
    }
  }
  // Through the normalisation d / max(|d|, 1e-12): the projection (I - u u^T) / |d|, or
  // a constant scale where the norm was clamped.
  if (norm > 1e-12f) {
    const float dot = x * gx + y * gy + z * gz;
    g_pos[0] += (gx - x * dot) * inv;
    g_pos[1] += (gy - y * dot) * inv;
    g_pos[2] += (gz - z * dot) * inv;
  } else {
    g_pos[0] += gx * inv;
    g_pos[1] += gy * inv;
    g_pos[2] += gz * inv;
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

// Layout of the gradient of one composited (pixel, Gaussian) pair, and of its sum over a
// Gaussian's pixels: dL/d of the Projected fields (mean, conic, opacity) and the colour.
enum : int { kGMeanX = 0, kGMeanY, kGConicA, kGConicB, kGConicC, kGOpacity, kGColor, kIsectFloats = kGColor + 3 };

// One composited pair of the forward blend, walked back to front (the INRIA/gsplat
// backward). `p` holds the Gaussian's mean, conic and (scaled) opacity, `col` its colour,
// `alpha` = min(0.99, opacity * G) and `t_before` the transmittance in front of it, `g`
// dL/d pixel colour. Adds the pair's gradient to out[kIsectFloats] and moves `behind`
// (the colour the pixel shows through this Gaussian, background included) in front of it.
FLEXGS_HD void BlendStepBackward(const Projected& p, const float* col, int px, int py, float alpha, float t_before,
                                 const float* g, float* behind, float* out) {
  // dC/dc_k = alpha_k T_k; dC/dalpha_k = T_k (c_k - behind_k), where behind_{k-1} =
  // alpha_k c_k + (1 - alpha_k) behind_k.
  const float weight = alpha * t_before;
  float g_alpha = 0.0f;
  for (int ch = 0; ch < 3; ++ch) {
    out[kGColor + ch] += weight * g[ch];
    g_alpha += (col[ch] - behind[ch]) * g[ch];
    behind[ch] = alpha * col[ch] + (1.0f - alpha) * behind[ch];
  }
  g_alpha *= t_before;
  // alpha = min(0.99, opacity * exp(power)): constant where clamped (alpha == 0.99
  // exactly iff opacity * exp(power) >= 0.99), otherwise alpha = opacity * G.
  if (!(alpha < kAlphaMax)) return;
  const float G = alpha / p.opacity;
  out[kGOpacity] += g_alpha * G;
  const float g_power = g_alpha * alpha;
  // power = -0.5 (a dx^2 + c dy^2) - b dx dy, dx = mean_x - (px + 0.5).
  const float dx = p.mean_x - (static_cast<float>(px) + 0.5f);
  const float dy = p.mean_y - (static_cast<float>(py) + 0.5f);
  out[kGMeanX] -= g_power * (p.conic_a * dx + p.conic_b * dy);
  out[kGMeanY] -= g_power * (p.conic_c * dy + p.conic_b * dx);
  out[kGConicA] -= 0.5f * g_power * dx * dx;
  out[kGConicB] -= g_power * dx * dy;
  out[kGConicC] -= 0.5f * g_power * dy * dy;
}

// Everything per Gaussian once its pairs are summed into `gs` (kIsectFloats values):
// colour (SH up to `sh_degree`, `k` rest coefficients per channel, `rest` null when k = 0),
// opacity = sigmoid(logit) * m, and projection. Writes dL/d sh_dc (3), sh_rest (3k) and
// the opacity logit, and dL/d m when `g_scale` is non-null; adds into g_pos, g_log_scale
// and g_quat. `rgb` is the forward colour.
FLEXGS_HD void GaussianBackward(const float* gs, const float* pos, const float* log_scale, const float* quat,
                                float opacity_logit, float m, const float* rest, int sh_degree, int k, const float* rgb,
                                const CameraParams& cam, float* g_pos, float* g_log_scale, float* g_quat,
                                float* g_logit, float* g_scale, float* g_dc, float* g_rest) {
  ShColorBackward(sh_degree, rest, k, pos[0] - cam.campos[0], pos[1] - cam.campos[1], pos[2] - cam.campos[2], rgb,
                  &gs[kGColor], g_dc, g_rest, g_pos);
  // opacity = sigmoid(logit) * m.
  const float sig = Sigmoid(opacity_logit);
  *g_logit = gs[kGOpacity] * m * sig * (1.0f - sig);
  if (g_scale != nullptr) *g_scale = gs[kGOpacity] * sig;
  ProjectBackward(pos, log_scale, quat, cam, &gs[kGMeanX], &gs[kGConicA], g_pos, g_log_scale, g_quat);
}

}  // namespace flexgs::raster

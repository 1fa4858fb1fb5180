#include "core/rasterizer_backward.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/tile_blend.h"

namespace flexgs {
namespace {

using raster::kTileSize;
constexpr int kTilePixels = kTileSize * kTileSize;

// Layout of one (Gaussian, tile) gradient cell: dL/d of the Projected fields and the colour.
enum : int { kGMeanX = 0, kGMeanY, kGConicA, kGConicB, kGConicC, kGOpacity, kGColor, kIsectFloats = kGColor + 3 };

// Records what BlendTile composites in tile (tx, ty), with the Gaussian's gradient cell for
// this tile: Gaussian i owns cells cell_offsets[i] + (row-major index of the tile in its
// TileRect), the tiles Prepare listed it in. Calls come grouped by Gaussian.
template <class Record>
struct RecordVisitor {
  const RasterFrame* frame;
  const uint32_t* cell_offsets;
  int tx, ty;
  std::vector<Record>* out;
  uint32_t last_id = ~0u, last_cell = 0;
  void Composite(int j, uint32_t id, float alpha, float t_before) {
    if (id != last_id) {
      int x0, y0, x1, y1;
      raster::TileRect(frame->projected[id], frame->tiles_x, frame->tiles_y, &x0, &y0, &x1, &y1);
      last_cell = cell_offsets[id] + static_cast<uint32_t>((ty - y0) * (x1 - x0) + (tx - x0));
      last_id = id;
    }
    out->push_back({id, last_cell, static_cast<uint32_t>(j), alpha, t_before});
  }
};

// Gradient of the view-dependent colour (raster::EvalShColor) for one Gaussian. `g_rgb`
// is dL/d(clamped colour) and `rgb` the forward colour (> 0 exactly where unclamped).
// Writes dL/d sh_dc (3), dL/d sh_rest (3*k, zero beyond the evaluated degree) and adds
// dL/d position through the normalised view direction.
void ShColorBackward(int degree, const float* rest, int k, float dx, float dy, float dz, const float* rgb,
                     const float* g_rgb, float* g_dc, float* g_rest, float* g_pos) {
  float g_v[3];
  for (int ch = 0; ch < 3; ++ch) {
    g_v[ch] = rgb[ch] > 0.0f ? g_rgb[ch] : 0.0f;  // v -> max(v, 0): no gradient where clamped
    g_dc[ch] = raster::kShC0 * g_v[ch];
  }
  if (degree < 1) return;
  const float norm = sqrtf(dx * dx + dy * dy + dz * dz);
  const float inv = 1.0f / fmaxf(norm, 1e-12f);
  const float x = dx * inv, y = dy * inv, z = dz * inv;
  const float* c2 = raster::kShC2;
  const float* c3 = raster::kShC3;
  const float C1 = raster::kShC1;
  float basis[15];
  int n = 3;
  basis[0] = -C1 * y;
  basis[1] = C1 * z;
  basis[2] = -C1 * x;
  const float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  if (degree >= 2) {
    basis[3] = c2[0] * xy;
    basis[4] = c2[1] * yz;
    basis[5] = c2[2] * (2.0f * zz - xx - yy);
    basis[6] = c2[3] * xz;
    basis[7] = c2[4] * (xx - yy);
    n = 8;
    if (degree >= 3) {
      basis[8] = c3[0] * y * (3.0f * xx - yy);
      basis[9] = c3[1] * xy * z;
      basis[10] = c3[2] * y * (4.0f * zz - xx - yy);
      basis[11] = c3[3] * z * (2.0f * zz - 3.0f * xx - 3.0f * yy);
      basis[12] = c3[4] * x * (4.0f * zz - xx - yy);
      basis[13] = c3[5] * z * (xx - yy);
      basis[14] = c3[6] * x * (xx - 3.0f * yy);
      n = 15;
    }
  }
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
      gx += c3[0] * 6.0f * xy * gb[8] + c3[1] * yz * gb[9] - c3[2] * 2.0f * xy * gb[10] -
            c3[3] * 6.0f * xz * gb[11] + c3[4] * (4.0f * zz - 3.0f * xx - yy) * gb[12] +
            c3[5] * 2.0f * xz * gb[13] + c3[6] * 3.0f * (xx - yy) * gb[14];
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

// Gradient of raster::ProjectGaussian's mean and conic for a Gaussian it kept. Recomputes
// the forward's intermediates with the same float expressions (so the Jacobian clamp
// decides the same way) and adds dL/d position, log-scale and raw quaternion.
void ProjectBackward(const float* pos, const float* log_scale, const float* quat, const raster::CameraParams& cam,
                     const float* g_mean, const float* g_conic, float* g_pos, float* g_log_scale, float* g_quat) {
  const float* R = cam.R;
  const float tx = R[0] * pos[0] + R[1] * pos[1] + R[2] * pos[2] + cam.t[0];
  const float ty = R[3] * pos[0] + R[4] * pos[1] + R[5] * pos[2] + cam.t[1];
  const float tz = R[6] * pos[0] + R[7] * pos[1] + R[8] * pos[2] + cam.t[2];
  const float qn = sqrtf(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
  const float w = quat[0] / qn, x = quat[1] / qn, y = quat[2] / qn, z = quat[3] / qn;
  const float Rq[9] = {1.f - 2.f * (y * y + z * z), 2.f * (x * y - w * z), 2.f * (x * z + w * y),
                       2.f * (x * y + w * z), 1.f - 2.f * (x * x + z * z), 2.f * (y * z - w * x),
                       2.f * (x * z - w * y), 2.f * (y * z + w * x), 1.f - 2.f * (x * x + y * y)};
  const float s[3] = {expf(log_scale[0]), expf(log_scale[1]), expf(log_scale[2])};
  float M[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) M[r * 3 + c] = Rq[r * 3 + c] * s[c];
  float Sig[9];  // full symmetric Sigma = M M^T
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      Sig[r * 3 + c] = M[r * 3] * M[c * 3] + M[r * 3 + 1] * M[c * 3 + 1] + M[r * 3 + 2] * M[c * 3 + 2];

  const float tan_fovx = 0.5f * cam.width / cam.fx;
  const float tan_fovy = 0.5f * cam.height / cam.fy;
  const float lim_x_pos = (cam.width - cam.cx) / cam.fx + raster::kFovGuard * tan_fovx;
  const float lim_x_neg = cam.cx / cam.fx + raster::kFovGuard * tan_fovx;
  const float lim_y_pos = (cam.height - cam.cy) / cam.fy + raster::kFovGuard * tan_fovy;
  const float lim_y_neg = cam.cy / cam.fy + raster::kFovGuard * tan_fovy;
  const float rz = 1.0f / tz;
  const float u = tx * rz, v = ty * rz;
  const float ucl = fminf(lim_x_pos, fmaxf(-lim_x_neg, u));
  const float vcl = fminf(lim_y_pos, fmaxf(-lim_y_neg, v));
  // Inside the guard band the clamp is the identity; outside it is constant in u.
  const bool x_free = u >= -lim_x_neg && u <= lim_x_pos;
  const bool y_free = v >= -lim_y_neg && v <= lim_y_pos;
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
  const float a = T0[0] * S0[0] + T0[1] * S0[1] + T0[2] * S0[2] + raster::kDilation;
  const float b = T0[0] * S1[0] + T0[1] * S1[1] + T0[2] * S1[2];
  const float c = T1[0] * S1[0] + T1[1] * S1[1] + T1[2] * S1[2] + raster::kDilation;
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

  // M = Rq diag(s), s = exp(log_scale).
  float gR[9];
  for (int q = 0; q < 3; ++q) {
    float gs = 0.0f;
    for (int r = 0; r < 3; ++r) {
      gR[r * 3 + q] = gM[r * 3 + q] * s[q];
      gs += gM[r * 3 + q] * Rq[r * 3 + q];
    }
    g_log_scale[q] += gs * s[q];
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

}  // namespace

void CloudGradients::ResizeLike(const GaussianCloud& cloud, bool with_opacity_scale) {
  const size_t n = cloud.size();
  positions.assign(n * 3, 0.0f);
  log_scales.assign(n * 3, 0.0f);
  rotations.assign(n * 4, 0.0f);
  opacity_logits.assign(n, 0.0f);
  sh_dc.assign(n * 3, 0.0f);
  sh_rest.assign(n * 3 * static_cast<size_t>(cloud.rest_coeffs()), 0.0f);
  opacity_scale.assign(with_opacity_scale ? n : 0, 0.0f);
  background = {0.0f, 0.0f, 0.0f};
}

DifferentiableRasterizer::DifferentiableRasterizer(int threads) : raster_(threads) {}

absl::StatusOr<RenderResult> DifferentiableRasterizer::Forward(const GaussianCloud& cloud, const Camera& camera,
                                                               const RenderOptions& options,
                                                               const ForwardInputs& inputs) {
  ready_ = false;
  cloud_ = nullptr;
  const absl::Span<const float> scale = inputs.opacity_scale;
  if (!scale.empty()) {
    if (scale.size() != cloud.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("opacity_scale has ", scale.size(), " values for ", cloud.size(), " Gaussians"));
    }
    for (size_t i = 0; i < scale.size(); ++i) {
      if (!(scale[i] >= 0.0f && scale[i] <= 1.0f)) {
        return absl::InvalidArgumentError(absl::StrCat("opacity_scale[", i, "] = ", scale[i], " is outside [0, 1]"));
      }
    }
  }
  FLEXGS_RETURN_IF_ERROR(raster_.Prepare(cloud, camera, options, frame_, scale));
  RenderResult result = raster_.Composite(frame_, options);
  cloud_ = &cloud;
  cloud_size_ = cloud.size();
  cloud_sh_degree_ = cloud.sh_degree;
  options_ = options;
  cam_ = ToCameraParams(camera, options.near_plane);
  opacity_scale_.assign(scale.begin(), scale.end());
  ready_ = true;
  return result;
}

absl::Status DifferentiableRasterizer::Backward(absl::Span<const float> grad_image, CloudGradients* grads) {
  if (!ready_) return absl::FailedPreconditionError("Backward needs a successful Forward first");
  if (grads == nullptr) return absl::InvalidArgumentError("grads must not be null");
  const RasterFrame& f = frame_;
  const size_t pixels = static_cast<size_t>(f.width) * f.height;
  if (grad_image.size() != pixels * 3) {
    return absl::InvalidArgumentError(absl::StrCat("grad_image has ", grad_image.size(),
                                                   " floats, expected width*height*3 = ", f.width, "*", f.height,
                                                   "*3 = ", pixels * 3));
  }
  const GaussianCloud& cloud = *cloud_;
  if (cloud.size() != cloud_size_ || cloud.sh_degree != cloud_sh_degree_) {
    return absl::FailedPreconditionError("the cloud changed between Forward and Backward");
  }
  const size_t n = cloud.size();
  const bool has_scale = !opacity_scale_.empty();
  grads->ResizeLike(cloud, has_scale);
  ThreadPool& pool = raster_.pool();
  const size_t tiles = static_cast<size_t>(f.tiles_x) * f.tiles_y;
  const float bg[3] = {options_.background[0], options_.background[1], options_.background[2]};
  records_.resize(pool.size());
  tile_background_.assign(tiles * 3, 0.0);
  // Cells of Gaussians that composite nothing in a tile are never written: start from 0.
  isect_grads_.resize(f.tile_ids.size() * kIsectFloats);
  constexpr size_t kZeroChunk = 1 << 16;
  pool.ParallelFor((isect_grads_.size() + kZeroChunk - 1) / kZeroChunk, 1, [&](size_t cb, size_t ce, int) {
    std::fill(isect_grads_.begin() + cb * kZeroChunk,
              isect_grads_.begin() + std::min(isect_grads_.size(), ce * kZeroChunk), 0.0f);
  });

  // Gaussian-major cells: Gaussian i owns one cell per tile of its rect (exactly the tiles
  // Prepare listed it in), so its gradients end up contiguous and in tile order.
  cell_offsets_.assign(n + 1, 0);
  pool.ParallelFor(n, 4096, [&](size_t ib, size_t ie, int) {
    for (size_t i = ib; i < ie; ++i) {
      if (!f.visible[i]) continue;
      int x0, y0, x1, y1;
      raster::TileRect(f.projected[i], f.tiles_x, f.tiles_y, &x0, &y0, &x1, &y1);
      cell_offsets_[i + 1] = static_cast<uint32_t>((x1 - x0) * (y1 - y0));
    }
  });
  for (size_t i = 0; i < n; ++i) cell_offsets_[i + 1] += cell_offsets_[i];
  if (cell_offsets_[n] != f.tile_ids.size()) return absl::InternalError("tile lists do not match the footprints");

  // Pass 1, per tile: replay the forward blend, then walk the contributions back to front.
  pool.ParallelFor(tiles, 1, [&](size_t tb, size_t te, int worker) {
    std::vector<Record>& rec = records_[worker];
    float T[kTilePixels];
    float behind[kTilePixels][3];  // colour seen behind the current Gaussian, background included
    for (size_t t = tb; t < te; ++t) {
      rec.clear();
      std::fill(T, T + kTilePixels, 1.0f);
      RecordVisitor<Record> visitor{&f, cell_offsets_.data(), static_cast<int>(t % f.tiles_x),
                                    static_cast<int>(t / f.tiles_x), &rec};
      BlendTile(f, t, T, visitor);
      const TileBounds bounds = TileBoundsOf(f, t);
      // Background: C = sum_k c_k alpha_k T_k + T_final * bg.
      double* tbg = &tile_background_[t * 3];
      for (int y = 0; y < bounds.h; ++y) {
        for (int x = 0; x < bounds.w; ++x) {
          const int j = y * kTileSize + x;
          const float* g = &grad_image[(static_cast<size_t>(bounds.y0 + y) * f.width + bounds.x0 + x) * 3];
          for (int ch = 0; ch < 3; ++ch) {
            tbg[ch] += static_cast<double>(g[ch]) * T[j];
            behind[j][ch] = bg[ch];
          }
        }
      }
      for (size_t r = rec.size(); r-- > 0;) {
        const Record& e = rec[r];
        const raster::Projected& p = f.projected[e.id];
        const float* col = &f.colors[static_cast<size_t>(e.id) * 3];
        const int px = bounds.x0 + static_cast<int>(e.pixel % kTileSize);
        const int py = bounds.y0 + static_cast<int>(e.pixel / kTileSize);
        const float* g = &grad_image[(static_cast<size_t>(py) * f.width + px) * 3];
        float* out = &isect_grads_[static_cast<size_t>(e.cell) * kIsectFloats];
        float* bh = behind[e.pixel];
        // dC/dc_k = alpha_k T_k; dC/dalpha_k = T_k (c_k - behind_k), where behind_k is what
        // the pixel shows through Gaussian k: behind_{k-1} = alpha_k c_k + (1 - alpha_k) behind_k.
        const float weight = e.alpha * e.t_before;
        float g_alpha = 0.0f;
        for (int ch = 0; ch < 3; ++ch) {
          out[kGColor + ch] += weight * g[ch];
          g_alpha += (col[ch] - bh[ch]) * g[ch];
          bh[ch] = e.alpha * col[ch] + (1.0f - e.alpha) * bh[ch];
        }
        g_alpha *= e.t_before;
        // alpha = min(0.99, opacity * exp(power)): constant where clamped (alpha == 0.99
        // exactly iff opacity * exp(power) >= 0.99), otherwise alpha = opacity * G.
        if (!(e.alpha < raster::kAlphaMax)) continue;
        const float G = e.alpha / p.opacity;
        out[kGOpacity] += g_alpha * G;
        const float g_power = g_alpha * e.alpha;
        // power = -0.5 (a dx^2 + c dy^2) - b dx dy, dx = mean_x - (px + 0.5).
        const float dx = p.mean_x - (static_cast<float>(px) + 0.5f);
        const float dy = p.mean_y - (static_cast<float>(py) + 0.5f);
        out[kGMeanX] -= g_power * (p.conic_a * dx + p.conic_b * dy);
        out[kGMeanY] -= g_power * (p.conic_c * dy + p.conic_b * dx);
        out[kGConicA] -= 0.5f * g_power * dx * dx;
        out[kGConicB] -= g_power * dx * dy;
        out[kGConicC] -= 0.5f * g_power * dy * dy;
      }
    }
  });
  double bg_sum[3] = {0.0, 0.0, 0.0};
  for (size_t t = 0; t < tiles; ++t)
    for (int ch = 0; ch < 3; ++ch) bg_sum[ch] += tile_background_[t * 3 + ch];
  for (int ch = 0; ch < 3; ++ch) grads->background[ch] = static_cast<float>(bg_sum[ch]);

  // Pass 2, per Gaussian: sum its cells in tile order, then back through colour, opacity
  // and projection.
  const int sh_degree = std::max(0, std::min(options_.max_sh_degree, cloud.sh_degree));
  const int k = cloud.rest_coeffs();
  pool.ParallelFor(n, 1024, [&](size_t ib, size_t ie, int) {
    for (size_t i = ib; i < ie; ++i) {
      if (!f.visible[i]) continue;
      double sum[kIsectFloats] = {};
      for (uint32_t c = cell_offsets_[i]; c < cell_offsets_[i + 1]; ++c) {
        const float* g = &isect_grads_[static_cast<size_t>(c) * kIsectFloats];
        for (int q = 0; q < kIsectFloats; ++q) sum[q] += g[q];
      }
      float gs[kIsectFloats];
      for (int q = 0; q < kIsectFloats; ++q) gs[q] = static_cast<float>(sum[q]);

      float* g_pos = &grads->positions[i * 3];
      const float* pos = &cloud.positions[i * 3];
      ShColorBackward(sh_degree, k > 0 ? &cloud.sh_rest[i * 3 * k] : nullptr, k, pos[0] - cam_.campos[0],
                      pos[1] - cam_.campos[1], pos[2] - cam_.campos[2], &f.colors[i * 3], &gs[kGColor],
                      &grads->sh_dc[i * 3], k > 0 ? &grads->sh_rest[i * 3 * k] : nullptr, g_pos);
      // opacity = sigmoid(logit) * m.
      const float sig = raster::Sigmoid(cloud.opacity_logits[i]);
      const float m = has_scale ? opacity_scale_[i] : 1.0f;
      grads->opacity_logits[i] = gs[kGOpacity] * m * sig * (1.0f - sig);
      if (has_scale) grads->opacity_scale[i] = gs[kGOpacity] * sig;
      ProjectBackward(pos, &cloud.log_scales[i * 3], &cloud.rotations[i * 4], cam_, &gs[kGMeanX], &gs[kGConicA],
                      g_pos, &grads->log_scales[i * 3], &grads->rotations[i * 4]);
    }
  });
  return absl::OkStatus();
}

}  // namespace flexgs

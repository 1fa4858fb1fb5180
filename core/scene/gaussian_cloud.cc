#include "scene/gaussian_cloud.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flexgs {

void GaussianCloud::Resize(size_t n) {
  const size_t k = static_cast<size_t>(rest_coeffs());
  positions.resize(n * 3);
  log_scales.resize(n * 3);
  rotations.resize(n * 4);
  opacity_logits.resize(n);
  sh_dc.resize(n * 3);
  sh_rest.resize(n * 3 * k);
}

absl::Status GaussianCloud::Validate() const {
  if (sh_degree < 0 || sh_degree > kMaxShDegree) {
    return absl::InvalidArgumentError(absl::StrCat("SH degree ", sh_degree, " outside 0..3"));
  }
  const size_t n = size();
  const size_t k = static_cast<size_t>(rest_coeffs());
  auto check = [&](const std::vector<float>& v, size_t per, const char* name) -> absl::Status {
    if (v.size() != n * per) {
      return absl::InvalidArgumentError(
          absl::StrCat("attribute '", name, "' has ", v.size(), " values, expected ", n * per));
    }
    return absl::OkStatus();
  };
  for (auto s : {check(positions, 3, "position"), check(log_scales, 3, "log_scale"), check(rotations, 4, "rotation"),
                 check(sh_dc, 3, "sh_dc"), check(sh_rest, 3 * k, "sh_rest")}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

GaussianCloud GaussianCloud::Gather(absl::Span<const uint32_t> indices) const {
  GaussianCloud out;
  out.sh_degree = sh_degree;
  out.Resize(indices.size());
  const size_t k3 = static_cast<size_t>(rest_coeffs()) * 3;
  for (size_t o = 0; o < indices.size(); ++o) {
    const size_t i = indices[o];
    for (int d = 0; d < 3; ++d) {
      out.positions[o * 3 + d] = positions[i * 3 + d];
      out.log_scales[o * 3 + d] = log_scales[i * 3 + d];
      out.sh_dc[o * 3 + d] = sh_dc[i * 3 + d];
    }
    for (int d = 0; d < 4; ++d) out.rotations[o * 4 + d] = rotations[i * 4 + d];
    out.opacity_logits[o] = opacity_logits[i];
    for (size_t d = 0; d < k3; ++d) out.sh_rest[o * k3 + d] = sh_rest[i * k3 + d];
  }
  return out;
}

void GaussianCloud::Scatter(absl::Span<const uint32_t> indices, const GaussianCloud& values) {
  const size_t k3 = static_cast<size_t>(rest_coeffs()) * 3;
  for (size_t o = 0; o < indices.size(); ++o) {
    const size_t i = indices[o];
    for (int d = 0; d < 3; ++d) {
      positions[i * 3 + d] = values.positions[o * 3 + d];
      log_scales[i * 3 + d] = values.log_scales[o * 3 + d];
      sh_dc[i * 3 + d] = values.sh_dc[o * 3 + d];
    }
    for (int d = 0; d < 4; ++d) rotations[i * 4 + d] = values.rotations[o * 4 + d];
    opacity_logits[i] = values.opacity_logits[o];
    for (size_t d = 0; d < k3; ++d) sh_rest[i * k3 + d] = values.sh_rest[o * k3 + d];
  }
}

void GaussianCloud::Append(const GaussianCloud& other) {
  for (auto [dst, src] : {std::pair{&positions, &other.positions}, std::pair{&log_scales, &other.log_scales},
                          std::pair{&rotations, &other.rotations}, std::pair{&opacity_logits, &other.opacity_logits},
                          std::pair{&sh_dc, &other.sh_dc}, std::pair{&sh_rest, &other.sh_rest}}) {
    dst->insert(dst->end(), src->begin(), src->end());
  }
}

GaussianCloud GaussianCloud::WithShDegree(int degree) const {
  if (degree >= sh_degree) return *this;
  GaussianCloud out = *this;
  out.sh_degree = degree < 0 ? 0 : degree;
  const size_t n = size();
  const size_t k_old = static_cast<size_t>(rest_coeffs());
  const size_t k_new = static_cast<size_t>(out.rest_coeffs());
  out.sh_rest.assign(n * 3 * k_new, 0.0f);
  for (size_t i = 0; i < n; ++i)
    for (size_t c = 0; c < 3; ++c)
      for (size_t j = 0; j < k_new; ++j)
        out.sh_rest[i * 3 * k_new + c * k_new + j] = sh_rest[i * 3 * k_old + c * k_old + j];
  return out;
}

size_t GaussianCloud::ByteSize() const {
  return sizeof(float) * (positions.size() + log_scales.size() + rotations.size() + opacity_logits.size() +
                          sh_dc.size() + sh_rest.size());
}

namespace {

// True when every attribute of Gaussian i except the opacity logit is finite (an
// infinite logit is repairable by clamping; NaN anywhere is not).
bool FiniteExceptOpacity(const GaussianCloud& cloud, size_t i) {
  const size_t k3 = static_cast<size_t>(cloud.rest_coeffs()) * 3;
  auto finite = [](const float* p, size_t count) {
    for (size_t j = 0; j < count; ++j)
      if (!std::isfinite(p[j])) return false;
    return true;
  };
  return !std::isnan(cloud.opacity_logits[i]) && finite(&cloud.positions[i * 3], 3) &&
         finite(&cloud.log_scales[i * 3], 3) && finite(&cloud.rotations[i * 4], 4) && finite(&cloud.sh_dc[i * 3], 3) &&
         finite(cloud.sh_rest.data() + i * k3, k3);
}

}  // namespace

NonFiniteReport CountNonFinite(const GaussianCloud& cloud) {
  NonFiniteReport report;
  for (size_t i = 0; i < cloud.size(); ++i) {
    if (std::isinf(cloud.opacity_logits[i])) ++report.opacity_clamped;
    if (!FiniteExceptOpacity(cloud, i)) ++report.dropped;
  }
  return report;
}

NonFiniteReport SanitizeNonFinite(GaussianCloud& cloud) {
  const NonFiniteReport report = CountNonFinite(cloud);
  if (report.total() == 0) return report;
  std::vector<uint32_t> keep;
  keep.reserve(cloud.size());
  for (size_t i = 0; i < cloud.size(); ++i) {
    float& op = cloud.opacity_logits[i];
    if (std::isinf(op)) op = op > 0 ? kOpacityLogitLimit : -kOpacityLogitLimit;
    if (FiniteExceptOpacity(cloud, i)) keep.push_back(static_cast<uint32_t>(i));
  }
  if (keep.size() != cloud.size()) cloud = cloud.Gather(keep);
  return report;
}

}  // namespace flexgs

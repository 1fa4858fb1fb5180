#include "train/level_refiner.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "scene/orbit.h"
#include "train/adam.h"
#include "train/image_loss.h"

namespace flexgs {

namespace {

// Copies Gaussian `from_i` of `from` into Gaussian `to_i` of `to` (same SH degree).
void CopyGaussian(const GaussianCloud& from, size_t from_i, GaussianCloud& to, size_t to_i) {
  auto copy = [&](const std::vector<float>& src, std::vector<float>& dst, size_t stride) {
    std::copy_n(src.begin() + from_i * stride, stride, dst.begin() + to_i * stride);
  };
  copy(from.positions, to.positions, 3);
  copy(from.log_scales, to.log_scales, 3);
  copy(from.rotations, to.rotations, 4);
  copy(from.opacity_logits, to.opacity_logits, 1);
  copy(from.sh_dc, to.sh_dc, 3);
  const size_t rest = from.size() ? from.sh_rest.size() / from.size() : 0;
  if (rest > 0) copy(from.sh_rest, to.sh_rest, rest);
}

// Zeroes the gradients of every Gaussian not being trained.
void MaskGradients(const std::vector<uint8_t>& trained, CloudGradients& g) {
  const size_t n = trained.size();
  const size_t rest = n ? g.sh_rest.size() / n : 0;
  for (size_t i = 0; i < n; ++i) {
    if (trained[i]) continue;
    std::fill_n(g.positions.begin() + 3 * i, 3, 0.0f);
    std::fill_n(g.log_scales.begin() + 3 * i, 3, 0.0f);
    std::fill_n(g.rotations.begin() + 4 * i, 4, 0.0f);
    g.opacity_logits[i] = 0.0f;
    std::fill_n(g.sh_dc.begin() + 3 * i, 3, 0.0f);
    if (rest > 0) std::fill_n(g.sh_rest.begin() + rest * i, rest, 0.0f);
  }
}

// How much the merge changed earlier Gaussian j from what the client holds: its centre's
// shift in units of its largest axis, plus the log change of its opacity x volume, plus
// the change of its base colour. Finite for finite attributes.
double MergeChange(const GaussianCloud& now, const GaussianCloud& held, size_t j) {
  double shift = 0, largest = 0, log_volume = 0, colour = 0;
  for (int a = 0; a < 3; ++a) {
    const double d = now.positions[3 * j + a] - held.positions[3 * j + a];
    shift += d * d;
    largest = std::max(largest, std::exp(static_cast<double>(held.log_scales[3 * j + a])));
    log_volume += now.log_scales[3 * j + a] - held.log_scales[3 * j + a];
    const double c = now.sh_dc[3 * j + a] - held.sh_dc[3 * j + a];
    colour += c * c;
  }
  // log sigmoid(x), without underflow for very negative logits.
  auto log_sigmoid = [](double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); };
  const double ink = log_sigmoid(now.opacity_logits[j]) - log_sigmoid(held.opacity_logits[j]) + log_volume;
  return std::sqrt(shift) / std::max(largest, 1e-12) + std::abs(ink) + std::sqrt(colour);
}

// The replacements of `rung` that are trained (and so re-sent): the `share` of them
// whose merge changed most, ties to the lower index.
std::vector<uint32_t> TrainedReplacements(const MergedRung& rung, const GaussianCloud& held, double share) {
  std::vector<uint32_t> chosen = rung.replaced;
  const size_t keep = static_cast<size_t>(std::ceil(share * static_cast<double>(chosen.size()) - 1e-9));
  if (keep >= chosen.size()) return chosen;
  std::vector<std::pair<double, uint32_t>> by_change;
  for (uint32_t j : chosen) by_change.push_back({-MergeChange(rung.merged, held, j), j});
  std::sort(by_change.begin(), by_change.end());
  chosen.clear();
  for (size_t i = 0; i < keep; ++i) chosen.push_back(by_change[i].second);
  return chosen;
}

// The rung's held Gaussians in ascending model-index order, as RefinedRung stores them.
RefinedRung ToRefinedRung(double ratio, const std::vector<uint32_t>& held, const GaussianCloud& cloud) {
  const HeldOrder h = OrderHeld(held);
  return RefinedRung{ratio, h.digest, cloud.Gather(h.order)};
}

}  // namespace

absl::Status LevelRefineOptions::Validate() const {
  if (iterations < 1 || iterations > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat("refine iterations ", iterations, " is outside [1, 1000000]"));
  }
  if (teacher_views < 1 || teacher_views > 100000) {
    return absl::InvalidArgumentError(absl::StrCat("refine views ", teacher_views, " is outside [1, 100000]"));
  }
  if (!(replacement_share >= 0.0 && replacement_share <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("replacement share ", replacement_share, " is outside [0, 1]"));
  }
  if (absl::Status s = views.Validate(); !s.ok()) return s;
  const uint64_t image_bytes = uint64_t{3} * sizeof(float) * static_cast<uint64_t>(views.width) * views.height;
  if (static_cast<uint64_t>(teacher_views) * image_bytes > kMaxTeacherBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        teacher_views, " refine views of ", views.width, "x", views.height, " need ", teacher_views * image_bytes >> 20,
        " MiB of teacher images, more than the ", kMaxTeacherBytes >> 20, " MiB allowed; use fewer or smaller views"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RefinedRung>> RefineRungs(const GaussianCloud& input, const std::vector<MergedRung>& rungs,
                                                     const LevelRefineOptions& options, RasterBackend& teacher,
                                                     DifferentiableRasterBackend& student, ThreadPool* pool,
                                                     const std::function<void(const RungReport&)>& progress) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (input.empty()) return absl::InvalidArgumentError("refine: the input has no Gaussians");
  for (size_t k = 0; k < rungs.size(); ++k) {
    const MergedRung& r = rungs[k];
    const std::string what = absl::StrCat("refine: rung ", k, " (ratio ", r.ratio, ")");
    if (r.held.empty() || r.merged.size() != r.held.size() || r.merged.sh_degree != input.sh_degree) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", r.held.size(), " indices for ", r.merged.size(),
                                                     " Gaussians of SH degree ", r.merged.sh_degree));
    }
    if (absl::Status s = r.merged.Validate(); !s.ok()) return s;
    const size_t before = k ? rungs[k - 1].held.size() : 0;
    if (r.held.size() <= before) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": holds ", r.held.size(), " Gaussians, no more than the rung before it (", before, ")"));
    }
    if (k > 0 && !std::equal(rungs[k - 1].held.begin(), rungs[k - 1].held.end(), r.held.begin())) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": does not extend the rung before it"));
    }
    for (uint32_t id : r.held) {
      if (id >= input.size()) return absl::InvalidArgumentError(absl::StrCat(what, ": index ", id, " out of range"));
    }
    for (uint32_t j : r.replaced) {
      if (j >= before) return absl::InvalidArgumentError(absl::StrCat(what, ": replaces ", j, ", not held before"));
    }
  }

  // The teacher: the input rendered once from each view.
  const SceneBounds bounds = RobustBounds(input);
  const std::vector<Camera> cameras = SampleViews(bounds, options.views, options.seed, options.teacher_views);
  RenderOptions render;
  render.background = options.background;
  std::vector<Image> targets;
  targets.reserve(cameras.size());
  for (const Camera& camera : cameras) {
    absl::StatusOr<RenderResult> r = teacher.Render(input, camera, render);
    if (!r.ok()) return r.status();
    targets.push_back(std::move(r->color));
  }

  const double radius = std::max(bounds.radius(), 1e-6);
  const int iters = options.iterations;
  std::vector<RefinedRung> out;
  GaussianCloud held_before;  // what the client holds after the previous rung, refined
  held_before.sh_degree = input.sh_degree;
  for (size_t k = 0; k < rungs.size(); ++k) {
    const MergedRung& rung = rungs[k];
    GaussianCloud cloud = rung.merged;
    const size_t before = held_before.size();
    std::vector<uint8_t> trained(cloud.size(), 0);
    std::fill(trained.begin() + before, trained.end(), 1);
    for (uint32_t j : TrainedReplacements(rung, held_before, options.replacement_share)) trained[j] = 1;
    for (size_t i = 0; i < before; ++i) {
      if (!trained[i]) CopyGaussian(held_before, i, cloud, i);
    }

    // 3DGS's rates; positions in scene units, decaying 100x over the rung's steps.
    Adam adam;
    const size_t n = cloud.size();
    struct Group {
      const char* name;
      LrSchedule lr;
      std::vector<float>* param;
      std::vector<float> CloudGradients::*grad;
    };
    std::vector<Group> groups = {
        {"position", LrSchedule::Exponential(1.6e-4 * radius, 1.6e-6 * radius, iters), &cloud.positions,
         &CloudGradients::positions},
        {"log_scale", LrSchedule::Constant(5e-3), &cloud.log_scales, &CloudGradients::log_scales},
        {"rotation", LrSchedule::Constant(1e-3), &cloud.rotations, &CloudGradients::rotations},
        {"opacity", LrSchedule::Constant(2.5e-2), &cloud.opacity_logits, &CloudGradients::opacity_logits},
        {"f_dc", LrSchedule::Constant(2.5e-3), &cloud.sh_dc, &CloudGradients::sh_dc},
    };
    if (cloud.sh_degree > 0) {
      groups.push_back({"f_rest", LrSchedule::Constant(2.5e-3 / 20), &cloud.sh_rest, &CloudGradients::sh_rest});
    }
    for (const Group& g : groups) {
      if (absl::Status s = adam.AddGroup(g.name, g.lr); !s.ok()) return s;
      if (absl::Status s = adam.AddParameter(g.name, g.name, g.param->size()); !s.ok()) return s;
    }

    RungReport report;
    report.ratio = rung.ratio;
    report.held = n;
    report.optimized = static_cast<size_t>(std::count(trained.begin(), trained.end(), 1));
    const int window = std::max(1, iters / 10);
    CloudGradients grads;
    for (int it = 0; it < iters; ++it) {
      const size_t v = static_cast<size_t>(it) % cameras.size();
      absl::StatusOr<RenderResult> fwd = student.Forward(cloud, cameras[v], render, {});
      if (!fwd.ok()) return fwd.status();
      absl::StatusOr<ImageLossResult> loss = ImageLoss(fwd->color, targets[v], ImageLossWeights{0.8, 0.2}, pool);
      if (!loss.ok()) return loss.status();
      if (it < window) report.first_loss += loss->value / window;
      if (it >= iters - window) report.last_loss += loss->value / window;
      if (absl::Status s = student.Backward(loss->grad, &grads); !s.ok()) return s;
      MaskGradients(trained, grads);
      for (const Group& g : groups) {
        absl::Status s = adam.Step(g.name, absl::MakeSpan(*g.param), grads.*(g.grad), it, pool);
        if (!s.ok()) return s;
      }
    }
    // A trained replacement whose change the stream would not send stays what the client
    // holds, so that the stored rung is the client's state and the next rung starts there.
    if (options.visible) {
      for (size_t j = 0; j < before; ++j) {
        if (trained[j] && !options.visible(cloud, j, held_before, j)) {
          CopyGaussian(held_before, j, cloud, j);
          --report.optimized;
        }
      }
    }
    out.push_back(ToRefinedRung(rung.ratio, rung.held, cloud));
    held_before = std::move(cloud);
    if (progress) progress(report);
  }
  return out;
}

}  // namespace flexgs

#include "train/elastic_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "base/byte_io.h"
#include "base/crc32c.h"
#include "base/file_io.h"
#include "base/random.h"
#include "base/status_macros.h"
#include "elastic/elastic_selection.h"
#include "render/global_importance.h"
#include "render/image_metrics.h"
#include "scene/orbit.h"
#include "train/gsnet_backward.h"
#include "train/image_loss.h"

namespace flexgs {
namespace {

constexpr char kCheckpointMagic[16] = {'F', 'L', 'E', 'X', 'G', 'S', '-', 'T', 'R', 'A', 'I', 'N', '-', 'C', 'K', '1'};
constexpr uint64_t kViewSalt = 0x5851F42D4C957F2Dull;  // separates the view stream from the Gumbel stream
constexpr double kNetworkHalfExtent = 2.0;             // see the network rates in Init()

// A well-mixed 64-bit key for (seed, iteration): the per-iteration randomness is a pure
// function of it, which is what makes resume bit-identical without saving RNG state.
uint64_t IterationKey(uint64_t seed, int64_t it) {
  SplitMix64 a(seed);
  SplitMix64 b(a.Next() ^ static_cast<uint64_t>(it));
  return b.Next();
}

// Parameter tensors of the networks, visited in a fixed order with their gradient
// twins. W is GsNetWeights or TransformFieldWeights, possibly const.
template <class W, class F>
void ForEachGsNetTensor(W& p, W& g, F&& f) {
  for (int b = 0; b < 4; ++b) {
    const std::string br = GsNetWeights::kBranchNames[b];
    f("gumbel", "gsnet.fc1." + br + ".weight", p.fc1[b].weight, g.fc1[b].weight);
    f("gumbel", "gsnet.fc1." + br + ".bias", p.fc1[b].bias, g.fc1[b].bias);
    f("gumbel", "gsnet.fc2." + br + ".weight", p.fc2[b].weight, g.fc2[b].weight);
    f("gumbel", "gsnet.fc2." + br + ".bias", p.fc2[b].bias, g.fc2[b].bias);
  }
  f("gumbel", std::string("gsnet.head.weight"), p.head.weight, g.head.weight);
  f("gumbel", std::string("gsnet.head.bias"), p.head.bias, g.head.bias);
}

template <class W, class F>
void ForEachFieldTensor(W& p, W& g, F&& f) {
  for (size_t l = 0; l < p.levels.size(); ++l) {
    for (int k = 0; k < 6; ++k) {
      f("grid", absl::StrCat("field.level", l, ".", kPlaneNames[k]), p.levels[l].planes[k], g.levels[l].planes[k]);
    }
  }
  f("deformation", std::string("field.trunk.weight"), p.trunk.weight, g.trunk.weight);
  f("deformation", std::string("field.trunk.bias"), p.trunk.bias, g.trunk.bias);
  for (int h = 0; h < 3; ++h) {
    const std::string head = TransformFieldWeights::kHeadNames[h];
    f("deformation", "field." + head + ".fc1.weight", p.fc1[h].weight, g.fc1[h].weight);
    f("deformation", "field." + head + ".fc1.bias", p.fc1[h].bias, g.fc1[h].bias);
    // The position head's output is a world-space offset: its rate follows the scene's size.
    const char* out_group = h == 0 ? "deformation_world" : "deformation";
    f(out_group, "field." + head + ".fc2.weight", p.fc2[h].weight, g.fc2[h].weight);
    f(out_group, "field." + head + ".fc2.bias", p.fc2[h].bias, g.fc2[h].bias);
  }
}

template <class C, class F>
void ForEachCloudTensor(C& p, C& g, F&& f) {
  f("xyz", std::string("cloud.positions"), p.positions, g.positions);
  f("scaling", std::string("cloud.log_scales"), p.log_scales, g.log_scales);
  f("rotation", std::string("cloud.rotations"), p.rotations, g.rotations);
  f("opacity", std::string("cloud.opacity_logits"), p.opacity_logits, g.opacity_logits);
  f("f_dc", std::string("cloud.sh_dc"), p.sh_dc, g.sh_dc);
  f("f_rest", std::string("cloud.sh_rest"), p.sh_rest, g.sh_rest);
}

std::vector<Camera> CamerasOf(const std::vector<TrainingView>& views) {
  std::vector<Camera> cams;
  cams.reserve(views.size());
  for (const TrainingView& v : views) cams.push_back(v.camera);
  return cams;
}

}  // namespace

absl::Status TrainOptions::Validate() const {
  if (iters < 1) return absl::InvalidArgumentError(absl::StrCat("iterations must be >= 1, got ", iters));
  if (ladder.empty()) return absl::InvalidArgumentError("the ratio ladder is empty");
  for (double e : ladder) {
    if (!(e > 0.0 && e <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("ladder ratio ", e, " is not in (0, 1]"));
    }
  }
  if (width < 1 || height < 1 || width > 32768 || height > 32768) {
    return absl::InvalidArgumentError(absl::StrFormat("render size %dx%d is not in [1, 32768]", width, height));
  }
  if (orbit_views < 1) return absl::InvalidArgumentError(absl::StrCat("orbit views must be >= 1, got ", orbit_views));
  if (gi_every < 1) return absl::InvalidArgumentError(absl::StrCat("gi_every must be >= 1, got ", gi_every));
  if (checkpoint_every < 0) return absl::InvalidArgumentError("checkpoint_every must be >= 0");
  if (threads < 0) return absl::InvalidArgumentError(absl::StrCat("threads must be >= 0, got ", threads));
  if (nested && reference_selection) {
    return absl::InvalidArgumentError(
        "nested training needs the served selection (not the reference's Gumbel sampling)");
  }
  if (pose_at_insertion && !nested) {
    return absl::InvalidArgumentError("poses fixed at insertion need nested training (--nested)");
  }
  if (!(near_view_jitter >= 0.0 && near_view_jitter <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("near-view jitter must be in [0, 1], got ", near_view_jitter));
  }
  if (near_view_jitter > 0.0 && view_sampling.has_value()) {
    return absl::InvalidArgumentError("views near the targets replace sampled views: use one or the other");
  }
  if (view_sampling.has_value()) FLEXGS_RETURN_IF_ERROR(view_sampling->Validate());
  if (!(coverage_share >= 0.0 && coverage_share <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("coverage share ", coverage_share, " is not in [0, 1]"));
  }
  if (coverage_share > 0.0 && reference_selection) {
    return absl::InvalidArgumentError("a coverage share needs the served selection");
  }
  if (!(gi_prior_weight >= 0.0 && gi_prior_weight <= 100.0)) {
    return absl::InvalidArgumentError(absl::StrCat("gi_prior_weight ", gi_prior_weight, " is not in [0, 100]"));
  }
  if (!(tau > 0.0) || !std::isfinite(tau)) return absl::InvalidArgumentError("Gumbel tau must be finite and > 0");
  if (!(spatial_lr_scale >= 0.0) || !std::isfinite(spatial_lr_scale)) {
    return absl::InvalidArgumentError("spatial_lr_scale must be finite and >= 0");
  }
  for (float c : background) {
    if (!std::isfinite(c)) return absl::InvalidArgumentError("background colour is not finite");
  }
  return field_config.Validate();
}

absl::StatusOr<std::vector<TrainingView>> MakeOrbitTargets(const GaussianCloud& cloud, const TrainOptions& options,
                                                           double azimuth_offset_deg) {
  FLEXGS_RETURN_IF_ERROR(options.Validate());
  if (cloud.empty()) return absl::InvalidArgumentError("the scene has no Gaussians");
  OrbitOptions orbit;
  orbit.count = options.orbit_views;
  orbit.width = options.width;
  orbit.height = options.height;
  orbit.azimuth_offset_deg = azimuth_offset_deg;
  FLEXGS_ASSIGN_OR_RETURN(std::vector<Camera> cams, MakeOrbitCameras(cloud, orbit));
  return RenderTargets(cloud, std::move(cams), options);
}

absl::StatusOr<std::vector<TrainingView>> RenderTargets(const GaussianCloud& cloud, std::vector<Camera> cams,
                                                        const TrainOptions& options) {
  FLEXGS_RETURN_IF_ERROR(options.Validate());
  if (cloud.empty()) return absl::InvalidArgumentError("the scene has no Gaussians");
  if (cams.empty()) return absl::InvalidArgumentError("no cameras to render targets from");
  CpuRasterizer raster(options.threads);
  RenderOptions ro;
  ro.background = options.background;
  ro.want_aux = false;
  std::vector<TrainingView> views;
  views.reserve(cams.size());
  for (Camera& cam : cams) {
    FLEXGS_ASSIGN_OR_RETURN(RenderResult r, raster.Render(cloud, cam, ro));
    views.push_back({std::move(cam), std::move(r.color)});
  }
  return views;
}

absl::StatusOr<ElasticModel> InitialElasticModel(const GaussianCloud& cloud, const std::vector<TrainingView>& targets,
                                                 const TrainOptions& options) {
  FLEXGS_RETURN_IF_ERROR(options.Validate());
  FLEXGS_RETURN_IF_ERROR(cloud.Validate());
  if (cloud.empty()) return absl::InvalidArgumentError("the scene has no Gaussians");
  if (targets.empty()) return absl::InvalidArgumentError("no training views");
  ElasticModel model;
  model.gaussians = cloud;
  CpuRasterizer raster(options.threads);
  FLEXGS_ASSIGN_OR_RETURN(model.global_importance, ComputeGlobalImportance(cloud, CamerasOf(targets), {}, raster));
  model.gi = {"flexgs", static_cast<int>(targets.size()), targets[0].camera.width, targets[0].camera.height};
  model.gsnet = GsNetWeights::Init(options.seed);
  model.gi_prior_weight = options.reference_selection ? 0.0 : options.gi_prior_weight;
  if (model.gi_prior_weight > 0.0) {
    // GsNet learns a correction to the GI ranking: start from none.
    std::fill(model.gsnet->head.weight.begin(), model.gsnet->head.weight.end(), 0.0f);
    std::fill(model.gsnet->head.bias.begin(), model.gsnet->head.bias.end(), 0.0f);
  }
  model.field = TransformFieldWeights::Init(options.field_config, options.seed);
  model.pose_at_insertion = options.pose_at_insertion;
  model.coverage_share = options.coverage_share;
  model.gsnet_box_inputs = options.gsnet_box_inputs;
  model.normalization = ExtentNormalization(cloud);
  std::vector<double> ladder = options.ladder;
  std::sort(ladder.begin(), ladder.end());
  ladder.erase(std::unique(ladder.begin(), ladder.end()), ladder.end());
  model.ladder = ladder;
  return model;
}

ElasticTrainer::ElasticTrainer(const TrainOptions& options)
    : options_(options), pool_(options.threads), gi_raster_(options.threads) {}

absl::StatusOr<std::unique_ptr<ElasticTrainer>> ElasticTrainer::Create(ElasticModel initial,
                                                                       std::vector<TrainingView> targets,
                                                                       const TrainOptions& options) {
  FLEXGS_RETURN_IF_ERROR(options.Validate());
  FLEXGS_RETURN_IF_ERROR(initial.gaussians.Validate());
  if (initial.gaussians.empty()) return absl::InvalidArgumentError("the scene has no Gaussians");
  if (targets.empty()) return absl::InvalidArgumentError("no training views");
  for (size_t v = 0; v < targets.size(); ++v) {
    const TrainingView& t = targets[v];
    FLEXGS_RETURN_IF_ERROR(t.camera.Validate());
    if (t.target.width != t.camera.width || t.target.height != t.camera.height || t.target.channels != 3 ||
        t.target.pixels.size() != static_cast<size_t>(t.target.width) * t.target.height * 3) {
      return absl::InvalidArgumentError(
          absl::StrFormat("training view %d: target image is not %dx%d RGB", v, t.camera.width, t.camera.height));
    }
  }
  if (!initial.gsnet) initial.gsnet = GsNetWeights::Init(options.seed);
  if (!initial.field) initial.field = TransformFieldWeights::Init(options.field_config, options.seed);
  FLEXGS_RETURN_IF_ERROR(initial.gsnet->Validate());
  FLEXGS_RETURN_IF_ERROR(initial.field->Validate());
  if (initial.global_importance.size() != initial.gaussians.size()) {
    initial.global_importance.assign(initial.gaussians.size(), 0.0f);  // recomputed at iteration 1
  }
  std::unique_ptr<ElasticTrainer> t(new ElasticTrainer(options));
  for (auto* raster : {&t->raster_full_, &t->raster_selected_}) {
    if (options.raster_factory) {
      FLEXGS_ASSIGN_OR_RETURN(*raster, options.raster_factory());
      if (*raster == nullptr) return absl::InvalidArgumentError("raster_factory returned no rasterizer");
    } else {
      *raster = std::make_unique<DifferentiableRasterizer>(options.threads);
    }
  }
  t->model_ = std::move(initial);
  t->targets_ = std::move(targets);
  FLEXGS_RETURN_IF_ERROR(t->Init());
  return t;
}

absl::Status ElasticTrainer::Init() {
  model_.gi_prior_weight = options_.reference_selection ? 0.0 : options_.gi_prior_weight;
  model_.pose_at_insertion = options_.pose_at_insertion;
  model_.coverage_share = options_.coverage_share;
  model_.gsnet_box_inputs = options_.gsnet_box_inputs;
  gsnet_input_ = GsNetInputCloud(model_);
  // Checked here, not in Validate(): a caller validates its options before it has loaded
  // the scene that becomes the teacher.
  if (options_.tune_gaussians && (options_.view_sampling.has_value() || options_.near_view_jitter > 0.0) &&
      (!options_.teacher || options_.teacher->empty())) {
    return absl::InvalidArgumentError(
        "sampled or near views with tuned Gaussians need the input scene as the teacher (TrainOptions::teacher)");
  }
  if (options_.tune_gaussians && options_.teacher && options_.teacher->size() != model_.gaussians.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the teacher has ", options_.teacher->size(), " Gaussians, the model ", model_.gaussians.size()));
  }
  view_bounds_ = RobustBounds(Teacher());
  // A checkpoint restores GI without recomputing it: the coverage follows it here.
  if (model_.coverage_share > 0.0) coverage_ = CoverageLevels(model_);
  // The GI is always the trainer's, over the targets (a checkpoint does not store this).
  model_.gi = {"flexgs", static_cast<int>(targets_.size()), targets_[0].camera.width, targets_[0].camera.height};
  spatial_lr_scale_ = options_.spatial_lr_scale;
  if (spatial_lr_scale_ <= 0.0) {
    // The reference's scene radius: 1.1 x the largest distance of a camera from their mean.
    Eigen::Vector3d mean = Eigen::Vector3d::Zero();
    for (const TrainingView& v : targets_) mean += v.camera.Centre();
    mean /= static_cast<double>(targets_.size());
    double radius = 0.0;
    for (const TrainingView& v : targets_) radius = std::max(radius, (v.camera.Centre() - mean).norm());
    spatial_lr_scale_ = radius > 0.0 ? 1.1 * radius : 1.0;
  }
  // The networks see the scene in box units (GsNet's inputs, the field's planes), so
  // their rates take the scene's radius in those units, mapped to a box of half extent
  // kNetworkHalfExtent (about the scenes the reference's rates were tuned on; guitar.ply
  // is 2.19). Without box inputs, the reference's single scale.
  const double half = GsNetInputScale(model_);
  network_lr_scale_ = options_.gsnet_box_inputs ? spatial_lr_scale_ / half * kNetworkHalfExtent : spatial_lr_scale_;
  for (const auto& [group, schedule] : ReferenceStage2Groups(spatial_lr_scale_, network_lr_scale_)) {
    FLEXGS_RETURN_IF_ERROR(adam_.AddGroup(group, schedule));
  }
  absl::Status st;
  auto add = [&](const char* group, const std::string& name, const std::vector<float>& p, const std::vector<float>&) {
    if (st.ok() && !p.empty()) st = adam_.AddParameter(group, name, p.size());
  };
  const GaussianCloud& c = model_.gaussians;
  if (options_.tune_gaussians) ForEachCloudTensor(c, c, add);
  ForEachGsNetTensor(*model_.gsnet, *model_.gsnet, add);
  ForEachFieldTensor(*model_.field, *model_.field, add);
  return st;
}

absl::Status ElasticTrainer::RecomputeGi() {
  FLEXGS_ASSIGN_OR_RETURN(std::vector<float> gi,
                          ComputeGlobalImportance(model_.gaussians, CamerasOf(targets_), {}, gi_raster_));
  model_.global_importance = std::move(gi);
  model_.gi = {"flexgs", static_cast<int>(targets_.size()), targets_[0].camera.width, targets_[0].camera.height};
  if (model_.coverage_share > 0.0) coverage_ = CoverageLevels(model_);
  return absl::OkStatus();
}

absl::StatusOr<StepStats> ElasticTrainer::Step() {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point step_start = Clock::now();
  Clock::duration render_time{};
  // Runs `fn` (a render's Forward or Backward) and adds its wall time to render_time.
  auto timed = [&render_time](auto&& fn) {
    const Clock::time_point t0 = Clock::now();
    auto result = fn();
    render_time += Clock::now() - t0;
    return result;
  };
  const int64_t it = iteration_ + 1;
  StepStats stats;
  stats.iteration = it;
  const double e = options_.ladder[static_cast<size_t>(it) % options_.ladder.size()];
  const float ef = static_cast<float>(e);
  stats.ratio = e;
  ThreadPool* pool = &pool_;
  GaussianCloud& cloud = model_.gaussians;
  const GsNetWeights& net = *model_.gsnet;
  const TransformFieldWeights& field = *model_.field;
  const size_t n = cloud.size();
  const bool tune = options_.tune_gaussians;
  RenderOptions ro;
  ro.background = options_.background;
  ro.want_aux = false;

  // The view: a fresh camera from the distribution and the (frozen) input's render there,
  // or one of the fixed targets.
  const uint64_t view_key = IterationKey(options_.seed ^ kViewSalt, it);
  Camera sampled_camera;
  Image sampled_target;
  const bool near_view = options_.near_view_jitter > 0.0 && it % 2 == 0;
  if (options_.view_sampling.has_value() || near_view) {
    if (near_view) {
      const Camera& base = targets_[view_key % targets_.size()].camera;
      sampled_camera = SampleNearView(base, LookAtPoint(base, view_bounds_), options_.near_view_jitter, view_key);
    } else {
      sampled_camera = SampleView(view_bounds_, *options_.view_sampling, view_key);
    }
    FLEXGS_ASSIGN_OR_RETURN(RenderResult teacher,
                            timed([&] { return raster_full_->Forward(Teacher(), sampled_camera, ro, {}); }));
    sampled_target = std::move(teacher.color);
    stats.view = -1;
  } else {
    stats.view = static_cast<int>(view_key % targets_.size());
  }
  const Camera& cam = stats.view < 0 ? sampled_camera : targets_[stats.view].camera;
  const Image& target = stats.view < 0 ? sampled_target : targets_[stats.view].target;

  // A frozen cloud's GI never changes: computed once (or restored from a checkpoint).
  if (it == 1 || (tune && it % options_.gi_every == 0)) {
    FLEXGS_RETURN_IF_ERROR(RecomputeGi());
    stats.gi_recomputed = true;
  }

  // 1. The hard mask.
  std::vector<float> logits(2 * n), mask(n), soft_keep(n);
  if (tune) gsnet_input_ = GsNetInputCloud(model_);  // the cloud moved last step
  FLEXGS_RETURN_IF_ERROR(GsNetLogits(net, gsnet_input_, ef, absl::MakeSpan(logits), pool));
  if (options_.reference_selection) {
    FLEXGS_RETURN_IF_ERROR(GumbelHardMask(logits, options_.tau, IterationKey(options_.seed, it), absl::MakeSpan(mask),
                                          absl::MakeSpan(soft_keep), pool));
  }
  std::vector<std::vector<uint32_t>> nested_levels;
  std::vector<double> rungs;
  if (!options_.reference_selection) {
    ServedMask(logits, e, absl::MakeSpan(mask), absl::MakeSpan(soft_keep), &nested_levels, &rungs, pool);
  }
  // S, and the ratio the field poses each part of it at: [begin, end) of `sel` at ratio.
  struct PoseRange {
    size_t begin, end;
    float ratio;
  };
  std::vector<uint32_t> sel;
  std::vector<PoseRange> ranges;
  if (options_.pose_at_insertion) {
    for (size_t k = 0; k < nested_levels.size(); ++k) {
      const size_t begin = sel.size();
      sel.insert(sel.end(), nested_levels[k].begin(), nested_levels[k].end());
      ranges.push_back({begin, sel.size(), static_cast<float>(rungs[k])});
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      if (mask[i] > 0.5f) sel.push_back(static_cast<uint32_t>(i));
    }
    ranges.push_back({0, sel.size(), ef});
  }
  const size_t m = sel.size();

  // 2. Full render (its loss only moves the Gaussians).
  RenderResult full;
  if (tune) {
    FLEXGS_ASSIGN_OR_RETURN(full, timed([&] { return raster_full_->Forward(cloud, cam, ro, {}); }));
  }

  // 3. Selected render: S moved by the field, everything's opacity scaled by its mask bit.
  const GaussianCloud subset = cloud.Gather(sel);  // untransformed, for the backward
  std::vector<float> deltas(m * kDeltaStride);
  for (const PoseRange& r : ranges) {
    EvalTransformField(field, model_.normalization,
                       absl::MakeConstSpan(subset.positions).subspan(r.begin * 3, (r.end - r.begin) * 3), r.ratio,
                       absl::MakeSpan(deltas).subspan(r.begin * kDeltaStride, (r.end - r.begin) * kDeltaStride), pool);
  }
  GaussianCloud moved = subset;
  ApplyTransformDeltas(deltas, moved);
  GaussianCloud composite = cloud;
  for (size_t j = 0; j < m; ++j) {
    const size_t i = sel[j];
    std::copy_n(&moved.positions[j * 3], 3, &composite.positions[i * 3]);
    std::copy_n(&moved.log_scales[j * 3], 3, &composite.log_scales[i * 3]);
    std::copy_n(&moved.rotations[j * 4], 4, &composite.rotations[i * 4]);
  }
  ForwardInputs inputs;
  inputs.opacity_scale = mask;
  FLEXGS_ASSIGN_OR_RETURN(RenderResult selected,
                          timed([&] { return raster_selected_->Forward(composite, cam, ro, inputs); }));

  // 4. Loss.
  FLEXGS_ASSIGN_OR_RETURN(ImageLossResult loss_s, ImageLoss(selected.color, target, kStage2SelectedRenderLoss, pool));
  ImageLossResult loss_f;
  if (tune) {
    FLEXGS_ASSIGN_OR_RETURN(loss_f, ImageLoss(full.color, target, kStage2FullRenderLoss, pool));
  }
  const std::vector<float> labels = GiPseudoLabels(model_.global_importance, e);
  std::vector<float> grad_mask(n);
  FLEXGS_ASSIGN_OR_RETURN(MaskLoss mask_loss,
                          SelectionMaskLoss(mask, labels, e, options_.mask_weights, absl::MakeSpan(grad_mask)));
  TransformFieldWeights grad_field = ZerosLike(field);
  FLEXGS_ASSIGN_OR_RETURN(HexPlaneRegularizers reg,
                          HexPlaneRegularization(field, options_.regularizer_weights, &grad_field, pool));
  stats.selected_loss = loss_s.value;
  stats.full_loss = loss_f.value;
  stats.mask_loss = mask_loss.value;
  stats.regularization = reg.value;
  stats.loss = loss_s.value + loss_f.value + mask_loss.value + reg.value;
  if (!std::isfinite(stats.loss)) {
    return absl::DataLossError(absl::StrFormat("iteration %d: non-finite loss (selected %g, full %g, mask %g, reg %g)",
                                               it, loss_s.value, loss_f.value, mask_loss.value, reg.value));
  }
  FLEXGS_ASSIGN_OR_RETURN(stats.psnr_selected, Psnr(selected.color, target));
  if (tune) {
    FLEXGS_ASSIGN_OR_RETURN(stats.psnr_full, Psnr(full.color, target));
  } else {
    stats.psnr_full = std::numeric_limits<double>::quiet_NaN();
  }
  stats.kept_fraction = n > 0 ? static_cast<double>(m) / static_cast<double>(n) : 0.0;
  {
    size_t labelled = 0, agree = 0;
    for (size_t i = 0; i < n; ++i) {
      labelled += labels[i] > 0.5f;
      agree += labels[i] > 0.5f && mask[i] > 0.5f;
    }
    stats.gi_agreement = labelled ? static_cast<double>(agree) / static_cast<double>(labelled) : 1.0;
  }

  // 5. Backward. Every backward ADDS into freshly zeroed buffers.
  CloudGradients g_full, g_sel;
  if (tune) {
    FLEXGS_RETURN_IF_ERROR(timed([&] { return raster_full_->Backward(loss_f.grad, &g_full); }));
  }
  FLEXGS_RETURN_IF_ERROR(timed([&] { return raster_selected_->Backward(loss_s.grad, &g_sel); }));
  for (size_t i = 0; i < n; ++i) grad_mask[i] += g_sel.opacity_scale[i];
  std::vector<float> grad_logits(2 * n);
  FLEXGS_RETURN_IF_ERROR(GumbelHardMaskBackward(soft_keep, options_.tau, grad_mask, absl::MakeSpan(grad_logits)));

  // Cloud gradients: opacity and SH of both renders reach the raw attributes directly;
  // the selected render's geometry of S goes through the transform first.
  // Frozen: only the geometry arrays are kept, as sinks for the networks' backward.
  GaussianCloud grad;
  if (!tune) {
    grad.positions.assign(n * 3, 0.0f);
    grad.log_scales.assign(n * 3, 0.0f);
    grad.rotations.assign(n * 4, 0.0f);
  } else {
    grad = cloud;  // same layout; overwritten below
  }
  std::vector<uint8_t> in_s(tune ? n : 0, 0);
  if (tune) {
    for (uint32_t i : sel) in_s[i] = 1;
  }
  for (size_t i = 0; tune && i < n; ++i) {
    const bool direct = !in_s[i];
    for (int d = 0; d < 3; ++d) {
      grad.positions[i * 3 + d] = g_full.positions[i * 3 + d] + (direct ? g_sel.positions[i * 3 + d] : 0.0f);
      grad.log_scales[i * 3 + d] = g_full.log_scales[i * 3 + d] + (direct ? g_sel.log_scales[i * 3 + d] : 0.0f);
    }
    for (int d = 0; d < 4; ++d) {
      grad.rotations[i * 4 + d] = g_full.rotations[i * 4 + d] + (direct ? g_sel.rotations[i * 4 + d] : 0.0f);
    }
  }
  if (tune) {
    for (size_t k = 0; k < grad.opacity_logits.size(); ++k) {
      grad.opacity_logits[k] = g_full.opacity_logits[k] + g_sel.opacity_logits[k];
    }
    for (size_t k = 0; k < grad.sh_dc.size(); ++k) grad.sh_dc[k] = g_full.sh_dc[k] + g_sel.sh_dc[k];
    for (size_t k = 0; k < grad.sh_rest.size(); ++k) grad.sh_rest[k] = g_full.sh_rest[k] + g_sel.sh_rest[k];
  }

  std::vector<float> out_pos(m * 3), out_ls(m * 3), out_rot(m * 4);
  for (size_t j = 0; j < m; ++j) {
    const size_t i = sel[j];
    std::copy_n(&g_sel.positions[i * 3], 3, &out_pos[j * 3]);
    std::copy_n(&g_sel.log_scales[i * 3], 3, &out_ls[j * 3]);
    std::copy_n(&g_sel.rotations[i * 4], 4, &out_rot[j * 4]);
  }
  std::vector<float> grad_deltas(m * kDeltaStride), sub_pos(m * 3, 0.0f), sub_ls(m * 3, 0.0f), sub_rot(m * 4, 0.0f);
  FLEXGS_RETURN_IF_ERROR(
      ApplyTransformDeltasBackward(subset, deltas, {out_pos, out_ls, out_rot}, absl::MakeSpan(grad_deltas),
                                   {absl::MakeSpan(sub_pos), absl::MakeSpan(sub_ls), absl::MakeSpan(sub_rot)}));
  for (const PoseRange& r : ranges) {
    const size_t len = r.end - r.begin;
    FLEXGS_RETURN_IF_ERROR(TransformFieldBackward(
        field, model_.normalization, absl::MakeConstSpan(subset.positions).subspan(r.begin * 3, len * 3), r.ratio,
        absl::MakeConstSpan(grad_deltas).subspan(r.begin * kDeltaStride, len * kDeltaStride), &grad_field,
        absl::MakeSpan(sub_pos).subspan(r.begin * 3, len * 3), pool));
  }
  for (size_t j = 0; j < m; ++j) {
    const size_t i = sel[j];
    for (int d = 0; d < 3; ++d) {
      grad.positions[i * 3 + d] += sub_pos[j * 3 + d];
      grad.log_scales[i * 3 + d] += sub_ls[j * 3 + d];
    }
    for (int d = 0; d < 4; ++d) grad.rotations[i * 4 + d] += sub_rot[j * 4 + d];
  }
  GsNetWeights grad_net = ZerosLike(net);
  // GsNet's input gradients are in its box units: back to world units (positions divide
  // by the box's half extent; log-scales only shift, so theirs are unchanged).
  std::vector<float> gsnet_grad_pos(n * 3, 0.0f);
  FLEXGS_RETURN_IF_ERROR(GsNetBackward(
      net, gsnet_input_, ef, grad_logits, &grad_net,
      {absl::MakeSpan(gsnet_grad_pos), absl::MakeSpan(grad.log_scales), absl::MakeSpan(grad.rotations)}, pool));
  const float inv_half = 1.0f / GsNetInputScale(model_);
  for (size_t k = 0; k < gsnet_grad_pos.size(); ++k) grad.positions[k] += gsnet_grad_pos[k] * inv_half;

  // 6. Adam, one step per tensor at the 1-based iteration.
  absl::Status st;
  auto step = [&](const char*, const std::string& name, std::vector<float>& p, std::vector<float>& g) {
    if (st.ok() && !p.empty()) st = adam_.Step(name, absl::MakeSpan(p), g, it, pool);
  };
  if (tune) ForEachCloudTensor(cloud, grad, step);
  ForEachGsNetTensor(*model_.gsnet, grad_net, step);
  ForEachFieldTensor(*model_.field, grad_field, step);
  FLEXGS_RETURN_IF_ERROR(st);
  iteration_ = it;
  stats.seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
  stats.render_seconds = std::chrono::duration<double>(render_time).count();
  return stats;
}

void ElasticTrainer::ServedMask(absl::Span<const float> logits, double e, absl::Span<float> mask,
                                absl::Span<float> soft_keep, std::vector<std::vector<uint32_t>>* levels,
                                std::vector<double>* rungs_out, ThreadPool* pool) const {
  const size_t n = model_.gaussians.size();
  // Scores exactly as RankingScores computes them for the current model, from the margins
  // of this step's GsNet forward.
  std::vector<float> score(n);
  for (size_t i = 0; i < n; ++i) score[i] = logits[2 * i + 1] - logits[2 * i];
  RankingScoresFromMargins(model_, e, absl::MakeSpan(score), &coverage_);
  std::fill(mask.begin(), mask.end(), 0.0f);
  const uint32_t count = ElasticCount(n, e);
  if (options_.nested) {
    std::vector<double> rungs;
    for (double r : options_.ladder) {
      if (r < e) rungs.push_back(r);
    }
    std::sort(rungs.begin(), rungs.end());
    rungs.erase(std::unique(rungs.begin(), rungs.end()), rungs.end());
    rungs.push_back(e);
    *levels = NestedAdditions(model_, rungs, pool, &coverage_);
    for (const std::vector<uint32_t>& level : *levels) {
      for (uint32_t i : level) mask[i] = 1.0f;
    }
    *rungs_out = std::move(rungs);
  } else {
    for (uint32_t i : TopK(score, count)) mask[i] = 1.0f;
  }
  // The straight-through surrogate: a sigmoid around the k-th best score at e.
  std::vector<float> sorted = score;
  std::nth_element(sorted.begin(), sorted.begin() + (count - 1), sorted.end(), std::greater<float>());
  const double threshold = sorted[count - 1];
  for (size_t i = 0; i < n; ++i) {
    soft_keep[i] = static_cast<float>(1.0 / (1.0 + std::exp(-(score[i] - threshold) / options_.tau)));
  }
}

ElasticModel ElasticTrainer::Result() const {
  ElasticModel out = model_;
  std::vector<double> ladder = options_.ladder;
  std::sort(ladder.begin(), ladder.end());
  ladder.erase(std::unique(ladder.begin(), ladder.end()), ladder.end());
  out.ladder = ladder;
  out.digest.clear();
  nlohmann::json summary = nlohmann::json{{"mode", "trained"},
                                          {"trainer", "flexgs-stage2-" + std::string(raster_full_->name())},
                                          {"iterations", iteration_},
                                          {"seed", options_.seed},
                                          {"train_ladder", options_.ladder},
                                          {"selection", options_.reference_selection ? "reference-gumbel"
                                                        : options_.nested            ? "served-nested"
                                                                                     : "served-independent"},
                                          {"gi_prior_weight", model_.gi_prior_weight},
                                          {"base", options_.tune_gaussians ? "tuned" : "frozen"},
                                          {"coverage_share", options_.coverage_share},
                                          {"gsnet_inputs", options_.gsnet_box_inputs ? "box" : "raw"},
                                          {"field_pose", options_.pose_at_insertion ? "insertion" : "per-level"},
                                          {"views", targets_.size()},
                                          {"width", targets_[0].camera.width},
                                          {"height", targets_[0].camera.height},
                                          {"spatial_lr_scale", spatial_lr_scale_},
                                          {"network_lr_scale", network_lr_scale_}};
  if (options_.near_view_jitter > 0.0) summary["near_view_jitter"] = options_.near_view_jitter;
  if (options_.view_sampling.has_value()) {
    const ViewDistribution& d = *options_.view_sampling;
    summary["view_sampling"] = {{"directions", ViewDirectionsName(d.directions)},
                                {"distance", {d.min_distance, d.max_distance}},
                                {"fov_deg", {d.min_fov_deg, d.max_fov_deg}},
                                {"target_jitter", d.target_jitter},
                                {"width", d.width},
                                {"height", d.height}};
  }
  out.training_summary_json = summary.dump();
  return out;
}

uint32_t ElasticTrainer::Fingerprint() const {
  std::string b;
  ByteWriter w(&b);
  w.Put(options_.seed);
  for (double e : options_.ladder) w.Put(e);
  w.Put(options_.gi_every);
  for (float c : options_.background) w.Put(c);
  w.Put(options_.tau);
  w.Put(options_.spatial_lr_scale);
  w.Put(static_cast<uint8_t>(options_.reference_selection));
  w.Put(static_cast<uint8_t>(options_.nested));
  w.Put(options_.gi_prior_weight);
  w.Put(options_.mask_weights.imitation);
  w.Put(options_.mask_weights.ratio_weight);
  w.Put(options_.regularizer_weights.plane_tv);
  w.Put(options_.regularizer_weights.time_smoothness);
  w.Put(options_.regularizer_weights.l1_time_planes);
  w.Put(static_cast<uint8_t>(options_.tune_gaussians));
  w.Put(static_cast<uint8_t>(options_.pose_at_insertion));
  if (options_.coverage_share > 0.0) w.Put(options_.coverage_share);
  w.Put(static_cast<uint8_t>(options_.gsnet_box_inputs));
  if (options_.tune_gaussians && options_.teacher) {
    w.Put(static_cast<uint64_t>(options_.teacher->size()));
    w.Put(Crc32c(absl::string_view(reinterpret_cast<const char*>(options_.teacher->positions.data()),
                                   options_.teacher->positions.size() * sizeof(float))));
  }
  if (options_.near_view_jitter > 0.0) w.Put(options_.near_view_jitter);
  if (options_.view_sampling.has_value()) {
    const ViewDistribution& d = *options_.view_sampling;
    w.Put(static_cast<uint8_t>(d.directions));
    for (double v : {d.min_distance, d.max_distance, d.min_fov_deg, d.max_fov_deg, d.target_jitter}) w.Put(v);
    w.Put(d.width);
    w.Put(d.height);
    for (int k = 0; k < 3; ++k) w.Put(d.up[k]);
  }
  uint32_t crc = Crc32c(b);
  for (const TrainingView& v : targets_) {
    const Camera& c = v.camera;
    const double intr[6] = {static_cast<double>(c.width), static_cast<double>(c.height), c.fx, c.fy, c.cx, c.cy};
    crc = Crc32cExtend(crc, intr, sizeof(intr));
    crc = Crc32cExtend(crc, c.R.data(), 9 * sizeof(double));
    crc = Crc32cExtend(crc, c.t.data(), 3 * sizeof(double));
    crc = Crc32cExtend(crc, v.target.pixels.data(), v.target.pixels.size() * sizeof(float));
  }
  return crc;
}

absl::Status ElasticTrainer::SaveCheckpoint(const std::string& path) const {
  std::string out(kCheckpointMagic, sizeof(kCheckpointMagic));
  ByteWriter w(&out);
  w.Put(static_cast<uint64_t>(iteration_));
  w.Put(options_.seed);
  w.Put(Fingerprint());
  w.Put(static_cast<int32_t>(model_.gaussians.sh_degree));
  w.Put(static_cast<uint64_t>(model_.gaussians.size()));
  const TransformFieldConfig& fc = model_.field->config;
  w.Put(static_cast<int32_t>(fc.channels));
  w.Put(static_cast<int32_t>(fc.base_resolution));
  w.Put(static_cast<int32_t>(fc.multires.size()));
  for (int r : fc.multires) w.Put(static_cast<int32_t>(r));
  w.Put(static_cast<int32_t>(fc.ratio_resolution));
  w.Put(static_cast<int32_t>(fc.hidden));
  const FieldNormalization& nm = model_.normalization;
  for (float v : nm.aabb_min) w.Put(v);
  for (float v : nm.aabb_max) w.Put(v);
  w.Put(nm.ratio_scale);
  w.Put(nm.ratio_offset);
  std::vector<std::pair<std::string, const std::vector<float>*>> tensors;
  auto collect = [&](const char*, const std::string& name, const std::vector<float>& p, const std::vector<float>&) {
    tensors.emplace_back(name, &p);
  };
  tensors.emplace_back("gi", &model_.global_importance);
  ForEachCloudTensor(model_.gaussians, model_.gaussians, collect);
  ForEachGsNetTensor(*model_.gsnet, *model_.gsnet, collect);
  ForEachFieldTensor(*model_.field, *model_.field, collect);
  w.Put(static_cast<uint32_t>(tensors.size()));
  for (const auto& [name, data] : tensors) {
    w.Put(static_cast<uint32_t>(name.size()));
    w.PutBytes(name);
    w.Put(static_cast<uint64_t>(data->size()));
    w.PutFloats(*data);
  }
  const std::string adam = adam_.SaveState();
  w.Put(static_cast<uint64_t>(adam.size()));
  w.PutBytes(adam);
  w.Put(Crc32c(out));
  return WriteFileAtomically(path, out);
}

absl::StatusOr<std::unique_ptr<ElasticTrainer>> ElasticTrainer::LoadCheckpoint(const std::string& path,
                                                                               std::vector<TrainingView> targets,
                                                                               const TrainOptions& options) {
  FLEXGS_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path));
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint '", path, "': ", why));
  };
  if (data.size() < sizeof(kCheckpointMagic) + 4 || std::memcmp(data.data(), kCheckpointMagic, 16) != 0) {
    return bad("not a flexgs training checkpoint");
  }
  uint32_t stored_crc = 0;
  ByteReader tail(std::string_view(data).substr(data.size() - 4));
  if (!tail.Get(&stored_crc) || Crc32c(absl::string_view(data).substr(0, data.size() - 4)) != stored_crc) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "': checksum mismatch (damaged file)"));
  }
  ByteReader r(std::string_view(data).substr(16, data.size() - 20));
  uint64_t iteration, seed, n;
  uint32_t fingerprint;
  int32_t sh_degree, levels;
  TransformFieldConfig fc;
  if (!r.Get(&iteration) || !r.Get(&seed) || !r.Get(&fingerprint) || !r.Get(&sh_degree) || !r.Get(&n) ||
      !r.Get(&fc.channels) || !r.Get(&fc.base_resolution) || !r.Get(&levels) || levels < 0 || levels > 16) {
    return bad("truncated header");
  }
  fc.multires.resize(levels);
  for (int& v : fc.multires) {
    if (!r.Get(&v)) return bad("truncated header");
  }
  FieldNormalization nm;
  bool ok = r.Get(&fc.ratio_resolution) && r.Get(&fc.hidden);
  for (float& v : nm.aabb_min) ok = ok && r.Get(&v);
  for (float& v : nm.aabb_max) ok = ok && r.Get(&v);
  ok = ok && r.Get(&nm.ratio_scale) && r.Get(&nm.ratio_offset);
  if (!ok) return bad("truncated header");
  if (seed != options.seed) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint '", path, "' was made with seed ", seed, ", not ", options.seed));
  }
  if (sh_degree < 0 || sh_degree > kMaxShDegree || n == 0 || n > (uint64_t{1} << 32)) return bad("bad cloud shape");
  if (absl::Status s = fc.Validate(); !s.ok()) return bad(std::string(s.message()));

  ElasticModel model;
  model.gaussians.sh_degree = sh_degree;
  model.gaussians.Resize(n);
  model.global_importance.resize(n);
  model.gsnet = GsNetWeights::Init(0);
  model.field = TransformFieldWeights::Init(fc, 0);
  model.normalization = nm;
  std::map<std::string, std::vector<float>*> expected;
  auto want = [&](const char*, const std::string& name, std::vector<float>& p, std::vector<float>&) {
    expected[name] = &p;
  };
  expected["gi"] = &model.global_importance;
  ForEachCloudTensor(model.gaussians, model.gaussians, want);
  ForEachGsNetTensor(*model.gsnet, *model.gsnet, want);
  ForEachFieldTensor(*model.field, *model.field, want);
  uint32_t count;
  if (!r.Get(&count) || count != expected.size()) return bad("unexpected tensor count");
  for (uint32_t k = 0; k < count; ++k) {
    uint32_t len;
    std::string_view name;
    uint64_t size;
    if (!r.Get(&len) || !r.Bytes(len, &name) || !r.Get(&size)) return bad("truncated tensor table");
    auto itr = expected.find(std::string(name.data(), name.size()));
    if (itr == expected.end()) return bad(absl::StrCat("unexpected tensor '", std::string(name), "'"));
    if (itr->second->size() != size) return bad(absl::StrCat("tensor '", std::string(name), "' has the wrong size"));
    if (!r.Floats(size, itr->second)) return bad("truncated tensor data");
    expected.erase(itr);
  }
  uint64_t adam_size;
  std::string_view adam;
  if (!r.Get(&adam_size) || !r.Bytes(adam_size, &adam) || r.remaining() != 0) return bad("bad optimiser state");

  FLEXGS_ASSIGN_OR_RETURN(std::unique_ptr<ElasticTrainer> t, Create(std::move(model), std::move(targets), options));
  if (t->Fingerprint() != fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint '", path, "' was made for other targets or training options (ladder, background, weights)"));
  }
  FLEXGS_RETURN_IF_ERROR(t->adam_.LoadState(adam));
  t->iteration_ = static_cast<int64_t>(iteration);
  return t;
}

}  // namespace flexgs

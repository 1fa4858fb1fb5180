#include "train/elastic_trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <string>

#include <gtest/gtest.h>

#include "base/file_io.h"
#include "elastic/elastic_selection.h"
#include "render/image_metrics.h"
#include "scene/synthetic_scene.h"
#include "scene/view_sampler.h"
#include "stream/level_planner.h"

namespace flexgs {
namespace {

// How much the nested levels of a 150-step sphere-trained model must beat GI top-k on
// the fixed sphere views (measured: see the test's output).
constexpr double kSphereGainDb = 1.0;

// A few thousand Gaussians, 64x64 targets from 6 orbit views and a small field: the
// whole file stays within seconds.
TrainOptions SmallOptions() {
  TrainOptions o;
  o.iters = 100;
  o.width = 64;
  o.height = 64;
  o.orbit_views = 6;
  o.threads = 2;
  o.gi_every = 7;  // exercise GI recomputation inside short runs and across a resume
  o.seed = 11;
  o.field_config.channels = 4;
  o.field_config.base_resolution = 8;
  o.field_config.multires = {1, 2};
  o.field_config.ratio_resolution = 12;
  o.field_config.hidden = 16;
  return o;
}

const GaussianCloud& Scene() {
  static const GaussianCloud* scene = new GaussianCloud(MakeSyntheticScene({.count = 3000, .sh_degree = 1, .seed = 5}));
  return *scene;
}

const std::vector<TrainingView>& Targets() {
  static const std::vector<TrainingView>* t = [] {
    auto v = MakeOrbitTargets(Scene(), SmallOptions());
    EXPECT_TRUE(v.ok()) << v.status();
    return new std::vector<TrainingView>(*std::move(v));
  }();
  return *t;
}

std::unique_ptr<ElasticTrainer> NewTrainer(const TrainOptions& o) {
  auto model = InitialElasticModel(Scene(), Targets(), o);
  EXPECT_TRUE(model.ok()) << model.status();
  auto t = ElasticTrainer::Create(*std::move(model), Targets(), o);
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / ("elastic_trainer_test_" + name)).string();
}

// The checkpoint holds every tensor, the Adam moments and the iteration: equal bytes
// mean equal weights and optimiser state, bit for bit.
std::string CheckpointBytes(const ElasticTrainer& t, const std::string& name) {
  const std::string path = TempPath(name);
  EXPECT_TRUE(t.SaveCheckpoint(path).ok());
  auto bytes = ReadFileToString(path);
  EXPECT_TRUE(bytes.ok());
  return bytes.ok() ? *bytes : std::string();
}

void RunSteps(ElasticTrainer& t, int steps, std::vector<StepStats>* stats = nullptr) {
  for (int k = 0; k < steps; ++k) {
    auto s = t.Step();
    ASSERT_TRUE(s.ok()) << s.status();
    if (stats) stats->push_back(*s);
  }
}

// Runs `half` steps, checkpoints, resumes on one thread for `half` more, and compares
// the checkpoint bytes with those of `straight` (which must be at 2 * half steps).
void ExpectResumeMatches(const ElasticTrainer& straight, const TrainOptions& o, int half, const std::string& name) {
  auto first = NewTrainer(o);
  RunSteps(*first, half);
  const std::string ckpt = TempPath(name + ".ckpt");
  ASSERT_TRUE(first->SaveCheckpoint(ckpt).ok());
  TrainOptions resumed_options = o;
  resumed_options.threads = 1;  // a resumed run may use another thread count
  auto resumed = ElasticTrainer::LoadCheckpoint(ckpt, Targets(), resumed_options);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)->iteration(), half);
  RunSteps(**resumed, half);
  EXPECT_EQ(CheckpointBytes(straight, name + "-a"), CheckpointBytes(**resumed, name + "-b"));
}

// GI top-k: the trainer's starting model without its networks (heuristic ranking, no
// transform), the baseline the trained levels must beat.
ElasticModel GiTopKModel(const TrainOptions& o) {
  auto initial = InitialElasticModel(Scene(), Targets(), o);
  EXPECT_TRUE(initial.ok()) << initial.status();
  ElasticModel heuristic = *std::move(initial);
  heuristic.gsnet.reset();
  heuristic.field.reset();
  heuristic.gi_prior_weight = 0;
  heuristic.pose_at_insertion = false;
  return heuristic;
}

// Mean PSNR over `views` of the model at ratio e as a client receives it: the
// independent top-k, or with `nested` the last level of a plan whose top ratio is e.
double SubsetPsnr(const ElasticModel& m, double e, const std::vector<TrainingView>& views, bool nested = false) {
  ThreadPool pool(2);
  absl::StatusOr<GaussianCloud> subset = ElasticSubset(m, e, &pool);
  if (nested) {
    auto plan = PlanLevels(m, {.top_ratio = e, .ladder = {}}, &pool);
    EXPECT_TRUE(plan.ok()) << plan.status();
    subset = LevelCloud(*plan, plan->levels.size() - 1);
  }
  EXPECT_TRUE(subset.ok()) << subset.status();
  CpuRasterizer raster(2);
  double sum = 0;
  for (const TrainingView& v : views) {
    RenderOptions ro;
    ro.want_aux = false;
    auto r = raster.Render(*subset, v.camera, ro);
    EXPECT_TRUE(r.ok());
    auto p = Psnr(r->color, v.target);
    EXPECT_TRUE(p.ok());
    sum += *p;
  }
  return sum / static_cast<double>(views.size());
}

TEST(ElasticTrainerTest, ShortRunLowersTheLoss) {
  auto t = NewTrainer(SmallOptions());
  // The per-step loss is too noisy (one random view per step) to compare; the
  // elastic renders of every training view at every rung are not.
  auto mean_psnr = [](const ElasticModel& m) {
    double sum = 0;
    for (double e : m.ladder) sum += SubsetPsnr(m, e, Targets());
    return sum / static_cast<double>(m.ladder.size());
  };
  const double before = mean_psnr(t->Result());
  std::vector<StepStats> stats;
  RunSteps(*t, 100, &stats);
  ASSERT_EQ(stats.size(), 100u);
  const double after = mean_psnr(t->Result());
  std::cout << "training views, mean elastic PSNR over the ladder: " << before << " dB -> " << after << " dB\n";
  EXPECT_GT(after, before + 0.5);
  EXPECT_EQ(t->iteration(), 100);
  // The Gaussians are frozen by default, so GI (which depends on them alone) is computed
  // once; tuned runs recompute it every gi_every (checked below).
  EXPECT_TRUE(stats[0].gi_recomputed);
  EXPECT_FALSE(stats[6].gi_recomputed);
  EXPECT_TRUE(std::isnan(stats[0].psnr_full));
  EXPECT_EQ(t->Result().gaussians.positions, Scene().positions);
  // The ratio follows the ladder round-robin: it 1 -> ladder[1].
  EXPECT_DOUBLE_EQ(stats[0].ratio, 0.05);
  EXPECT_DOUBLE_EQ(stats[4].ratio, 0.01);
}

TEST(ElasticTrainerTest, ResumeIsBitIdentical) {
  const TrainOptions o = SmallOptions();
  auto straight = NewTrainer(o);
  RunSteps(*straight, 16);

  auto first_half = NewTrainer(o);
  RunSteps(*first_half, 8);
  const std::string ckpt = TempPath("resume.ckpt");
  ASSERT_TRUE(first_half->SaveCheckpoint(ckpt).ok());
  first_half.reset();
  TrainOptions resumed_options = o;
  resumed_options.threads = 1;  // a resumed run may use another thread count
  auto resumed = ElasticTrainer::LoadCheckpoint(ckpt, Targets(), resumed_options);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)->iteration(), 8);
  RunSteps(**resumed, 8);
  EXPECT_EQ(CheckpointBytes(*straight, "a"), CheckpointBytes(**resumed, "b"));
  const ElasticModel a = straight->Result(), b = (*resumed)->Result();
  EXPECT_EQ(a.gaussians.positions, b.gaussians.positions);
  EXPECT_EQ(a.gsnet->head.weight, b.gsnet->head.weight);
  EXPECT_EQ(a.field->levels[0].planes[2], b.field->levels[0].planes[2]);
}

TEST(ElasticTrainerTest, SameSeedSameRunDifferentSeedDifferentRun) {
  TrainOptions o = SmallOptions();
  auto a = NewTrainer(o);
  RunSteps(*a, 6);
  o.threads = 1;
  auto b = NewTrainer(o);
  RunSteps(*b, 6);
  EXPECT_EQ(CheckpointBytes(*a, "da"), CheckpointBytes(*b, "db"));
  o.seed = 12;
  auto c = NewTrainer(o);
  RunSteps(*c, 6);
  EXPECT_NE(a->Result().field->trunk.weight, c->Result().field->trunk.weight);
}

// The reference's joint tuning, kept behind TrainOptions::tune_gaussians: the Gaussians
// move, GI follows them every gi_every, and resume stays bit-identical.
TEST(ElasticTrainerTest, TunedGaussiansMoveAndResumeBitIdentically) {
  TrainOptions o = SmallOptions();
  o.tune_gaussians = true;
  auto straight = NewTrainer(o);
  std::vector<StepStats> stats;
  RunSteps(*straight, 10, &stats);
  EXPECT_TRUE(stats[6].gi_recomputed);  // iteration 7
  EXPECT_FALSE(stats[7].gi_recomputed);
  EXPECT_FALSE(std::isnan(stats[0].psnr_full));  // rendered (inf: the targets are its own renders)
  EXPECT_NE(straight->Result().gaussians.positions, Scene().positions);
  ExpectResumeMatches(*straight, o, 5, "tuned");
}

// Sampled views: a fresh camera per step from the distribution, the targets only GI's.
TrainOptions SampledOptions(bool insertion) {
  TrainOptions o = SmallOptions();
  ViewDistribution d;
  d.width = o.width;
  d.height = o.height;
  o.view_sampling = d;
  o.nested = insertion;
  o.pose_at_insertion = insertion;
  return o;
}

// Everything a 100% client receives, in the client's order, against the input scene
// gathered in the same order: equal bit for bit.
void ExpectFullStreamIsTheInput(const ElasticModel& m) {
  ThreadPool pool(2);
  auto plan = PlanLevels(m, {.top_ratio = 1.0, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto held = LevelCloud(*plan, plan->levels.size() - 1);
  ASSERT_TRUE(held.ok()) << held.status();
  std::vector<uint32_t> order;
  for (const PlanLevel& l : plan->levels) order.insert(order.end(), l.added.begin(), l.added.end());
  ASSERT_EQ(order.size(), Scene().size());
  const GaussianCloud input = Scene().Gather(order);
  EXPECT_EQ(held->positions, input.positions);
  EXPECT_EQ(held->log_scales, input.log_scales);
  EXPECT_EQ(held->rotations, input.rotations);
  EXPECT_EQ(held->opacity_logits, input.opacity_logits);
  EXPECT_EQ(held->sh_dc, input.sh_dc);
  EXPECT_EQ(held->sh_rest, input.sh_rest);
}

// Tuned Gaussians with sampled views: the teacher (the input) renders the targets while
// the model's own cloud moves; resume stays bit-identical.
TEST(ElasticTrainerTest, TunedGaussiansDistilFromTheTeacherAtSampledViews) {
  TrainOptions o = SampledOptions(false);
  o.tune_gaussians = true;
  o.teacher = std::make_shared<const GaussianCloud>(Scene());
  auto t = NewTrainer(o);
  std::vector<StepStats> stats;
  RunSteps(*t, 8, &stats);
  EXPECT_EQ(stats[0].view, -1);
  EXPECT_NE(t->Result().gaussians.positions, Scene().positions);
  ExpectResumeMatches(*t, o, 4, "tuned-sampled");
}

TEST(ElasticTrainerTest, FrozenBaseServesTheInputBitForBit) {
  for (bool insertion : {false, true}) {
    auto t = NewTrainer(SampledOptions(insertion));
    std::vector<StepStats> stats;
    RunSteps(*t, 10, &stats);
    EXPECT_EQ(stats[3].view, -1);
    const ElasticModel m = t->Result();
    EXPECT_EQ(m.pose_at_insertion, insertion);
    EXPECT_EQ(m.gaussians.positions, Scene().positions);
    EXPECT_EQ(m.gaussians.log_scales, Scene().log_scales);
    EXPECT_EQ(m.gaussians.opacity_logits, Scene().opacity_logits);
    EXPECT_EQ(m.gaussians.sh_rest, Scene().sh_rest);
    ExpectFullStreamIsTheInput(m);
  }
}

// Poses fixed at insertion: below 100% no level carries patches and every level only
// appends to the previous one; the additions are posed at their own level's ratio.
TEST(ElasticTrainerTest, PosesFixedAtInsertionStreamWithoutPatches) {
  auto t = NewTrainer(SampledOptions(true));
  RunSteps(*t, 10);
  const ElasticModel m = t->Result();
  ThreadPool pool(2);
  auto plan = PlanLevels(m, {.top_ratio = 0.15, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 4u);
  GaussianCloud previous;
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    const PlanLevel& l = plan->levels[k];
    EXPECT_TRUE(l.patches.empty()) << "level " << k;
    auto held = LevelCloud(*plan, k);
    ASSERT_TRUE(held.ok());
    ASSERT_GE(held->size(), previous.size());
    EXPECT_TRUE(std::equal(previous.positions.begin(), previous.positions.end(), held->positions.begin()));
    EXPECT_TRUE(std::equal(previous.log_scales.begin(), previous.log_scales.end(), held->log_scales.begin()));
    const GaussianCloud posed = TransformedSubset(m, l.added, l.ratio, &pool);
    EXPECT_EQ(l.added_gaussians.positions, posed.positions);
    previous = *std::move(held);
  }
  // The field did learn something: the posed additions differ from the input.
  EXPECT_NE(plan->levels[0].added_gaussians.log_scales, Scene().Gather(plan->levels[0].added).log_scales);
}

TEST(ElasticTrainerTest, SampledViewsResumeBitIdentically) {
  const TrainOptions o = SampledOptions(true);
  auto straight = NewTrainer(o);
  RunSteps(*straight, 12);
  ExpectResumeMatches(*straight, o, 6, "sampled");
  // Another view distribution is another trajectory: its checkpoint is refused.
  const std::string ckpt = TempPath("sampled.ckpt");
  TrainOptions other = o;
  other.view_sampling->max_distance = 2.0;
  EXPECT_EQ(ElasticTrainer::LoadCheckpoint(ckpt, Targets(), other).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// With fixed (e.g. dataset) targets, every second step distils the input near one of
// them: odd steps use a target, even steps a teacher view; resume stays bit-identical.
TEST(ElasticTrainerTest, NearViewsAlternateWithTheTargets) {
  TrainOptions o = SmallOptions();
  o.near_view_jitter = 0.2;
  auto t = NewTrainer(o);
  std::vector<StepStats> stats;
  RunSteps(*t, 6, &stats);
  for (const StepStats& s : stats) {
    if (s.iteration % 2 == 0) {
      EXPECT_EQ(s.view, -1) << s.iteration;
    } else {
      EXPECT_GE(s.view, 0) << s.iteration;
    }
  }
  ExpectResumeMatches(*t, o, 3, "near");
}

// Trained on views from all around, the nested levels beat GI top-k on the fixed sphere
// set (close-ups included), none of which is a training view.
TEST(ElasticTrainerTest, SampledViewTrainingBeatsGiTopKOnSphereViews) {
  TrainOptions o = SampledOptions(true);
  auto cams = EvalSphereViews(RobustBounds(Scene()), 6, o.width, o.height);
  ASSERT_TRUE(cams.ok());
  auto sphere = RenderTargets(Scene(), *cams, o);
  ASSERT_TRUE(sphere.ok());
  const ElasticModel heuristic = GiTopKModel(o);
  auto t = NewTrainer(o);
  RunSteps(*t, 150);
  for (double e : {0.01, 0.05}) {
    const double gi_psnr = SubsetPsnr(heuristic, e, *sphere, true);
    const double trained_psnr = SubsetPsnr(t->Result(), e, *sphere, true);
    std::cout << "sphere views, nested, e = " << e << ": GI top-k " << gi_psnr << " dB, trained " << trained_psnr
              << " dB\n";
    EXPECT_GT(trained_psnr, gi_psnr + kSphereGainDb) << "e = " << e;
  }
}

TEST(ElasticTrainerTest, TrainedModelIsServable) {
  auto t = NewTrainer(SmallOptions());
  RunSteps(*t, 3);
  ElasticModel m = t->Result();
  EXPECT_FALSE(m.heuristic());
  ThreadPool pool(1);
  auto subset = ElasticSubset(m, 0.05, &pool);
  ASSERT_TRUE(subset.ok()) << subset.status();
  EXPECT_EQ(subset->size(), ElasticCount(m.gaussians.size(), 0.05));
}

// Mean PSNR over `views` of the model's independent subset at ratio e against the
// full model's renders (distillation protocol).
// 200 steps against GI top-k (heuristic ranking, no transform; also the trainer's
// starting point) on views between the training views, for independent and nested
// selection, each evaluated the way it is served.
TEST(ElasticTrainerTest, ShortRunBeatsGiTopKOnHeldOutViews) {
  TrainOptions o = SmallOptions();
  auto held_out = MakeOrbitTargets(Scene(), o, 180.0 / o.orbit_views);
  ASSERT_TRUE(held_out.ok()) << held_out.status();
  const ElasticModel heuristic = GiTopKModel(o);
  for (bool nested : {false, true}) {
    o.nested = nested;
    auto t = NewTrainer(o);
    // The 200 steps for the default selection; nested (so far the same
    // trajectory, see bench/RESULTS.md) gets 100 to keep the sanitizer suite short.
    const int steps = nested ? 100 : 200;
    RunSteps(*t, steps);
    for (double e : {0.01, 0.05}) {
      const double gi_psnr = SubsetPsnr(heuristic, e, *held_out, nested);
      const double trained_psnr = SubsetPsnr(t->Result(), e, *held_out, nested);
      std::cout << (nested ? "nested" : "independent") << ", held-out PSNR at e = " << e << ": GI top-k " << gi_psnr
                << " dB, trained (" << steps << " steps) " << trained_psnr << " dB\n";
      EXPECT_GT(trained_psnr, gi_psnr + 1.0) << "e = " << e << (nested ? " nested" : " independent");
    }
  }
}

TEST(ElasticTrainerTest, BadInputsFailFast) {
  auto expect_invalid = [](TrainOptions o) {
    auto model = InitialElasticModel(Scene(), Targets(), o);
    EXPECT_FALSE(model.ok());
  };
  TrainOptions o = SmallOptions();
  o.iters = 0;
  expect_invalid(o);
  o = SmallOptions();
  o.ladder = {};
  expect_invalid(o);
  o.ladder = {0.05, 1.5};
  expect_invalid(o);
  o = SmallOptions();
  o.nested = true;
  o.reference_selection = true;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = SmallOptions();
  o.gi_prior_weight = -1;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = SmallOptions();
  o.pose_at_insertion = true;  // without nested
  EXPECT_NE(o.Validate().message().find("nested"), absl::string_view::npos) << o.Validate();
  o = SampledOptions(false);
  o.tune_gaussians = true;  // without a teacher
  {
    auto m = InitialElasticModel(Scene(), Targets(), o);
    ASSERT_TRUE(m.ok());
    const auto t = ElasticTrainer::Create(*m, Targets(), o);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("teacher"), absl::string_view::npos) << t.status();
  }
  o = SmallOptions();
  o.near_view_jitter = 1.5;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = SampledOptions(false);
  o.near_view_jitter = 0.2;  // with view sampling
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = SampledOptions(false);
  o.view_sampling->min_distance = 0;
  EXPECT_NE(o.Validate().message().find("distance"), absl::string_view::npos) << o.Validate();

  // No views, and a target of the wrong size.
  auto model = InitialElasticModel(Scene(), Targets(), SmallOptions());
  ASSERT_TRUE(model.ok());
  EXPECT_FALSE(ElasticTrainer::Create(*model, {}, SmallOptions()).ok());
  std::vector<TrainingView> wrong = Targets();
  wrong[0].target = Image(8, 8);
  EXPECT_EQ(ElasticTrainer::Create(*model, wrong, SmallOptions()).status().code(), absl::StatusCode::kInvalidArgument);

  // Checkpoints: missing, for another seed, for other targets, damaged.
  EXPECT_EQ(ElasticTrainer::LoadCheckpoint(TempPath("missing.ckpt"), Targets(), SmallOptions()).status().code(),
            absl::StatusCode::kNotFound);
  auto t = NewTrainer(SmallOptions());
  RunSteps(*t, 1);
  const std::string ckpt = TempPath("bad.ckpt");
  ASSERT_TRUE(t->SaveCheckpoint(ckpt).ok());
  TrainOptions other_seed = SmallOptions();
  other_seed.seed = 99;
  EXPECT_EQ(ElasticTrainer::LoadCheckpoint(ckpt, Targets(), other_seed).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<TrainingView> other_targets = Targets();
  other_targets[1].target.pixels[0] += 0.5f;
  EXPECT_EQ(ElasticTrainer::LoadCheckpoint(ckpt, other_targets, SmallOptions()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto bytes = ReadFileToString(ckpt);
  ASSERT_TRUE(bytes.ok());
  std::string damaged = *bytes;
  damaged[damaged.size() / 2] ^= 0x10;
  ASSERT_TRUE(WriteFileAtomically(ckpt, damaged).ok());
  EXPECT_EQ(ElasticTrainer::LoadCheckpoint(ckpt, Targets(), SmallOptions()).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace flexgs

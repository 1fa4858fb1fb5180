// MakeHeuristicModel: Global Importance and the field box exactly as computed on their
// own, the provenance, ladder and summary the server and `flexgs elasticize` record, a
// model the bundle writer accepts, and the errors.
#include "elastic/heuristic_model.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "elastic/model_bundle.h"
#include "gtest/gtest.h"
#include "render/cpu_rasterizer.h"
#include "render/global_importance.h"
#include "scene/orbit.h"
#include "scene/synthetic_scene.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

GaussianCloud Scene() { return MakeSyntheticScene({.count = 400, .sh_degree = 1, .seed = 3}); }

std::vector<Camera> Views(const GaussianCloud& cloud, int count, int width, int height) {
  OrbitOptions orbit;
  orbit.count = count;
  orbit.width = width;
  orbit.height = height;
  absl::StatusOr<std::vector<Camera>> cams = MakeOrbitCameras(cloud, orbit);
  EXPECT_TRUE(cams.ok()) << cams.status();
  return cams.ok() ? *cams : std::vector<Camera>{};
}

TEST(HeuristicModelTest, IsGlobalImportanceAndTheExtentBoxOfTheCloud) {
  const GaussianCloud cloud = Scene();
  const std::vector<Camera> cams = Views(cloud, 3, 48, 32);
  HeuristicModelOptions options;
  options.threads = 2;
  options.source = "ply";
  absl::StatusOr<ElasticModel> model = MakeHeuristicModel(cloud, cams, options);
  ASSERT_TRUE(model.ok()) << model.status();

  CpuRasterizer raster(1);  // GI does not depend on the thread count
  absl::StatusOr<std::vector<float>> gi = ComputeGlobalImportance(cloud, cams, {}, raster);
  ASSERT_TRUE(gi.ok()) << gi.status();
  EXPECT_EQ(model->global_importance, *gi);
  EXPECT_EQ(model->gaussians.positions, cloud.positions);
  EXPECT_EQ(model->gaussians.sh_rest, cloud.sh_rest);
  const FieldNormalization box = ExtentNormalization(cloud);
  EXPECT_EQ(model->normalization.aabb_min, box.aabb_min);
  EXPECT_EQ(model->normalization.aabb_max, box.aabb_max);
  EXPECT_EQ(model->normalization.ratio_scale, box.ratio_scale);
  EXPECT_EQ(model->normalization.ratio_offset, box.ratio_offset);

  EXPECT_EQ(model->gi.variant, "flexgs");
  EXPECT_EQ(model->gi.views, 3);
  EXPECT_EQ(model->gi.width, 48);
  EXPECT_EQ(model->gi.height, 32);
  EXPECT_EQ(model->ladder, ElasticModel{}.ladder);
  EXPECT_EQ(model->coverage_share, 0.0);
  EXPECT_TRUE(model->heuristic());
  EXPECT_FALSE(model->field.has_value());
  EXPECT_TRUE(model->digest.empty()) << "the digest is the caller's (bundle writer or server)";
  // The server's summary, byte for byte (its digest does not cover it, bundles do).
  EXPECT_EQ(model->training_summary_json, R"({"mode":"heuristic","source":"ply"})");
}

TEST(HeuristicModelTest, RecordsTheVariantLadderCoverageAndGiCameras) {
  const GaussianCloud cloud = Scene();
  const std::vector<Camera> cams = Views(cloud, 2, 40, 40);
  HeuristicModelOptions options;
  options.gi_variant = GiVariant::kLightGaussianVolume;
  options.ladder = {0.02, 0.1, 0.3};
  options.coverage_share = 0.25;
  options.source = "scenes/a b.ply";
  options.gi_cameras_json = R"({"kind":"orbit","count":2,"elevation_deg":20.0,"fov_x_deg":50.5})";
  absl::StatusOr<ElasticModel> model = MakeHeuristicModel(cloud, cams, options);
  ASSERT_TRUE(model.ok()) << model.status();

  CpuRasterizer raster(0);
  GlobalImportanceOptions gi_options;
  gi_options.variant = GiVariant::kLightGaussianVolume;
  absl::StatusOr<std::vector<float>> gi = ComputeGlobalImportance(cloud, cams, gi_options, raster);
  ASSERT_TRUE(gi.ok()) << gi.status();
  EXPECT_EQ(model->global_importance, *gi);
  EXPECT_EQ(model->gi.variant, "lightgaussian_volume");
  EXPECT_EQ(model->ladder, (std::vector<double>{0.02, 0.1, 0.3}));
  EXPECT_EQ(model->coverage_share, 0.25);
  // Keys in nlohmann's (sorted) order; the description's numbers keep their text.
  EXPECT_EQ(model->training_summary_json,
            R"({"gi_cameras":{"count":2,"elevation_deg":20.0,"fov_x_deg":50.5,"kind":"orbit"},)"
            R"("mode":"heuristic","source":"scenes/a b.ply"})");

  // What `flexgs elasticize` does next: the bundle writer accepts it and sets the digest.
  const std::string dir = (testing::ScratchDir() / "m.flexgs").string();
  ASSERT_TRUE(WriteModelBundle(dir, *model).ok());
  EXPECT_EQ(model->digest.size(), 64u);
  absl::StatusOr<ElasticModel> back = ReadModelBundle(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->global_importance, model->global_importance);
  EXPECT_EQ(back->training_summary_json, model->training_summary_json);
}

TEST(HeuristicModelTest, NamesEveryGiVariant) {
  EXPECT_STREQ(GiVariantName(GiVariant::kFlexGs), "flexgs");
  EXPECT_STREQ(GiVariantName(GiVariant::kLightGaussianVolume), "lightgaussian_volume");
}

TEST(HeuristicModelTest, RejectsNoViewsAndABadCameraDescription) {
  const GaussianCloud cloud = Scene();
  absl::StatusOr<ElasticModel> none = MakeHeuristicModel(cloud, {}, {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  HeuristicModelOptions options;
  for (const char* bad : {"[1, 2]", "{\"kind\":", "orbit"}) {
    options.gi_cameras_json = bad;
    absl::StatusOr<ElasticModel> model = MakeHeuristicModel(cloud, Views(cloud, 1, 16, 16), options);
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace flexgs

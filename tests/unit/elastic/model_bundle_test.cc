#include "elastic/model_bundle.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>

#include "base/file_io.h"
#include "base/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/ply_io.h"
#include "io/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/support/cloud_equality.h"
#include "tests/support/test_models.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

using ::flexgs::testing::FillRandom;

void FillRandom(DenseLayer& layer, std::mt19937& rng) {
  FillRandom(layer.weight, rng, -1.0f, 1.0f);
  FillRandom(layer.bias, rng, -1.0f, 1.0f);
}

using ::flexgs::testing::RandomCloud;

ElasticModel HeuristicModel(size_t n = 57, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  ElasticModel model;
  model.gaussians = RandomCloud(n, 1, rng);
  model.global_importance.resize(n);
  FillRandom(model.global_importance, rng, 0.0f, 100.0f);
  if (n > 3) model.global_importance[3] = 0.0f;  // zero importance is legal
  model.gi = {"lightgaussian_volume", 24, 320, 240};
  model.normalization.aabb_min = {-3.25f, -2.5f, -1.0f / 3.0f};
  model.normalization.aabb_max = {3.0f, 2.75f, 0.1f};
  model.normalization.ratio_scale = 1.7f;
  model.normalization.ratio_offset = -0.3f;
  model.ladder = {0.01, 0.05, 0.1, 0.15, 1.0};
  model.training_summary_json = R"({"iterations": 0, "note": "heuristic"})";
  return model;
}

TransformFieldConfig SmallFieldConfig() {
  TransformFieldConfig c;
  c.channels = 4;
  c.base_resolution = 8;
  c.multires = {1, 2};
  c.ratio_resolution = 10;
  c.hidden = 16;
  return c;
}

// Every weight random and non-zero, so a round trip that mixed up tensors would show.
ElasticModel FullModel(size_t n = 40, uint32_t seed = 11) {
  ElasticModel model = HeuristicModel(n, seed);
  std::mt19937 rng(seed + 1);
  model.gsnet = GsNetWeights::Init(seed);
  for (DenseLayer& l : model.gsnet->fc1) FillRandom(l, rng);
  for (DenseLayer& l : model.gsnet->fc2) FillRandom(l, rng);
  FillRandom(model.gsnet->head, rng);
  model.field = TransformFieldWeights::Init(SmallFieldConfig(), seed);
  for (HexPlaneLevel& level : model.field->levels) {
    for (auto& plane : level.planes) FillRandom(plane, rng, 0.1f, 2.0f);
  }
  FillRandom(model.field->trunk, rng);
  for (DenseLayer& l : model.field->fc1) FillRandom(l, rng);
  for (DenseLayer& l : model.field->fc2) FillRandom(l, rng);
  model.training_summary_json =
      R"({"iterations": 5000, "loss": {"final": 0.0123, "history": [1, 0.5, 0.25]}, "scene": "guitar"})";
  return model;
}

void ExpectLayersEqual(const DenseLayer& a, const DenseLayer& b, const std::string& what) {
  EXPECT_EQ(a.in, b.in) << what;
  EXPECT_EQ(a.out, b.out) << what;
  EXPECT_EQ(a.weight, b.weight) << what;
  EXPECT_EQ(a.bias, b.bias) << what;
}

void ExpectModelsEqual(const ElasticModel& a, const ElasticModel& b) {
  EXPECT_EQ(a.gi_prior_weight, b.gi_prior_weight);
  EXPECT_EQ(a.pose_at_insertion, b.pose_at_insertion);
  EXPECT_EQ(a.coverage_share, b.coverage_share);
  EXPECT_EQ(a.gsnet_box_inputs, b.gsnet_box_inputs);
  const GaussianCloud& ga = a.gaussians;
  const GaussianCloud& gb = b.gaussians;
  EXPECT_EQ(ga.sh_degree, gb.sh_degree);
  EXPECT_EQ(ga.positions, gb.positions);
  EXPECT_EQ(ga.log_scales, gb.log_scales);
  EXPECT_EQ(ga.rotations, gb.rotations);
  EXPECT_EQ(ga.opacity_logits, gb.opacity_logits);
  EXPECT_EQ(ga.sh_dc, gb.sh_dc);
  EXPECT_EQ(ga.sh_rest, gb.sh_rest);
  EXPECT_EQ(a.global_importance, b.global_importance);
  EXPECT_EQ(a.gi.variant, b.gi.variant);
  EXPECT_EQ(a.gi.views, b.gi.views);
  EXPECT_EQ(a.gi.width, b.gi.width);
  EXPECT_EQ(a.gi.height, b.gi.height);
  EXPECT_EQ(a.normalization.aabb_min, b.normalization.aabb_min);
  EXPECT_EQ(a.normalization.aabb_max, b.normalization.aabb_max);
  EXPECT_EQ(a.normalization.ratio_scale, b.normalization.ratio_scale);
  EXPECT_EQ(a.normalization.ratio_offset, b.normalization.ratio_offset);
  EXPECT_EQ(a.ladder, b.ladder);
  EXPECT_EQ(a.training_summary_json, b.training_summary_json);
  EXPECT_EQ(a.digest, b.digest);
  ASSERT_EQ(a.gsnet.has_value(), b.gsnet.has_value());
  if (a.gsnet) {
    for (int i = 0; i < 4; ++i) {
      ExpectLayersEqual(a.gsnet->fc1[i], b.gsnet->fc1[i], "gsnet fc1");
      ExpectLayersEqual(a.gsnet->fc2[i], b.gsnet->fc2[i], "gsnet fc2");
    }
    ExpectLayersEqual(a.gsnet->head, b.gsnet->head, "gsnet head");
  }
  ASSERT_EQ(a.field.has_value(), b.field.has_value());
  if (a.field) {
    const TransformFieldConfig& ca = a.field->config;
    const TransformFieldConfig& cb = b.field->config;
    EXPECT_EQ(ca.channels, cb.channels);
    EXPECT_EQ(ca.base_resolution, cb.base_resolution);
    EXPECT_EQ(ca.multires, cb.multires);
    EXPECT_EQ(ca.ratio_resolution, cb.ratio_resolution);
    EXPECT_EQ(ca.hidden, cb.hidden);
    ASSERT_EQ(a.field->levels.size(), b.field->levels.size());
    for (size_t l = 0; l < a.field->levels.size(); ++l) {
      EXPECT_EQ(a.field->levels[l].spatial_resolution, b.field->levels[l].spatial_resolution);
      EXPECT_EQ(a.field->levels[l].ratio_resolution, b.field->levels[l].ratio_resolution);
      for (int p = 0; p < 6; ++p) EXPECT_EQ(a.field->levels[l].planes[p], b.field->levels[l].planes[p]);
    }
    ExpectLayersEqual(a.field->trunk, b.field->trunk, "trunk");
    for (int h = 0; h < 3; ++h) {
      ExpectLayersEqual(a.field->fc1[h], b.field->fc1[h], "field fc1");
      ExpectLayersEqual(a.field->fc2[h], b.field->fc2[h], "field fc2");
    }
  }
}

std::string ReadAll(const fs::path& path) {
  auto data = ReadFileToString(path.string());
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *data : std::string();
}

void WriteAll(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  ASSERT_TRUE(out.good()) << path;
}

// Edits manifest.json with `edit`, then refreshes the file hashes and the digest
// so that only the intended inconsistency remains.
void RewriteManifest(const fs::path& dir, const std::function<void(json&)>& edit = nullptr) {
  json manifest = json::parse(ReadAll(dir / kBundleManifestFile));
  for (const char* name : {kBundlePlyFile, kBundleTensorFile}) {
    const std::string data = ReadAll(dir / name);
    manifest["files"][name] = {{"sha256", Sha256Hex(data)}, {"bytes", data.size()}};
  }
  if (edit) edit(manifest);
  json content = manifest;
  content.erase("digest");
  manifest["digest"] = Sha256Hex(content.dump());
  WriteAll(dir / kBundleManifestFile, manifest.dump(2));
}

// Rewrites elastic.safetensors through `edit` and fixes the manifest, so the
// reader gets past the checksums to the tensor checks.
void RewriteTensors(const fs::path& dir, const std::function<void(TensorMap&)>& edit) {
  auto tensors = ParseSafetensors(ReadAll(dir / kBundleTensorFile));
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  edit(*tensors);
  const std::string bytes = SerializeSafetensors(*tensors);
  ASSERT_FALSE(bytes.empty());
  WriteAll(dir / kBundleTensorFile, bytes);
  RewriteManifest(dir);
}

void ExpectReadFails(const fs::path& dir, absl::StatusCode code, const std::string& reason) {
  auto read = ReadModelBundle(dir.string());
  ASSERT_FALSE(read.ok()) << "expected failure: " << reason;
  EXPECT_EQ(read.status().code(), code) << read.status();
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(reason));
}

// A freshly written full bundle in a scratch directory.
fs::path WriteFullBundle(ElasticModel* out = nullptr) {
  const fs::path dir = testing::ScratchDir() / "scene.flexgs";
  ElasticModel model = FullModel();
  const absl::Status s = WriteModelBundle(dir.string(), model);
  EXPECT_TRUE(s.ok()) << s;
  if (out) *out = std::move(model);
  return dir;
}

TEST(ModelBundleTest, HeuristicRoundTrip) {
  const fs::path dir = testing::ScratchDir() / "heuristic.flexgs";
  ElasticModel model = HeuristicModel();
  ASSERT_TRUE(WriteModelBundle(dir.string(), model).ok());
  EXPECT_TRUE(IsSha256Hex(model.digest));
  EXPECT_EQ(model.training_summary_json, R"({"iterations":0,"note":"heuristic"})") << "normalised";
  EXPECT_TRUE(fs::exists(dir / kBundlePlyFile));
  EXPECT_TRUE(fs::exists(dir / kBundleTensorFile));
  EXPECT_TRUE(fs::exists(dir / kBundleManifestFile));

  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->heuristic());
  EXPECT_FALSE(read->field.has_value());
  ExpectModelsEqual(model, *read);

  // Heuristic bundles hold only the GI tensor.
  auto tensors = ParseSafetensors(ReadAll(dir / kBundleTensorFile));
  ASSERT_TRUE(tensors.ok());
  ASSERT_EQ(tensors->size(), 1u);
  EXPECT_EQ(tensors->at("gi").shape, std::vector<int64_t>({57}));

  const json manifest = json::parse(ReadAll(dir / kBundleManifestFile));
  EXPECT_EQ(manifest["format"], "flexgs-elastic-model");
  EXPECT_EQ(manifest["format_version"], 1);
  EXPECT_TRUE(manifest["field_config"].is_null());
  EXPECT_EQ(manifest["has_gsnet"], false);
  EXPECT_EQ(manifest["gi"]["variant"], "lightgaussian_volume");
  EXPECT_EQ(manifest["gi"]["tensor"], "gi");
  EXPECT_EQ(manifest["digest"], model.digest);
}

TEST(ModelBundleTest, FullRoundTrip) {
  ElasticModel model;
  const fs::path dir = WriteFullBundle(&model);
  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_FALSE(read->heuristic());
  ASSERT_TRUE(read->field.has_value());
  ExpectModelsEqual(model, *read);
  EXPECT_TRUE(read->gsnet->Validate().ok());
  EXPECT_TRUE(read->field->Validate().ok());

  // The stage-2 Gaussians are a standard PLY any tool reads.
  auto cloud = ReadGaussianPly((dir / kBundlePlyFile).string());
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_EQ(cloud->positions, model.gaussians.positions);
  EXPECT_EQ(cloud->sh_rest, model.gaussians.sh_rest);

  // Tensor names and shapes as documented in core/elastic/model_bundle.h.
  auto tensors = ParseSafetensors(ReadAll(dir / kBundleTensorFile));
  ASSERT_TRUE(tensors.ok());
  EXPECT_EQ(tensors->size(), 1u + 18 + 12 + 2 + 12);  // gi, gsnet, field planes, trunk, heads
  EXPECT_EQ(tensors->at("gsnet.fc1.rotation.weight").shape, std::vector<int64_t>({32, 4}));
  EXPECT_EQ(tensors->at("gsnet.fc2.ratio.bias").shape, std::vector<int64_t>({32}));
  EXPECT_EQ(tensors->at("gsnet.head.weight").shape, std::vector<int64_t>({2, 128}));
  EXPECT_EQ(tensors->at("field.level1.xe").shape, std::vector<int64_t>({4, 10, 16}));
  EXPECT_EQ(tensors->at("field.level0.yz").shape, std::vector<int64_t>({4, 8, 8}));
  EXPECT_EQ(tensors->at("field.trunk.weight").shape, std::vector<int64_t>({16, 8}));
  EXPECT_EQ(tensors->at("field.rotation.fc2.weight").shape, std::vector<int64_t>({4, 16}));
  EXPECT_EQ(tensors->at("field.level1.ze").data, model.field->levels[1].planes[5]);
  EXPECT_EQ(tensors->at("gsnet.fc1.scale.weight").data, model.gsnet->fc1[2].weight);

  auto digest = ReadModelDigest(dir.string());
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, model.digest);
}

TEST(ModelBundleTest, DigestStableAcrossWritesAndSensitiveToWeights) {
  const fs::path root = testing::ScratchDir();
  ElasticModel a = FullModel();
  ElasticModel b = FullModel();
  ASSERT_TRUE(WriteModelBundle((root / "a.flexgs").string(), a).ok());
  ASSERT_TRUE(WriteModelBundle((root / "b.flexgs").string(), b).ok());
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(ReadAll(root / "a.flexgs" / kBundleManifestFile), ReadAll(root / "b.flexgs" / kBundleManifestFile));
  const std::string first = a.digest;
  // Rewriting in place (replacing an existing bundle) gives the same digest.
  ASSERT_TRUE(WriteModelBundle((root / "a.flexgs").string(), a).ok());
  EXPECT_EQ(a.digest, first);

  b.field->fc2[1].weight[3] += 1e-3f;
  ASSERT_TRUE(WriteModelBundle((root / "b.flexgs").string(), b).ok());
  EXPECT_NE(b.digest, first);
  ElasticModel c = FullModel();
  c.gaussians.opacity_logits[0] += 1.0f;
  ASSERT_TRUE(WriteModelBundle((root / "c.flexgs").string(), c).ok());
  EXPECT_NE(c.digest, first);
  ElasticModel d = FullModel();
  d.ladder.back() = 0.9;
  ASSERT_TRUE(WriteModelBundle((root / "d.flexgs").string(), d).ok());
  EXPECT_NE(d.digest, first);

  auto read = ReadModelBundle((root / "b.flexgs").string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->digest, b.digest);
}

TEST(ModelBundleTest, FlippedByteInEachFileFailsChecksum) {
  for (const char* name : {kBundlePlyFile, kBundleTensorFile}) {
    const fs::path dir = WriteFullBundle();
    std::string data = ReadAll(dir / name);
    data[data.size() / 2] ^= 0x01;
    WriteAll(dir / name, data);
    ExpectReadFails(dir, absl::StatusCode::kDataLoss, std::string(name) + ": SHA-256 mismatch (manifest ");
  }
}

TEST(ModelBundleTest, TruncatedOrExtendedFileFailsSize) {
  const fs::path dir = WriteFullBundle();
  std::string data = ReadAll(dir / kBundleTensorFile);
  WriteAll(dir / kBundleTensorFile, data.substr(0, data.size() - 4));
  ExpectReadFails(dir, absl::StatusCode::kDataLoss, "elastic.safetensors: size mismatch (manifest ");
  WriteAll(dir / kBundleTensorFile, data + "xx");
  ExpectReadFails(dir, absl::StatusCode::kDataLoss, "bytes, file " + std::to_string(data.size() + 2) + " bytes)");
}

TEST(ModelBundleTest, WrongShapeRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir, [](TensorMap& t) {
    t["field.trunk.weight"].shape = {16, 4};
    t["field.trunk.weight"].data.resize(64);
  });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument,
                  "elastic.safetensors: tensor field.trunk.weight has shape [16, 4], expected [16, 8]");
}

TEST(ModelBundleTest, TransposedShapeRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir, [](TensorMap& t) { t["gsnet.fc1.xyz.weight"].shape = {3, 32}; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument,
                  "tensor gsnet.fc1.xyz.weight has shape [3, 32], expected [32, 3]");
}

TEST(ModelBundleTest, MissingTensorRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir, [](TensorMap& t) { t.erase("gsnet.head.weight"); });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "missing tensor gsnet.head.weight");
}

TEST(ModelBundleTest, UnexpectedTensorRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir, [](TensorMap& t) { t["field.level2.xy"] = {{1}, {1.0f}}; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "unexpected tensor field.level2.xy");
}

TEST(ModelBundleTest, NaNWeightRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir,
                 [](TensorMap& t) { t["gsnet.fc2.scale.weight"].data[5] = std::numeric_limits<float>::quiet_NaN(); });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument,
                  "tensor gsnet.fc2.scale.weight has a non-finite value (nan) at index 5");
}

TEST(ModelBundleTest, InfinitePlaneValueRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir, [](TensorMap& t) { t["field.level0.xy"].data[0] = -std::numeric_limits<float>::infinity(); });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "tensor field.level0.xy has a non-finite value (-inf)");
}

TEST(ModelBundleTest, GiLengthMismatchRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir, [](TensorMap& t) {
    t["gi"].shape = {39};
    t["gi"].data.resize(39);
  });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "tensor gi has shape [39], expected [40]");
}

TEST(ModelBundleTest, NegativeGiRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteTensors(dir, [](TensorMap& t) { t["gi"].data[7] = -1.0f; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "tensor gi has a negative value (-1) at index 7");
}

TEST(ModelBundleTest, WrongDtypeRejected) {
  const fs::path dir = WriteFullBundle();
  std::string data = ReadAll(dir / kBundleTensorFile);
  const size_t at = data.find("\"F32\"");
  ASSERT_NE(at, std::string::npos);
  data.replace(at, 5, "\"I32\"");
  WriteAll(dir / kBundleTensorFile, data);
  RewriteManifest(dir);
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "has dtype I32; only F32 is supported");
}

TEST(ModelBundleTest, FutureVersionRejected) {
  const fs::path dir = WriteFullBundle();
  RewriteManifest(dir, [](json& m) {
    m["format_version"] = 2;
    m["some_new_key"] = "from the future";
  });
  ExpectReadFails(dir, absl::StatusCode::kFailedPrecondition, "format_version 2 is newer than this build supports (1)");
  auto digest = ReadModelDigest(dir.string());
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kFailedPrecondition);
}

// A GI-prior selector is recorded in an optional manifest key: bundles without it keep
// their bytes (and digests), bundles with it read back the same weight, and a prior
// without a GsNet or out of range is refused.
TEST(ModelBundleTest, GiPriorSelectorRoundTrip) {
  const fs::path plain = WriteFullBundle();
  EXPECT_FALSE(json::parse(ReadAll(plain / kBundleManifestFile)).contains("selector"));

  const fs::path dir = testing::ScratchDir() / "prior.flexgs";
  ElasticModel model = FullModel();
  model.gi_prior_weight = 1.5;
  ASSERT_TRUE(WriteModelBundle(dir.string(), model).ok());
  EXPECT_EQ(json::parse(ReadAll(dir / kBundleManifestFile))["selector"]["gi_prior_weight"], 1.5);
  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectModelsEqual(model, *read);
  EXPECT_NE(model.digest, ReadModelDigest(plain.string()).value_or(""));

  const std::string good = ReadAll(dir / kBundleManifestFile);
  RewriteManifest(dir, [](json& m) { m["selector"]["gi_prior_weight"] = -1.0; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "selector.gi_prior_weight");
  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["selector"]["other"] = 1; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "unknown key \"selector.other\"");

  ElasticModel heuristic = HeuristicModel();
  heuristic.gi_prior_weight = 1.0;
  const absl::Status st = WriteModelBundle((testing::ScratchDir() / "bad.flexgs").string(), heuristic);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("no GsNet"), std::string::npos) << st;
}

// Merged levels are recorded in the optional "level_attributes" key, like field_pose:
// absent unless set, read back, refused with another value.
TEST(ModelBundleTest, MergedLevelsRoundTrip) {
  const fs::path plain = WriteFullBundle();
  EXPECT_FALSE(json::parse(ReadAll(plain / kBundleManifestFile)).contains("level_attributes"));
  const fs::path dir = testing::ScratchDir() / "merged.flexgs";
  ElasticModel model = HeuristicModel();
  model.merged_levels = true;
  ASSERT_TRUE(WriteModelBundle(dir.string(), model).ok());
  EXPECT_EQ(json::parse(ReadAll(dir / kBundleManifestFile))["level_attributes"], "merged");
  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->merged_levels);
  RewriteManifest(dir, [](json& m) { m["level_attributes"] = "selected"; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "level_attributes");

  // The replacement tolerance rides along, only with merged levels and in range.
  const fs::path tol = testing::ScratchDir() / "merged-tolerance.flexgs";
  model.replacement_tolerance = 2.0;
  ASSERT_TRUE(WriteModelBundle(tol.string(), model).ok());
  read = ReadModelBundle(tol.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->replacement_tolerance, 2.0);
  RewriteManifest(tol, [](json& m) { m["replacement_tolerance"] = 17.0; });
  ExpectReadFails(tol, absl::StatusCode::kInvalidArgument, "replacement_tolerance");
  RewriteManifest(tol, [](json& m) {
    m["replacement_tolerance"] = 2.0;
    m.erase("level_attributes");
  });
  ExpectReadFails(tol, absl::StatusCode::kInvalidArgument, "replacement_tolerance");
  // So do the merge's hard-EM passes (written only when not the default).
  EXPECT_FALSE(json::parse(ReadAll(tol / kBundleManifestFile)).contains("merge_refine_passes"));
  EXPECT_EQ(read->merge_refine_passes, kDefaultMergeRefinePasses);
  const fs::path passes = testing::ScratchDir() / "merged-passes.flexgs";
  model.merge_refine_passes = 0;
  ASSERT_TRUE(WriteModelBundle(passes.string(), model).ok());
  read = ReadModelBundle(passes.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->merge_refine_passes, 0);
  RewriteManifest(passes, [](json& m) { m["merge_refine_passes"] = 1.5; });
  ExpectReadFails(passes, absl::StatusCode::kInvalidArgument, "merge_refine_passes");
  RewriteManifest(passes, [](json& m) { m["merge_refine_passes"] = 9; });
  ExpectReadFails(passes, absl::StatusCode::kInvalidArgument, "merge_refine_passes");
  ElasticModel unmerged = HeuristicModel();
  unmerged.merge_refine_passes = 1;
  EXPECT_EQ(WriteModelBundle((testing::ScratchDir() / "bad-passes.flexgs").string(), unmerged).code(),
            absl::StatusCode::kInvalidArgument);
  unmerged.merge_refine_passes = kDefaultMergeRefinePasses;
  unmerged.replacement_tolerance = 1.0;
  EXPECT_EQ(WriteModelBundle((testing::ScratchDir() / "bad-tolerance.flexgs").string(), unmerged).code(),
            absl::StatusCode::kInvalidArgument);
}

// Refined rungs (flexgs refine) round-trip bit for bit with their ratios and digests, and
// a bundle whose refined rungs do not fit the model is refused naming what is wrong.
TEST(ModelBundleTest, RefinedRungsRoundTrip) {
  ElasticModel model = HeuristicModel(200, 5);
  model.merged_levels = true;
  std::mt19937 rng(9);
  for (double ratio : {0.05, 0.15}) {
    RefinedRung r;
    r.ratio = ratio;
    r.held = RandomCloud(static_cast<size_t>(ratio * 200), 1, rng);
    r.held_digest = 0x0123456789abcdefULL + static_cast<uint64_t>(ratio * 100);
    model.refined_rungs.push_back(std::move(r));
  }
  const fs::path root = testing::ScratchDir();
  const fs::path dir = root / "refined.flexgs";
  const absl::Status written = WriteModelBundle(dir.string(), model);
  ASSERT_TRUE(written.ok()) << written;
  const json manifest = json::parse(ReadAll(dir / kBundleManifestFile));
  ASSERT_EQ(manifest["refined_rungs"].size(), 2u);
  EXPECT_EQ(manifest["refined_rungs"][0]["held_digest"], "0123456789abcdf4");
  EXPECT_EQ(manifest["refined_rungs"][1]["gaussians"], 30);
  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectModelsEqual(model, *read);
  ASSERT_EQ(read->refined_rungs.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(read->refined_rungs[k].ratio, model.refined_rungs[k].ratio);
    EXPECT_EQ(read->refined_rungs[k].held_digest, model.refined_rungs[k].held_digest);
    testing::ExpectSameCloud(read->refined_rungs[k].held, model.refined_rungs[k].held);
  }
  // Without refined rungs the key and tensors are absent (older bundles keep their digests).
  ElasticModel plain = model;
  plain.refined_rungs.clear();
  const fs::path plain_dir = root / "unrefined.flexgs";
  ASSERT_TRUE(WriteModelBundle(plain_dir.string(), plain).ok());
  EXPECT_FALSE(json::parse(ReadAll(plain_dir / kBundleManifestFile)).contains("refined_rungs"));
  EXPECT_NE(plain.digest, model.digest);

  // Damaged manifests and tensors.
  RewriteManifest(dir, [](json& m) { m["refined_rungs"][0]["held_digest"] = "xyz"; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "refined_rungs[0].held_digest");
  RewriteManifest(dir, [](json& m) {
    m["refined_rungs"][0]["held_digest"] = "0123456789abcdf4";
    m["refined_rungs"][0]["ratio"] = 0.07;
  });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "not a rung of the ladder");
  RewriteManifest(dir, [](json& m) {
    m["refined_rungs"][0]["ratio"] = 0.05;
    m["refined_rungs"][0]["gaussians"] = 11;
  });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "refined.0.");
  RewriteManifest(dir, [](json& m) {
    m["refined_rungs"][0]["gaussians"] = 10;
    m.erase("level_attributes");
  });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "only with merged levels");
  RewriteManifest(dir, [](json& m) { m["level_attributes"] = "merged"; });
  RewriteTensors(dir, [](TensorMap& t) { t.at("refined.1.opacity").data[3] = std::nanf(""); });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "tensor refined.1.opacity has a non-finite value");

  ElasticModel unmerged = model;
  unmerged.merged_levels = false;
  EXPECT_EQ(WriteModelBundle((root / "bad-refined.flexgs").string(), unmerged).code(),
            absl::StatusCode::kInvalidArgument);
  ElasticModel shrinking = model;
  std::swap(shrinking.refined_rungs[0].held, shrinking.refined_rungs[1].held);
  EXPECT_EQ(WriteModelBundle((root / "bad-refined2.flexgs").string(), shrinking).code(),
            absl::StatusCode::kInvalidArgument);
}

// Poses fixed at insertion are recorded in the optional "field_pose" key: absent from
// bundles without it (their bytes and digests unchanged), read back when set, and refused
// with another value or without a transform field.
TEST(ModelBundleTest, FieldPoseRoundTrip) {
  const fs::path plain = WriteFullBundle();
  EXPECT_FALSE(json::parse(ReadAll(plain / kBundleManifestFile)).contains("field_pose"));

  const fs::path dir = testing::ScratchDir() / "pose.flexgs";
  ElasticModel model = FullModel();
  model.pose_at_insertion = true;
  ASSERT_TRUE(WriteModelBundle(dir.string(), model).ok());
  EXPECT_EQ(json::parse(ReadAll(dir / kBundleManifestFile))["field_pose"], "insertion");
  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->pose_at_insertion);
  ExpectModelsEqual(model, *read);
  EXPECT_NE(model.digest, ReadModelDigest(plain.string()).value_or(""));

  RewriteManifest(dir, [](json& m) { m["field_pose"] = "per-level"; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "field_pose");

  ElasticModel heuristic = HeuristicModel();
  heuristic.pose_at_insertion = true;
  const absl::Status st = WriteModelBundle((testing::ScratchDir() / "bad-pose.flexgs").string(), heuristic);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("transform field"), std::string::npos) << st;
}

// The selector's other optional keys: a coverage share and GsNet's box inputs round-trip
// and are refused out of range or on a model they cannot apply to.
TEST(ModelBundleTest, SelectorOptionsRoundTrip) {
  const fs::path dir = testing::ScratchDir() / "selector.flexgs";
  ElasticModel model = FullModel();
  model.coverage_share = 0.25;
  model.gsnet_box_inputs = true;
  ASSERT_TRUE(WriteModelBundle(dir.string(), model).ok());
  const json manifest = json::parse(ReadAll(dir / kBundleManifestFile));
  EXPECT_EQ(manifest["selector"]["coverage_share"], 0.25);
  EXPECT_EQ(manifest["selector"]["gsnet_inputs"], "box");
  EXPECT_FALSE(manifest["selector"].contains("gi_prior_weight"));
  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectModelsEqual(model, *read);

  const std::string good = ReadAll(dir / kBundleManifestFile);
  RewriteManifest(dir, [](json& m) { m["selector"]["coverage_share"] = 1.5; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "selector.coverage_share");
  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["selector"]["gsnet_inputs"] = "raw"; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "selector.gsnet_inputs");
  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["selector"] = json::object(); });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "selector");

  ElasticModel heuristic = HeuristicModel();
  heuristic.coverage_share = 0.5;  // coverage applies to GI-only models too
  ASSERT_TRUE(WriteModelBundle((testing::ScratchDir() / "cov.flexgs").string(), heuristic).ok());
  heuristic.gsnet_box_inputs = true;
  EXPECT_EQ(WriteModelBundle((testing::ScratchDir() / "box.flexgs").string(), heuristic).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ModelBundleTest, ManifestProblemsRejected) {
  const fs::path dir = WriteFullBundle();
  const std::string good = ReadAll(dir / kBundleManifestFile);

  WriteAll(dir / kBundleManifestFile, good.substr(0, good.size() / 2));
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "manifest.json: invalid JSON");
  EXPECT_FALSE(ReadModelDigest(dir.string()).ok());

  WriteAll(dir / kBundleManifestFile, "[1, 2]");
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "manifest.json: not a JSON object");

  // Edited without updating the digest.
  json edited = json::parse(good);
  edited["ladder"] = {0.2, 0.4};
  WriteAll(dir / kBundleManifestFile, edited.dump(2));
  ExpectReadFails(dir, absl::StatusCode::kDataLoss, "manifest.json: digest mismatch");
  EXPECT_EQ(ReadModelDigest(dir.string()).status().code(), absl::StatusCode::kDataLoss);

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["format"] = "something-else"; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "not a flexgs model bundle manifest");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["ladder"] = {0.5, 0.2}; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "ladder is not strictly increasing");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m.erase("bounds"); });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "missing \"bounds\"");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["extra"] = 1; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "unknown key \"extra\"");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["field_config"]["hidden"] = 32; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument,
                  "tensor field.position.fc1.bias has shape [16], expected [32]");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["field_config"]["channels"] = 1000000000; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "field_config out of range");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["has_gsnet"] = false; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "unexpected tensor gsnet.");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["gaussians"] = 41; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument,
                  "gaussians.ply: holds 40 Gaussians of SH degree 1, "
                  "the manifest says 41 of degree 1");

  WriteAll(dir / kBundleManifestFile, good);
  RewriteManifest(dir, [](json& m) { m["files"]["gaussians.ply"]["sha256"] = "ABC"; });
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "\"files.gaussians.ply.sha256\" is not");

  WriteAll(dir / kBundleManifestFile, good);
  WriteAll(dir / kBundleManifestFile, R"({"format": "flexgs-elastic-model", "format_version": 1, "a": 1, "a": 2})");
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "repeats the key \"a\"");

  WriteAll(dir / kBundleManifestFile, std::string(100000, '[') + std::string(100000, ']'));
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument, "nests deeper than");

  WriteAll(dir / kBundleManifestFile, good);
  ASSERT_TRUE(ReadModelBundle(dir.string()).ok());
}

TEST(ModelBundleTest, MissingFilesRejected) {
  {
    const fs::path dir = WriteFullBundle();
    fs::remove(dir / kBundleTensorFile);
    ExpectReadFails(dir, absl::StatusCode::kNotFound, "elastic.safetensors: no such file");
  }
  {
    const fs::path dir = WriteFullBundle();
    fs::remove(dir / kBundlePlyFile);
    ExpectReadFails(dir, absl::StatusCode::kNotFound, "gaussians.ply: no such file");
  }
  {
    const fs::path dir = WriteFullBundle();
    fs::remove(dir / kBundleManifestFile);
    ExpectReadFails(dir, absl::StatusCode::kNotFound, "manifest.json: no such file");
    EXPECT_EQ(ReadModelDigest(dir.string()).status().code(), absl::StatusCode::kNotFound);
  }
  ExpectReadFails(testing::ScratchDir() / "nope.flexgs", absl::StatusCode::kNotFound, "no such file");
}

TEST(ModelBundleTest, NonFiniteGaussiansRejectedNotSanitized) {
  const fs::path dir = WriteFullBundle();
  auto cloud = ReadGaussianPly((dir / kBundlePlyFile).string());
  ASSERT_TRUE(cloud.ok());
  cloud->log_scales[4] = std::numeric_limits<float>::infinity();
  WriteAll(dir / kBundlePlyFile, SerializeGaussianPly(*cloud));
  RewriteManifest(dir);
  ExpectReadFails(dir, absl::StatusCode::kInvalidArgument,
                  "gaussians.ply: Gaussian attribute log_scale has a non-finite value (inf) at index 4");
}

TEST(ModelBundleTest, WriterValidatesModel) {
  const fs::path root = testing::ScratchDir();
  auto expect_rejected = [&](ElasticModel model, const std::string& reason) {
    const fs::path dir = root / "rejected.flexgs";
    const absl::Status s = WriteModelBundle(dir.string(), model);
    EXPECT_FALSE(s.ok()) << reason;
    EXPECT_THAT(std::string(s.message()), HasSubstr(reason));
    EXPECT_FALSE(fs::exists(dir)) << "nothing is written for an invalid model";
    EXPECT_TRUE(model.digest.empty());
  };
  ElasticModel m = HeuristicModel();
  m.global_importance.pop_back();
  expect_rejected(m, "global importance has 56 scores for 57 Gaussians");
  m = HeuristicModel();
  m.global_importance[2] = std::numeric_limits<float>::quiet_NaN();
  expect_rejected(m, "tensor gi has a non-finite value (nan) at index 2");
  m = HeuristicModel();
  m.global_importance[2] = -0.5f;
  expect_rejected(m, "tensor gi has a negative value");
  m = HeuristicModel();
  m.ladder = {0.1, 0.1};
  expect_rejected(m, "ladder is not strictly increasing");
  m.ladder = {0.0, 0.5};
  expect_rejected(m, "ladder[0] = 0 is outside (0, 1]");
  m.ladder = {0.5, 1.5};
  expect_rejected(m, "ladder[1] = 1.5 is outside (0, 1]");
  m.ladder = {};
  expect_rejected(m, "ladder is empty");
  m = HeuristicModel();
  m.normalization.aabb_max[1] = m.normalization.aabb_min[1];
  expect_rejected(m, "bounds axis 1");
  m = HeuristicModel();
  m.gaussians.positions[0] = std::numeric_limits<float>::quiet_NaN();
  expect_rejected(m, "position has a non-finite value");
  m = HeuristicModel();
  m.training_summary_json = "[1, 2]";
  expect_rejected(m, "training summary is not a JSON object");
  m.training_summary_json = "{oops";
  expect_rejected(m, "training summary: invalid JSON");
  m = HeuristicModel();
  m.gi.variant = "";
  expect_rejected(m, "GI variant");
  m = HeuristicModel(0);
  expect_rejected(m, "the model has no Gaussians");
  ElasticModel full = FullModel();
  full.gsnet->head.bias[1] = std::numeric_limits<float>::infinity();
  expect_rejected(full, "gsnet.head.bias");
  full = FullModel();
  full.field->levels[0].planes[2].pop_back();
  expect_rejected(full, "field.level0");
}

TEST(ModelBundleTest, RefusesToWriteIntoForeignDirectory) {
  const fs::path root = testing::ScratchDir();
  const fs::path dir = root / "home";
  fs::create_directories(dir);
  WriteAll(dir / "precious.txt", "keep me");
  ElasticModel model = HeuristicModel();
  const absl::Status s = WriteModelBundle(dir.string(), model);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("holds precious.txt"));
  EXPECT_FALSE(fs::exists(dir / kBundleManifestFile));

  const fs::path file = root / "file";
  WriteAll(file, "x");
  EXPECT_EQ(WriteModelBundle(file.string(), model).code(), absl::StatusCode::kFailedPrecondition);

  // An empty directory, or a half-written bundle (no manifest yet), is fine.
  const fs::path partial = root / "partial.flexgs";
  fs::create_directories(partial);
  WriteAll(partial / kBundlePlyFile, "half");
  ASSERT_TRUE(WriteModelBundle(partial.string(), model).ok());
  EXPECT_TRUE(ReadModelBundle(partial.string()).ok());
}

TEST(ModelBundleTest, ReplacingHeuristicWithFullModel) {
  const fs::path dir = testing::ScratchDir() / "scene.flexgs";
  ElasticModel heuristic = HeuristicModel(40, 11);
  ASSERT_TRUE(WriteModelBundle(dir.string(), heuristic).ok());
  ElasticModel full = FullModel();
  ASSERT_TRUE(WriteModelBundle(dir.string(), full).ok());
  auto read = ReadModelBundle(dir.string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_FALSE(read->heuristic());
  EXPECT_EQ(read->digest, full.digest);
  EXPECT_NE(full.digest, heuristic.digest);
}

// Python's reference package must read our tensors. Debian bookworm does not
// package `safetensors`; the script then falls back to an independent reader
// written from the format specification with numpy, and says so.
TEST(ModelBundleTest, PythonReadsSafetensors) {
  // The first python3 on PATH may be a private interpreter (pyenv, venv) without
  // numpy; Debian's, where python3-numpy installs, is the fallback.
  std::string python;
  for (const char* candidate : {"python3", "/usr/bin/python3"}) {
    const std::string probe = std::string(candidate) + " -c 'import numpy' >/dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) {
      python = candidate;
      break;
    }
  }
  if (python.empty()) GTEST_SKIP() << "no python3 with numpy (Debian package python3-numpy)";
  const fs::path script = fs::path(__FILE__).parent_path() / ".." / ".." / "support" / "check_safetensors.py";
  if (!fs::exists(script)) GTEST_SKIP() << "tests/support/check_safetensors.py not found from " << __FILE__;
  ElasticModel model;
  const fs::path dir = WriteFullBundle(&model);

  // Expectations: every tensor's shape and a checksum-like sum, plus exact values of a few.
  json expected = json::object();
  auto tensors = ParseSafetensors(ReadAll(dir / kBundleTensorFile));
  ASSERT_TRUE(tensors.ok());
  for (const auto& [name, t] : *tensors) {
    double sum = 0;
    for (float v : t.data) sum += v;
    std::vector<double> head;
    for (size_t i = 0; i < t.data.size() && i < 4; ++i) head.push_back(t.data[i]);
    expected[name] = {{"shape", t.shape}, {"sum", sum}, {"head", head}};
  }
  EXPECT_EQ(expected["gsnet.head.weight"]["head"][0].get<double>(), model.gsnet->head.weight[0]);
  const fs::path expected_path = dir.parent_path() / "expected.json";
  WriteAll(expected_path, expected.dump());
  const fs::path log = dir.parent_path() / "python.log";
  const std::string cmd = python + " '" + script.string() + "' '" + (dir / kBundleTensorFile).string() + "' '" +
                          expected_path.string() + "' >'" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string output = ReadAll(log);
  std::cout << output;
  EXPECT_EQ(rc, 0) << output;
  EXPECT_THAT(output, HasSubstr("OK: 45 tensors"));
}

}  // namespace
}  // namespace flexgs

// In-process tests of the gRPC scene server: a real grpc::Server on 127.0.0.1:0
// serving a scenes directory written by the test (a heuristic bundle, a bundle with
// random networks, a plain PLY, a large bundle for backpressure, and broken ones).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <Eigen/Core>
#include <Eigen/Geometry>

#include "absl/strings/str_format.h"
#include "base/crc32c.h"
#include "base/file_io.h"
#include "base/random.h"
#include "elastic/elastic_selection.h"
#include "elastic/model_bundle.h"
#include "flexgs/v1/scene_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "io/ply_io.h"
#include "server/plan_cache.h"
#include "server/scene_registry.h"
#include "server/scene_service.h"
#include "server/script_warmer.h"
#include "server/server_metrics.h"
#include "spdlog/spdlog.h"
#include "stream/chunk_codec.h"
#include "stream/level_planner.h"
#include "stream/resume_token.h"
#include "stream/stream_budget.h"
#include "stream/stream_script.h"
#include "tests/support/cloud_equality.h"
#include "tests/support/test_models.h"

namespace flexgs::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Scenes

using ::flexgs::testing::FillRandom;

using ::flexgs::testing::RandomCloud;

FieldNormalization BoundsOf(const GaussianCloud& c) {
  FieldNormalization n;
  n.aabb_min = {INFINITY, INFINITY, INFINITY};
  n.aabb_max = {-INFINITY, -INFINITY, -INFINITY};
  for (size_t i = 0; i < c.size(); ++i) {
    for (int d = 0; d < 3; ++d) {
      n.aabb_min[d] = std::min(n.aabb_min[d], c.positions[i * 3 + d]);
      n.aabb_max[d] = std::max(n.aabb_max[d], c.positions[i * 3 + d]);
    }
  }
  return n;
}

ElasticModel HeuristicModel(size_t n, int sh_degree, uint32_t seed, std::vector<double> ladder) {
  std::mt19937 rng(seed);
  ElasticModel model;
  model.gaussians = RandomCloud(n, sh_degree, rng);
  model.global_importance.resize(n);
  FillRandom(model.global_importance, rng, 0.0f, 100.0f);
  model.gi = {"flexgs", 16, 256, 256};
  model.normalization = BoundsOf(model.gaussians);
  model.ladder = std::move(ladder);
  return model;
}

void FillRandom(DenseLayer& layer, std::mt19937& rng, float scale) {
  FillRandom(layer.weight, rng, -scale, scale);
  FillRandom(layer.bias, rng, -scale, scale);
}

// GsNet and transform field with random (moderate) weights: rankings change with the
// ratio and every level patches the Gaussians sent before.
ElasticModel NetworkModel(size_t n, uint32_t seed) {
  ElasticModel model = HeuristicModel(n, 1, seed, {0.1, 0.3, 0.6});
  std::mt19937 rng(seed + 1);
  model.gsnet = GsNetWeights::Init(seed);
  for (DenseLayer& l : model.gsnet->fc1) FillRandom(l, rng, 1.0f);
  for (DenseLayer& l : model.gsnet->fc2) FillRandom(l, rng, 1.0f);
  FillRandom(model.gsnet->head, rng, 1.0f);
  TransformFieldConfig c;
  c.channels = 4;
  c.base_resolution = 8;
  c.multires = {1, 2};
  c.ratio_resolution = 10;
  c.hidden = 16;
  model.field = TransformFieldWeights::Init(c, seed);
  for (HexPlaneLevel& level : model.field->levels) {
    for (auto& plane : level.planes) FillRandom(plane, rng, 0.1f, 1.0f);
  }
  FillRandom(model.field->trunk, rng, 0.3f);
  for (DenseLayer& l : model.field->fc1) FillRandom(l, rng, 0.3f);
  for (DenseLayer& l : model.field->fc2) FillRandom(l, rng, 0.1f);
  model.training_summary_json = R"({"note": "random networks for server tests"})";
  return model;
}

// One scenes directory per test process, loaded once.
struct Scenes {
  fs::path dir;
  SceneRegistry registry;
};

const Scenes& TestScenes() {
  static Scenes* scenes = [] {
    spdlog::set_level(spdlog::level::warn);
    auto* s = new Scenes;
    s->dir = fs::temp_directory_path() / "flexgs-tests" / ("server_test-" + std::to_string(::getpid()));
    fs::remove_all(s->dir);
    fs::create_directories(s->dir);
    ElasticModel small = HeuristicModel(3000, 1, 7, {0.05, 0.1, 0.25, 0.5});
    EXPECT_TRUE(WriteModelBundle((s->dir / "small.flexgs").string(), small).ok());
    ElasticModel net = NetworkModel(2000, 11);
    EXPECT_TRUE(WriteModelBundle((s->dir / "net.flexgs").string(), net).ok());
    // Large and incompressible (random SH 3, lossless): ~19 MB at ratio 1, far more
    // than the loopback socket buffers and HTTP/2 windows hold.
    ElasticModel big = HeuristicModel(80'000, 3, 5, {0.25, 0.5});
    EXPECT_TRUE(WriteModelBundle((s->dir / "big.flexgs").string(), big).ok());
    std::mt19937 rng(3);
    EXPECT_TRUE(WriteGaussianPly((s->dir / "plain.ply").string(), RandomCloud(400, 0, rng)).ok());
    // Broken scenes are skipped, not fatal.
    EXPECT_TRUE(WriteFileAtomically((s->dir / "broken.ply").string(), "ply\nformat nonsense\n").ok());
    fs::create_directories(s->dir / "empty.flexgs");
    SceneLoadOptions load;
    load.gi_views = 4;
    load.gi_size = 64;
    EXPECT_TRUE(s->registry.LoadDirectory(s->dir.string(), load).ok());
    std::atexit([] { fs::remove_all(TestScenes().dir); });
    return s;
  }();
  return *scenes;
}

// ---------------------------------------------------------------------------
// Server and client helpers

constexpr char kServiceName[] = "flexgs.v1.SceneService";

class TestServer {
 public:
  explicit TestServer(SceneServiceOptions options = {}, PlanCache::Options cache_options = {}, bool ready = true) {
    PlanCache::Hooks hooks;
    hooks.on_hit = [this] { metrics_.PlanCacheHit(); };
    hooks.on_miss = [this] { metrics_.PlanCacheMiss(); };
    hooks.on_computed = [this](double s) { metrics_.PlanComputed(s); };
    hooks.on_size = [this](uint64_t entries, uint64_t bytes) { metrics_.PlanCacheSize(entries, bytes); };
    cache_ = std::make_unique<PlanCache>(cache_options, hooks);
    service_ = std::make_unique<SceneService>(&TestScenes().registry, cache_.get(), &metrics_, options);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(64 << 10);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    EXPECT_GT(port_, 0);
    server_->GetHealthCheckService()->SetServingStatus("", false);
    server_->GetHealthCheckService()->SetServingStatus(kServiceName, false);
    if (ready) SetReady();
  }
  ~TestServer() {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
  }
  void SetReady() {
    service_->SetReady(true);
    server_->GetHealthCheckService()->SetServingStatus("", true);
    server_->GetHealthCheckService()->SetServingStatus(kServiceName, true);
  }

  std::shared_ptr<grpc::Channel> Channel(grpc::ChannelArguments args = {}) const {
    args.SetMaxReceiveMessageSize(8 << 20);
    return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials(), args);
  }
  std::unique_ptr<v1::SceneService::Stub> Stub() const { return v1::SceneService::NewStub(Channel()); }

  SceneService& service() { return *service_; }
  PlanCache& cache() { return *cache_; }
  ServerMetrics& metrics() { return metrics_; }

 private:
  ServerMetrics metrics_;
  std::unique_ptr<PlanCache> cache_;
  std::unique_ptr<SceneService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

struct StreamResult {
  std::vector<v1::StreamChunk> chunks;
  grpc::Status status;
  std::string trailing_retry;  // flexgs-retry-after-ms trailing metadata
};

// Reads a whole stream (or `stop_after` messages, then cancels).
StreamResult Stream(v1::SceneService::Stub& stub, const v1::StreamSceneRequest& request, size_t stop_after = 0,
                    std::chrono::seconds deadline = std::chrono::seconds(60)) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  auto reader = stub.StreamScene(&ctx, request);
  StreamResult r;
  v1::StreamChunk chunk;
  while (reader->Read(&chunk)) {
    r.chunks.push_back(chunk);
    if (stop_after > 0 && r.chunks.size() >= stop_after) {
      ctx.TryCancel();
      break;
    }
  }
  r.status = reader->Finish();
  auto it = ctx.GetServerTrailingMetadata().find("flexgs-retry-after-ms");
  if (it != ctx.GetServerTrailingMetadata().end()) r.trailing_retry = std::string(it->second.data(), it->second.size());
  return r;
}

v1::StreamSceneRequest RatioRequest(const std::string& scene, double ratio,
                                    v1::Encoding encoding = v1::ENCODING_QUANTIZED, uint32_t max_chunk_bytes = 0) {
  v1::StreamSceneRequest r;
  r.set_scene_id(scene);
  r.set_ratio(ratio);
  r.set_encoding(encoding);
  r.set_max_chunk_bytes(max_chunk_bytes);
  return r;
}

std::string Concat(const std::vector<v1::StreamChunk>& chunks) {
  std::string out;
  for (const auto& c : chunks) out += c.payload();
  return out;
}

// Sequence numbers from `first`, CRCs, and that every message fits max_chunk_bytes.
void ExpectWellFormed(const std::vector<v1::StreamChunk>& chunks, uint64_t first, uint32_t max_chunk_bytes) {
  for (size_t i = 0; i < chunks.size(); ++i) {
    const v1::StreamChunk& c = chunks[i];
    EXPECT_EQ(c.sequence(), first + i);
    EXPECT_EQ(c.crc32c(), Crc32c(c.payload())) << "sequence " << c.sequence();
    EXPECT_LE(c.ByteSizeLong(), max_chunk_bytes) << "sequence " << c.sequence();
  }
}

void Append(GaussianCloud& dst, const GaussianCloud& src) {
  ASSERT_EQ(dst.sh_degree, src.sh_degree);
  auto app = [](std::vector<float>& a, const std::vector<float>& b) { a.insert(a.end(), b.begin(), b.end()); };
  app(dst.positions, src.positions);
  app(dst.log_scales, src.log_scales);
  app(dst.rotations, src.rotations);
  app(dst.opacity_logits, src.opacity_logits);
  app(dst.sh_dc, src.sh_dc);
  app(dst.sh_rest, src.sh_rest);
}

// What a client holds after each LEVEL_END, by decoding and applying the blocks.
std::vector<GaussianCloud> ClientLevels(const std::vector<v1::StreamChunk>& chunks, int sh_degree) {
  std::vector<GaussianCloud> levels;
  GaussianCloud held;
  held.sh_degree = sh_degree;
  for (const v1::StreamChunk& c : chunks) {
    switch (c.kind()) {
      case v1::CHUNK_KIND_GAUSSIANS: {
        v1::GaussianBlock b;
        EXPECT_TRUE(b.ParseFromString(c.payload()));
        EXPECT_EQ(b.first(), held.size());
        auto cloud = DecodeGaussianBlock(b.data());
        EXPECT_TRUE(cloud.ok()) << cloud.status();
        if (!cloud.ok()) return levels;
        EXPECT_EQ(cloud->size(), b.count());
        Append(held, *cloud);
        break;
      }
      case v1::CHUNK_KIND_PATCHES: {
        v1::PatchBlock b;
        EXPECT_TRUE(b.ParseFromString(c.payload()));
        auto patches = DecodePatchBlock(b.data());
        EXPECT_TRUE(patches.ok()) << patches.status();
        if (!patches.ok()) return levels;
        EXPECT_EQ(patches->size(), size_t{b.count()} * kPatchStride);
        EXPECT_LE(b.first() + b.count(), held.size());
        for (size_t i = 0; i < b.count(); ++i) {
          const float* p = &(*patches)[i * kPatchStride];
          const size_t g = b.first() + i;
          std::copy(p, p + 3, &held.positions[g * 3]);
          std::copy(p + 3, p + 6, &held.log_scales[g * 3]);
          std::copy(p + 6, p + 10, &held.rotations[g * 4]);
        }
        break;
      }
      case v1::CHUNK_KIND_LEVEL_END: {
        v1::LevelEnd e;
        EXPECT_TRUE(e.ParseFromString(c.payload()));
        EXPECT_EQ(e.level(), levels.size());
        EXPECT_EQ(e.gaussians(), held.size());
        levels.push_back(held);
        break;
      }
      default:
        break;
    }
  }
  return levels;
}

// The planner's level k, as the client should hold it: the canonical plan's first levels
// (every budget cuts the same stream), each the model transformed at its rung.
std::vector<GaussianCloud> PlannerLevels(const ElasticModel& model, const v1::StreamHeader& header) {
  ThreadPool pool(2);
  std::vector<GaussianCloud> out;
  auto plan = PlanLevels(model, CanonicalPlanRequest(model.ladder), &pool);
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (!plan.ok()) return out;
  EXPECT_LE(header.levels_size(), static_cast<int>(plan->levels.size()));
  for (int k = 0; k < header.levels_size() && k < static_cast<int>(plan->levels.size()); ++k) {
    EXPECT_EQ(header.levels(k).gaussians(), plan->levels[k].count);
    auto held = LevelCloud(*plan, k);  // (level_planner_test checks it against the model)
    EXPECT_TRUE(held.ok()) << held.status();
    if (!held.ok()) break;
    out.push_back(held->WithShDegree(header.sh_degree()));
  }
  return out;
}

// Covariance of Gaussian i: R diag(exp(2 s)) R^T. The quantized codec sorts a
// Gaussian's axes and canonicalises its quaternion, so shapes are compared, not
// attributes.
Eigen::Matrix3d Covariance(const GaussianCloud& c, size_t i) {
  const float* q = &c.rotations[i * 4];
  const Eigen::Quaterniond rot = Eigen::Quaterniond(q[0], q[1], q[2], q[3]).normalized();
  const Eigen::Matrix3d r = rot.toRotationMatrix();
  Eigen::Vector3d var;
  for (int d = 0; d < 3; ++d) var[d] = std::exp(2.0 * c.log_scales[i * 3 + d]);
  return r * var.asDiagonal() * r.transpose();
}

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Tolerances from the quantiser's steps (core/stream/chunk_codec.h) with margin.
void ExpectNear(const GaussianCloud& got, const GaussianCloud& want, double extent, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(got.sh_degree, want.sh_degree) << what;
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    std::string bad;
    auto check = [&](const char* name, double a, double b, double tol) {
      if (!(std::abs(a - b) <= tol)) bad += absl::StrFormat(" %s %g vs %g (tol %g)", name, a, b, tol);
    };
    for (int d = 0; d < 3; ++d) {
      check("position", got.positions[i * 3 + d], want.positions[i * 3 + d], 1e-4 * extent);
      check("sh_dc", got.sh_dc[i * 3 + d], want.sh_dc[i * 3 + d], 0.1);
    }
    const Eigen::Matrix3d cov_want = Covariance(want, i);
    check("covariance (relative)", (Covariance(got, i) - cov_want).norm() / cov_want.norm(), 0, 0.25);
    check("opacity", Sigmoid(got.opacity_logits[i]), Sigmoid(want.opacity_logits[i]), 0.02);
    for (int k = 0; k < 3 * got.rest_coeffs(); ++k) {
      check("sh_rest", got.sh_rest[i * 3 * got.rest_coeffs() + k], want.sh_rest[i * 3 * want.rest_coeffs() + k], 0.1);
    }
    if (!bad.empty()) {
      ++failures;
      ADD_FAILURE() << what << ": Gaussian " << i << " differs beyond the quantisation tolerance:" << bad;
    }
  }
}

v1::StreamHeader HeaderOf(const StreamResult& r) {
  v1::StreamHeader h;
  EXPECT_FALSE(r.chunks.empty());
  if (r.chunks.empty()) return h;
  EXPECT_EQ(r.chunks[0].kind(), v1::CHUNK_KIND_HEADER);
  EXPECT_TRUE(h.ParseFromString(r.chunks[0].payload()));
  return h;
}

// Checks the stream's structure against its header and trailer.
void ExpectConsistent(const StreamResult& r, const v1::StreamHeader& h) {
  ASSERT_EQ(r.chunks.size(), h.total_messages());
  EXPECT_EQ(r.chunks.back().kind(), v1::CHUNK_KIND_TRAILER);
  v1::StreamTrailer t;
  ASSERT_TRUE(t.ParseFromString(r.chunks.back().payload()));
  EXPECT_EQ(t.messages(), h.total_messages());
  EXPECT_EQ(t.payload_bytes(), h.total_payload_bytes());
  EXPECT_EQ(t.model_digest(), h.model_digest());
  uint64_t block_bytes = 0;
  for (const auto& c : r.chunks) {
    if (c.kind() == v1::CHUNK_KIND_GAUSSIANS) {
      v1::GaussianBlock b;
      ASSERT_TRUE(b.ParseFromString(c.payload()));
      block_bytes += b.data().size();
    } else if (c.kind() == v1::CHUNK_KIND_PATCHES) {
      v1::PatchBlock b;
      ASSERT_TRUE(b.ParseFromString(c.payload()));
      block_bytes += b.data().size();
    }
  }
  EXPECT_EQ(block_bytes, h.total_payload_bytes());
  for (const v1::LevelInfo& l : h.levels()) {
    ASSERT_LT(l.last_sequence(), r.chunks.size());
    EXPECT_EQ(r.chunks[l.last_sequence()].kind(), v1::CHUNK_KIND_LEVEL_END);
    EXPECT_LE(l.first_sequence(), l.last_sequence());
  }
  EXPECT_FALSE(h.resume_token().empty());
  auto params = DecodeResumeToken(h.resume_token());
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->model_digest, h.model_digest());
}

// Waits (bounded) for `pred`.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

std::shared_ptr<const ElasticModel> Model(const std::string& id) {
  auto scene = TestScenes().registry.Find(id);
  EXPECT_NE(scene, nullptr) << id;
  return scene ? scene->model : nullptr;
}

// ---------------------------------------------------------------------------
// Streams deliver the planner's levels

TEST(ServerTest, LosslessLevelsEqualThePlannersExactly) {
  TestServer server;
  auto stub = server.Stub();
  for (const std::string scene : {"small", "net", "plain"}) {
    SCOPED_TRACE(scene);
    const uint32_t chunk = 16 << 10;  // several blocks per level
    StreamResult r = Stream(*stub, RatioRequest(scene, 0.5, v1::ENCODING_LOSSLESS, chunk));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ExpectWellFormed(r.chunks, 0, chunk);
    const v1::StreamHeader h = HeaderOf(r);
    ExpectConsistent(r, h);
    auto model = Model(scene);
    EXPECT_EQ(h.model_digest(), model->digest);
    EXPECT_EQ(h.sh_degree(), static_cast<uint32_t>(model->gaussians.sh_degree));
    const auto got = ClientLevels(r.chunks, h.sh_degree());
    const auto want = PlannerLevels(*model, h);
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(got.size(), static_cast<size_t>(h.levels_size()));
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k].positions, want[k].positions) << "level " << k;
      EXPECT_EQ(got[k].log_scales, want[k].log_scales) << "level " << k;
      EXPECT_EQ(got[k].rotations, want[k].rotations) << "level " << k;
      EXPECT_EQ(got[k].opacity_logits, want[k].opacity_logits) << "level " << k;
      EXPECT_EQ(got[k].sh_dc, want[k].sh_dc) << "level " << k;
      EXPECT_EQ(got[k].sh_rest, want[k].sh_rest) << "level " << k;
      EXPECT_EQ(h.levels(k).gaussians(), got[k].size());
    }
  }
}

TEST(ServerTest, QuantizedLevelsMatchWithinTolerance) {
  TestServer server;
  auto stub = server.Stub();
  for (const std::string scene : {"small", "net"}) {
    SCOPED_TRACE(scene);
    StreamResult r = Stream(*stub, RatioRequest(scene, 0.6, v1::ENCODING_QUANTIZED, 8 << 10));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ExpectWellFormed(r.chunks, 0, 8 << 10);
    const v1::StreamHeader h = HeaderOf(r);
    ExpectConsistent(r, h);
    EXPECT_EQ(h.encoding(), v1::ENCODING_QUANTIZED);
    auto model = Model(scene);
    const auto got = ClientLevels(r.chunks, h.sh_degree());
    const auto want = PlannerLevels(*model, h);
    ASSERT_EQ(got.size(), want.size());
    const FieldNormalization b = BoundsOf(want.back());
    const double extent =
        std::max({b.aabb_max[0] - b.aabb_min[0], b.aabb_max[1] - b.aabb_min[1], b.aabb_max[2] - b.aabb_min[2]});
    for (size_t k = 0; k < got.size(); ++k) ExpectNear(got[k], want[k], extent, "level " + std::to_string(k));
  }
}

TEST(ServerTest, BudgetsAndShDegreeShapeTheStream) {
  TestServer server;
  auto stub = server.Stub();
  auto model = Model("small");
  const uint64_t n = model->gaussians.size();
  // A memory budget holds floor(bytes / per-Gaussian) Gaussians: the stream stops at the
  // canonical stream's last level within that, less than a stop (2^(1/4)) below it.
  v1::StreamSceneRequest req = RatioRequest("small", 0.1);
  req.set_memory_bytes(700 * ResidentBytesPerGaussian(1) + 5);
  StreamResult r = Stream(*stub, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  v1::StreamHeader h = HeaderOf(r);
  const uint64_t held = h.levels(h.levels_size() - 1).gaussians();
  EXPECT_LE(held, 700u);
  EXPECT_GT(held * std::exp2(0.25), 700.0);
  EXPECT_EQ(h.resident_bytes(), held * ResidentBytesPerGaussian(1));
  // A Gaussian count, and an SH degree above the model's is clamped to it.
  req.set_gaussians(n);
  req.set_max_sh_degree(3);
  r = Stream(*stub, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  h = HeaderOf(r);
  EXPECT_EQ(h.sh_degree(), 1u);
  EXPECT_EQ(h.levels(h.levels_size() - 1).gaussians(), n);
  // SH 0 drops the higher bands.
  req.set_max_sh_degree(0);
  r = Stream(*stub, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(HeaderOf(r).sh_degree(), 0u);
  // A ladder override.
  req.set_ratio(0.3);
  req.add_ladder(0.02);
  req.add_ladder(0.2);
  r = Stream(*stub, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  h = HeaderOf(r);
  // 0.02, twelve stops of 2^(1/4) towards 0.2 (= 0.02 x 2^3.3), 0.2, then 0.238 and 0.283.
  ASSERT_EQ(h.levels_size(), 1 + 13 + 2);
  EXPECT_DOUBLE_EQ(h.levels(0).ratio(), 0.02);
  EXPECT_DOUBLE_EQ(h.levels(13).ratio(), 0.2);
  EXPECT_NEAR(h.levels(15).ratio(), 0.2 * std::exp2(0.5), 1e-12);
}

// ---------------------------------------------------------------------------
// Errors

TEST(ServerTest, BadRequestsGetTheirExactStatusCodes) {
  TestServer server;
  auto stub = server.Stub();
  auto model = Model("small");
  const v1::StreamSceneRequest ok = RatioRequest("small", 0.2);
  struct Case {
    std::string name;
    std::function<void(v1::StreamSceneRequest&)> edit;
    grpc::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"unknown scene", [](auto& r) { r.set_scene_id("nope"); }, grpc::StatusCode::NOT_FOUND},
      {"empty scene id", [](auto& r) { r.set_scene_id(""); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"no budget", [](auto& r) { r.clear_budget(); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"ratio 0", [](auto& r) { r.set_ratio(0); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"ratio 1.5", [](auto& r) { r.set_ratio(1.5); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"ratio NaN", [](auto& r) { r.set_ratio(std::nan("")); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"zero Gaussians", [](auto& r) { r.set_gaussians(0); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"zero bytes", [](auto& r) { r.set_memory_bytes(0); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"decreasing ladder",
       [](auto& r) {
         r.add_ladder(0.2);
         r.add_ladder(0.1);
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"ladder above 1", [](auto& r) { r.add_ladder(1.5); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"ladder too long",
       [](auto& r) {
         for (int i = 1; i <= 100; ++i) r.add_ladder(i / 101.0);
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"unknown encoding", [](auto& r) { r.set_encoding(static_cast<v1::Encoding>(7)); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"tiny chunks", [](auto& r) { r.set_max_chunk_bytes(100); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"huge chunks", [](auto& r) { r.set_max_chunk_bytes(64 << 20); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"resume without token", [](auto& r) { r.set_resume_from_sequence(3); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"garbage token", [](auto& r) { r.set_resume_token("not a token"); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"budget below the smallest level", [](auto& r) { r.set_memory_bytes(1000); },
       grpc::StatusCode::FAILED_PRECONDITION},
      {"Gaussians below the smallest level", [](auto& r) { r.set_gaussians(2); },
       grpc::StatusCode::FAILED_PRECONDITION},
  };
  for (const Case& c : cases) {
    v1::StreamSceneRequest req = ok;
    c.edit(req);
    StreamResult r = Stream(*stub, req);
    EXPECT_EQ(r.status.error_code(), c.code) << c.name << ": " << r.status.error_message();
    EXPECT_TRUE(r.chunks.empty()) << c.name;
  }

  // The minimum is in the message: floor(0.05 N) Gaussians at SH 1.
  v1::StreamSceneRequest small_budget = ok;
  small_budget.set_memory_bytes(1000);
  StreamResult r = Stream(*stub, small_budget);
  const uint64_t min_bytes = ElasticCount(model->gaussians.size(), 0.05) * ResidentBytesPerGaussian(1);
  EXPECT_THAT(r.status.error_message(), HasSubstr(std::to_string(min_bytes)));

  // A token for another model digest: the client must start over.
  StreamParams foreign;
  foreign.scene_id = "small";
  foreign.model_digest = Model("net")->digest;
  foreign.top_ratio = 0.2;
  foreign.ladder = model->ladder;
  foreign.sh_degree = 1;
  foreign.encoding = 1;
  foreign.max_chunk_bytes = 256 << 10;
  v1::StreamSceneRequest stale;
  stale.set_resume_token(EncodeResumeToken(foreign));
  r = Stream(*stub, stale);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << r.status.error_message();

  // A valid token whose stream is shorter than the resume point.
  StreamResult full = Stream(*stub, ok);
  ASSERT_TRUE(full.status.ok());
  const v1::StreamHeader h = HeaderOf(full);
  v1::StreamSceneRequest beyond;
  beyond.set_resume_token(h.resume_token());
  beyond.set_resume_from_sequence(h.total_messages() + 1);
  r = Stream(*stub, beyond);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << r.status.error_message();
  // Exactly at the end: nothing left to send, which is not an error.
  beyond.set_resume_from_sequence(h.total_messages());
  r = Stream(*stub, beyond);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_TRUE(r.chunks.empty());
  // The token with parameters that differ from it.
  v1::StreamSceneRequest differs = ok;
  differs.set_ratio(0.3);
  differs.set_resume_token(h.resume_token());
  r = Stream(*stub, differs);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
  // The token for another scene id.
  v1::StreamSceneRequest other_scene;
  other_scene.set_scene_id("net");
  other_scene.set_resume_token(h.resume_token());
  r = Stream(*stub, other_scene);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();

  // Oversized requests are refused by the 64 KiB receive limit.
  v1::StreamSceneRequest huge = ok;
  huge.set_resume_token(std::string(100 << 10, 'x'));
  r = Stream(*stub, huge);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();

  const std::string text = server.metrics().Render();
  EXPECT_THAT(text, HasSubstr("flexgs_streams_rejected_total{reason=\"not_found\"} 1"));
  EXPECT_THAT(text, HasSubstr("flexgs_streams_rejected_total{reason=\"out_of_range\"} 1"));
}

TEST(ServerTest, UnavailableUntilReady) {
  TestServer server({}, {}, /*ready=*/false);
  auto stub = server.Stub();
  StreamResult r = Stream(*stub, RatioRequest("small", 0.2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  auto health = grpc::health::v1::Health::NewStub(server.Channel());
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hresp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(health->Check(&ctx, hreq, &hresp).ok());
    EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  server.SetReady();
  for (const std::string service : {"", kServiceName}) {
    grpc::ClientContext ctx;
    hreq.set_service(service);
    ASSERT_TRUE(health->Check(&ctx, hreq, &hresp).ok());
    EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  r = Stream(*stub, RatioRequest("small", 0.2));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

// ---------------------------------------------------------------------------
// Limits, backpressure, cancellation

// Opens a stream and reads only its header, leaving the call open.
struct OpenStream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::StreamChunk>> reader;
  v1::StreamChunk first;
  bool got_first = false;
};

std::unique_ptr<OpenStream> Open(v1::SceneService::Stub& stub, const v1::StreamSceneRequest& req) {
  auto s = std::make_unique<OpenStream>();
  s->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  s->reader = stub.StreamScene(&s->ctx, req);
  s->got_first = s->reader->Read(&s->first);
  return s;
}

TEST(ServerTest, ExcessStreamsAreRejectedWithResourceExhausted) {
  SceneServiceOptions options;
  options.max_streams = 2;
  TestServer server(options);
  auto stub = server.Stub();
  const auto big = RatioRequest("big", 1.0, v1::ENCODING_LOSSLESS, 1 << 20);
  std::vector<std::unique_ptr<OpenStream>> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(Open(*stub, big));
    ASSERT_TRUE(open.back()->got_first);
  }
  EXPECT_EQ(server.service().active_streams(), 2);
  StreamResult r = Stream(*stub, RatioRequest("small", 0.2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();
  EXPECT_EQ(r.trailing_retry, "1000");
  for (auto& s : open) {
    s->ctx.TryCancel();
    v1::StreamChunk c;
    while (s->reader->Read(&c)) {}
    EXPECT_EQ(s->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ASSERT_TRUE(WaitFor([&] { return server.service().active_streams() == 0; }));
  EXPECT_EQ(server.service().bytes_in_flight(), 0u);
  r = Stream(*stub, RatioRequest("small", 0.2));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_THAT(server.metrics().Render(), HasSubstr("flexgs_streams_rejected_total{reason=\"max_streams\"} 1"));
}

TEST(ServerTest, SixtyFourConcurrentStreamsComplete) {
  TestServer server;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("flexgs.test.channel", i);  // distinct channels, distinct connections
    channels.push_back(server.Channel(args));
  }
  constexpr int kStreams = 64;
  std::vector<StreamResult> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto stub = v1::SceneService::NewStub(channels[i % channels.size()]);
      const auto enc = i % 2 == 0 ? v1::ENCODING_QUANTIZED : v1::ENCODING_LOSSLESS;
      results[i] = Stream(*stub, RatioRequest(i % 3 == 0 ? "net" : "small", 0.5, enc, 32 << 10));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    ExpectWellFormed(results[i].chunks, 0, 32 << 10);
    ExpectConsistent(results[i], HeaderOf(results[i]));
    // Same request, same bytes.
    if (i >= 6) {
      EXPECT_EQ(Concat(results[i].chunks), Concat(results[i % 6].chunks)) << i;
    }
  }
  ASSERT_TRUE(WaitFor([&] { return server.service().active_streams() == 0; }));
  EXPECT_EQ(server.service().bytes_in_flight(), 0u);
}

// yield_between_writes only changes which thread starts a write: the messages, their
// order and the stream's end are the same with it off, for whole and for many-message
// streams, and nothing is left in flight.
TEST(ServerTest, WritesInlineOrFromTheExecutorGiveTheSameStream) {
  std::vector<std::string> streams[2];
  for (bool yield : {true, false}) {
    SceneServiceOptions options;
    options.yield_between_writes = yield;
    TestServer server(options);
    auto stub = server.Stub();
    for (uint32_t chunk : {4096u, 32u << 10, 256u << 10}) {
      for (auto enc : {v1::ENCODING_QUANTIZED, v1::ENCODING_LOSSLESS}) {
        StreamResult r = Stream(*stub, RatioRequest("net", 0.6, enc, chunk));
        ASSERT_TRUE(r.status.ok()) << "yield " << yield << ": " << r.status.error_message();
        ExpectWellFormed(r.chunks, 0, chunk);
        ExpectConsistent(r, HeaderOf(r));
        if (chunk == 4096) {
          EXPECT_GT(r.chunks.size(), 20u);  // many writes, each a yield
        }
        streams[yield ? 0 : 1].push_back(Concat(r.chunks));
      }
    }
    ASSERT_TRUE(WaitFor([&] { return server.service().active_streams() == 0; }));
    EXPECT_EQ(server.service().bytes_in_flight(), 0u);
  }
  EXPECT_EQ(streams[0], streams[1]);
}

// FirstLevelGate in the service: a stream past its first level waits while a younger
// stream is still sending its first level, and goes on, unchanged, once that is out.
TEST(ServerTest, RefinementsWaitForAYoungerStreamsFirstLevel) {
  SceneServiceOptions options;
  // Long enough that only B's first level going out can release A on a loaded
  // machine (B's plan is built while B is already young).
  options.first_level_priority = std::chrono::milliseconds(30'000);
  TestServer server(options);
  auto stub = server.Stub();
  const auto refine = RatioRequest("net", 0.6, v1::ENCODING_QUANTIZED, 4096);
  const StreamResult solo = Stream(*stub, refine);
  ASSERT_TRUE(solo.status.ok()) << solo.status.error_message();
  EXPECT_EQ(server.service().first_level_waits(), 0u);  // nobody else in a first level
  // B: a first level far larger than the HTTP/2 windows, not read: it stays in it.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 10);
  auto slow_stub = v1::SceneService::NewStub(server.Channel(args));
  auto b = Open(*slow_stub, RatioRequest("big", 1.0, v1::ENCODING_LOSSLESS, 1 << 20));
  ASSERT_TRUE(b->got_first);
  StreamResult a;
  std::atomic<bool> a_done{false};
  std::thread reader([&] {
    a = Stream(*stub, refine);
    a_done = true;
  });
  ASSERT_TRUE(WaitFor([&] { return server.service().first_level_waits() > 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(a_done.load());  // held back (for up to 30 s per message)
  v1::StreamChunk c;
  while (b->reader->Read(&c)) {}  // B's first level goes out: the gate opens
  EXPECT_TRUE(b->reader->Finish().ok());
  reader.join();
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(Concat(a.chunks), Concat(solo.chunks));
}

TEST(ServerTest, StalledReaderIsCancelledByTheWatchdogAndMemoryStaysBounded) {
  SceneServiceOptions options;
  options.stall_timeout = std::chrono::milliseconds(300);
  options.max_bytes_in_flight = 3 << 19;  // 1.5 MiB: room for one 1 MiB message at a time
  TestServer server(options);
  // Keep the client's HTTP/2 window small so that not reading stalls the server soon.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 10);
  auto stub = v1::SceneService::NewStub(server.Channel(args));
  const uint32_t chunk = 1 << 20;
  const auto req = RatioRequest("big", 1.0, v1::ENCODING_LOSSLESS, chunk);
  std::vector<std::unique_ptr<OpenStream>> open;
  for (int i = 0; i < 3; ++i) open.push_back(Open(*stub, req));
  // Nobody reads: every stream stalls in turn, is cancelled, and frees its slot.
  ASSERT_TRUE(WaitFor([&] { return server.service().stalls_cancelled() >= 3; }))
      << "stalls: " << server.service().stalls_cancelled();
  ASSERT_TRUE(WaitFor([&] { return server.service().active_streams() == 0; }));
  EXPECT_EQ(server.service().bytes_in_flight(), 0u);
  // The global cap held: at most the cap, or a single message when none other was in flight.
  EXPECT_LE(server.service().peak_bytes_in_flight(), std::max<uint64_t>(options.max_bytes_in_flight, chunk));
  for (auto& s : open) {
    v1::StreamChunk c;
    while (s->reader->Read(&c)) {}
    EXPECT_EQ(s->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_THAT(server.metrics().Render(), HasSubstr("flexgs_stream_stalls_cancelled_total 3"));
}

TEST(ServerTest, CancellationAndDeadlinesFreeEverything) {
  TestServer server;
  auto stub = server.Stub();
  const auto req = RatioRequest("big", 1.0, v1::ENCODING_LOSSLESS, 1 << 20);
  {
    StreamResult r = Stream(*stub, req, /*stop_after=*/3);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED);
  }
  {
    // A deadline that expires while the client is not reading.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    auto reader = stub->StreamScene(&ctx, req);
    v1::StreamChunk c;
    ASSERT_TRUE(reader->Read(&c));
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    while (reader->Read(&c)) {}
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  ASSERT_TRUE(WaitFor([&] { return server.service().active_streams() == 0; }));
  EXPECT_EQ(server.service().bytes_in_flight(), 0u);
  EXPECT_EQ(server.service().stalls_cancelled(), 0u);
}

// ---------------------------------------------------------------------------
// Resume

TEST(ServerTest, ResumedStreamIsByteIdenticalToAnUninterruptedOne) {
  TestServer server;
  auto stub = server.Stub();
  const auto req = RatioRequest("net", 0.6, v1::ENCODING_QUANTIZED, kMinChunkBytes);
  const StreamResult full = Stream(*stub, req);
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  ASSERT_GT(full.chunks.size(), 12u);
  for (size_t cut : {size_t{1}, size_t{7}, full.chunks.size() - 1}) {
    SCOPED_TRACE(cut);
    const StreamResult first = Stream(*stub, req, cut);
    ASSERT_EQ(first.chunks.size(), cut);
    const std::string token = HeaderOf(first).resume_token();
    // Only the token ...
    v1::StreamSceneRequest resume;
    resume.set_resume_token(token);
    resume.set_resume_from_sequence(cut);
    const StreamResult rest = Stream(*stub, resume);
    ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
    ExpectWellFormed(rest.chunks, cut, kMinChunkBytes);
    EXPECT_EQ(Concat(first.chunks) + Concat(rest.chunks), Concat(full.chunks));
    // ... or the original request with the token.
    v1::StreamSceneRequest again = req;
    again.set_resume_token(token);
    again.set_resume_from_sequence(cut);
    const StreamResult rest2 = Stream(*stub, again);
    ASSERT_TRUE(rest2.status.ok()) << rest2.status.error_message();
    EXPECT_EQ(Concat(first.chunks) + Concat(rest2.chunks), Concat(full.chunks));
  }
}

TEST(ServerTest, ResumeSurvivesACacheEviction) {
  PlanCache::Options cache_options;
  cache_options.capacity_bytes = 1;  // nothing is kept: the resumed stream is rebuilt
  TestServer server({}, cache_options);
  auto stub = server.Stub();
  const auto req = RatioRequest("net", 0.6, v1::ENCODING_LOSSLESS, 8 << 10);
  const StreamResult full = Stream(*stub, req);
  ASSERT_TRUE(full.status.ok());
  v1::StreamSceneRequest resume;
  resume.set_resume_token(HeaderOf(full).resume_token());
  resume.set_resume_from_sequence(5);
  const StreamResult rest = Stream(*stub, resume);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  std::vector<v1::StreamChunk> tail(full.chunks.begin() + 5, full.chunks.end());
  EXPECT_EQ(Concat(rest.chunks), Concat(tail));
  EXPECT_EQ(server.cache().stats().entries, 0u);
}

// Every budget's stream is a cut of one canonical stream: between the header and the
// trailer, a smaller budget's messages are the first messages of a larger one's, byte
// for byte, and all of them come from one plan.
TEST(ServerTest, StreamsForAnyTwoBudgetsShareEveryMessageUpToTheSmaller) {
  TestServer server;
  auto stub = server.Stub();
  const auto before = server.cache().stats();
  SplitMix64 rng(19);
  std::vector<StreamResult> streams;
  for (int i = 0; i < 8; ++i) {
    StreamResult r = Stream(*stub, RatioRequest("net", rng.Uniform(0.05, 1.0), v1::ENCODING_QUANTIZED, 8 << 10));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ExpectConsistent(r, HeaderOf(r));
    streams.push_back(std::move(r));
  }
  std::sort(streams.begin(), streams.end(), [](auto& a, auto& b) { return a.chunks.size() < b.chunks.size(); });
  for (size_t i = 0; i + 1 < streams.size(); ++i) {
    const auto& a = streams[i].chunks;
    const auto& b = streams[i + 1].chunks;
    ASSERT_GE(a.size(), 2u);
    const std::vector<v1::StreamChunk> body_a(a.begin() + 1, a.end() - 1),
        body_b(b.begin() + 1, b.begin() + a.size() - 1);
    EXPECT_EQ(Concat(body_a), Concat(body_b)) << "stream " << i;
    EXPECT_EQ(a.back().kind(), v1::CHUNK_KIND_TRAILER);
    EXPECT_EQ(a[a.size() - 2].kind(), v1::CHUNK_KIND_LEVEL_END);
  }
  const auto after = server.cache().stats();
  EXPECT_EQ(after.misses - before.misses, 1u);
  // One script whatever the budgets, and /metrics says how much memory it holds.
  const std::string text = server.metrics().Render();
  EXPECT_THAT(text, HasSubstr("flexgs_plan_cache_entries " + std::to_string(after.entries)));
  EXPECT_THAT(text, HasSubstr("flexgs_plan_cache_bytes " + std::to_string(after.bytes)));
  EXPECT_GT(after.bytes, 0u);
}

// A stream extended to a larger budget -- from its end, or from wherever it was cut off --
// re-sends nothing: header, then the rest, and the client ends with the same levels as a
// fresh stream for the larger budget.
TEST(ServerTest, ExtendingAStreamToALargerBudgetResendsNothing) {
  TestServer server;
  auto stub = server.Stub();
  for (auto encoding : {v1::ENCODING_LOSSLESS, v1::ENCODING_QUANTIZED}) {
    SCOPED_TRACE(encoding);
    const StreamResult small = Stream(*stub, RatioRequest("net", 0.12, encoding, 8 << 10));
    const StreamResult large = Stream(*stub, RatioRequest("net", 0.7, encoding, 8 << 10));
    ASSERT_TRUE(small.status.ok() && large.status.ok());
    const uint64_t small_trailer = small.chunks.back().sequence();
    SplitMix64 rng(encoding);
    for (uint64_t from : {small_trailer, uint64_t{1}, 1 + rng.Next() % small_trailer}) {
      SCOPED_TRACE(from);
      v1::StreamSceneRequest extend;
      extend.set_resume_token(HeaderOf(small).resume_token());
      extend.set_resume_from_sequence(from);
      extend.set_extend(true);
      extend.set_ratio(0.7);
      const StreamResult rest = Stream(*stub, extend);
      ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
      ASSERT_GE(rest.chunks.size(), 2u);
      // The larger stream's own header, then its messages from `from` on.
      EXPECT_EQ(rest.chunks[0].sequence(), 0u);
      EXPECT_EQ(rest.chunks[0].payload(), large.chunks[0].payload());
      const std::vector<v1::StreamChunk> tail(rest.chunks.begin() + 1, rest.chunks.end());
      ExpectWellFormed(tail, from, 8 << 10);
      EXPECT_EQ(Concat(tail), Concat(std::vector<v1::StreamChunk>(large.chunks.begin() + from, large.chunks.end())));
      // What the client holds: the small stream up to `from`, then the rest.
      std::vector<v1::StreamChunk> held(small.chunks.begin(), small.chunks.begin() + from);
      held.insert(held.end(), tail.begin(), tail.end());
      const auto got = ClientLevels(held, HeaderOf(large).sh_degree());
      const auto want = ClientLevels(large.chunks, HeaderOf(large).sh_degree());
      ASSERT_EQ(got.size(), want.size());
      ::flexgs::testing::ExpectSameCloud(got.back(), want.back());
    }
    // An extension never shrinks, needs a budget, and needs a token.
    v1::StreamSceneRequest shrink;
    shrink.set_resume_token(HeaderOf(large).resume_token());
    shrink.set_extend(true);
    shrink.set_ratio(0.12);
    EXPECT_EQ(Stream(*stub, shrink).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    shrink.clear_ratio();
    EXPECT_EQ(Stream(*stub, shrink).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    v1::StreamSceneRequest no_token = RatioRequest("net", 0.5);
    no_token.set_extend(true);
    EXPECT_EQ(Stream(*stub, no_token).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

// A loaded scene's default script is warmed: the first plain request of any budget is a
// hit, not a plan.
TEST(ServerTest, AWarmedSceneServesItsFirstRequestFromTheCache) {
  TestServer server;
  WarmDefaultScript(TestScenes().registry, server.cache(), "plain", 256 << 10, kMaxChunkBytes);
  ASSERT_TRUE(WaitFor([&] { return server.cache().stats().entries == 1; }));
  const auto before = server.cache().stats();
  auto stub = server.Stub();
  const StreamResult r = Stream(*stub, RatioRequest("plain", 0.37));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const auto after = server.cache().stats();
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.hits, before.hits + 1);
  // An unknown scene is skipped, not a crash.
  WarmDefaultScript(TestScenes().registry, server.cache(), "no-such-scene", 256 << 10, kMaxChunkBytes);
  EXPECT_EQ(server.cache().stats().misses, after.misses);
}

// ---------------------------------------------------------------------------
// Plan cache

TEST(ServerTest, TwentyConcurrentIdenticalRequestsPlanOnce) {
  TestServer server;
  const auto before = server.cache().stats();
  constexpr int kClients = 20;
  std::vector<StreamResult> results(kClients);
  std::vector<std::thread> threads;
  auto channel = server.Channel();
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto stub = v1::SceneService::NewStub(channel);
      results[i] = Stream(*stub, RatioRequest("big", 0.37, v1::ENCODING_QUANTIZED));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(Concat(results[i].chunks), Concat(results[0].chunks));
  }
  const auto after = server.cache().stats();
  EXPECT_EQ(after.misses - before.misses, 1u);
  EXPECT_EQ(after.hits - before.hits, 19u);
  const std::string text = server.metrics().Render();
  EXPECT_THAT(text, HasSubstr("flexgs_plan_cache_misses_total 1"));
  EXPECT_THAT(text, HasSubstr("flexgs_plan_cache_hits_total 19"));
  EXPECT_THAT(text, HasSubstr("flexgs_plan_compute_seconds_count 1"));
}

StreamParams ParamsFor(double ratio) {
  StreamParams p;
  p.scene_id = "small";
  p.model_digest = Model("small")->digest;
  p.top_ratio = ratio;
  p.ladder = Model("small")->ladder;
  p.sh_degree = 1;
  p.encoding = 1;
  p.max_chunk_bytes = 64 << 10;
  return p;
}

TEST(PlanCacheTest, SingleFlightComputesOnceForConcurrentCallers) {
  std::atomic<int> computations{0};
  PlanCache cache({}, {}, [&](const ElasticModel& m, const StreamParams& p, ThreadPool* pool) {
    ++computations;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // everyone arrives meanwhile
    return BuildWireScript(m, p, pool);
  });
  constexpr int kCallers = 20;
  std::vector<PlanCache::ScriptPtr> got(kCallers);
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      cache.Get(Model("small"), ParamsFor(0.4), [&, i](absl::StatusOr<PlanCache::ScriptPtr> r) {
        ASSERT_TRUE(r.ok()) << r.status();
        got[i] = *r;
        ++done;
      });
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(WaitFor([&] { return done.load() == kCallers; }));
  EXPECT_EQ(computations.load(), 1);
  for (const auto& s : got) EXPECT_EQ(s.get(), got[0].get());
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_EQ(cache.stats().hits, 19u);
}

TEST(PlanCacheTest, EvictsLeastRecentlyUsedWithinItsByteBound) {
  ThreadPool pool(1);
  auto script = BuildWireScript(*Model("small"), ParamsFor(0.2), &pool);
  ASSERT_TRUE(script.ok()) << script.status();
  PlanCache::Options options;
  options.capacity_bytes = script->ByteSize() * 2 + script->ByteSize() / 2;  // two of that size
  PlanCache cache(options);
  // Keys differ in chunk size; budgets (top ratios) share one canonical script.
  auto get = [&](uint32_t kib, double ratio = 0.2) {
    std::atomic<bool> done{false};
    StreamParams params = ParamsFor(ratio);
    params.max_chunk_bytes = kib << 10;
    cache.Get(Model("small"), params, [&](absl::StatusOr<PlanCache::ScriptPtr> r) {
      EXPECT_TRUE(r.ok());
      done = true;
    });
    EXPECT_TRUE(WaitFor([&] { return done.load(); }));
  };
  get(64);
  get(63);
  get(64, 0.9);  // hit (another budget, the same script); 63 is now least recently used
  get(62);       // evicts 63
  auto s = cache.stats();
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.entries, 2u);
  EXPECT_LE(s.bytes, options.capacity_bytes);
  get(64);  // still there
  EXPECT_EQ(cache.stats().hits, 2u);
  get(63);  // was evicted
  EXPECT_EQ(cache.stats().misses, 4u);
}

TEST(PlanCacheTest, ErrorsAreDeliveredAndNotCached) {
  std::atomic<int> computations{0};
  PlanCache cache({}, {}, [&](const ElasticModel&, const StreamParams&, ThreadPool*) -> absl::StatusOr<WireScript> {
    ++computations;
    return absl::InternalError("boom");
  });
  for (int i = 0; i < 2; ++i) {
    std::atomic<bool> done{false};
    cache.Get(Model("small"), ParamsFor(0.3), [&](absl::StatusOr<PlanCache::ScriptPtr> r) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
      done = true;
    });
    ASSERT_TRUE(WaitFor([&] { return done.load(); }));
  }
  EXPECT_EQ(computations.load(), 2);
  EXPECT_EQ(cache.stats().entries, 0u);
}

// ---------------------------------------------------------------------------
// Scenes, metrics

TEST(ServerTest, ListScenesAndGetSceneDescribeTheLoadedScenes) {
  TestServer server;
  auto stub = server.Stub();
  grpc::ClientContext ctx;
  v1::ListScenesResponse list;
  ASSERT_TRUE(stub->ListScenes(&ctx, v1::ListScenesRequest(), &list).ok());
  std::vector<std::string> ids;
  for (const auto& s : list.scenes()) ids.push_back(s.scene_id());
  // broken.ply and empty.flexgs were skipped.
  EXPECT_EQ(ids, (std::vector<std::string>{"big", "net", "plain", "small"}));

  for (const std::string id : {"small", "net", "plain"}) {
    grpc::ClientContext c;
    v1::GetSceneRequest req;
    req.set_scene_id(id);
    v1::SceneInfo info;
    ASSERT_TRUE(stub->GetScene(&c, req, &info).ok()) << id;
    auto model = Model(id);
    EXPECT_EQ(info.scene_id(), id);
    EXPECT_EQ(info.gaussians(), model->gaussians.size());
    EXPECT_EQ(info.sh_degree(), static_cast<uint32_t>(model->gaussians.sh_degree));
    EXPECT_EQ(info.model_digest(), model->digest);
    EXPECT_EQ(info.trained(), id == "net");
    ASSERT_EQ(info.ladder_size(), static_cast<int>(model->ladder.size()));
    ASSERT_EQ(info.resident_bytes_per_gaussian_size(), model->gaussians.sh_degree + 1);
    for (int d = 0; d <= model->gaussians.sh_degree; ++d) {
      EXPECT_EQ(info.resident_bytes_per_gaussian(d), ResidentBytesPerGaussian(d));
    }
    const FieldNormalization b = BoundsOf(model->gaussians);
    ASSERT_EQ(info.bounds().min_size(), 3);
    for (int d = 0; d < 3; ++d) {
      EXPECT_EQ(info.bounds().min(d), b.aabb_min[d]);
      EXPECT_EQ(info.bounds().max(d), b.aabb_max[d]);
    }
  }
  EXPECT_EQ(Model("plain")->digest.size(), 64u);  // derived for a plain PLY
  for (const auto& [id, code] : std::vector<std::pair<std::string, grpc::StatusCode>>{
           {"nope", grpc::StatusCode::NOT_FOUND}, {"", grpc::StatusCode::INVALID_ARGUMENT}}) {
    grpc::ClientContext c;
    v1::GetSceneRequest req;
    req.set_scene_id(id);
    v1::SceneInfo info;
    EXPECT_EQ(stub->GetScene(&c, req, &info).error_code(), code) << id;
  }
}

TEST(ServerTest, MetricsNameEveryRpcAndStreamFact) {
  TestServer server;
  auto stub = server.Stub();
  ASSERT_TRUE(Stream(*stub, RatioRequest("small", 0.2)).status.ok());
  // The client can see the end of the stream before the server's OnDone has run.
  ASSERT_TRUE(WaitFor([&] { return server.service().active_streams() == 0; }));
  auto port = server.metrics().StartExposer("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_GT(*port, 0);
  const std::string text = server.metrics().Render();
  for (const char* name :
       {"grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_sent_total",
        "grpc_server_handling_seconds_bucket", "flexgs_stream_bytes_sent_total",
        "flexgs_stream_time_to_first_chunk_seconds_bucket", "flexgs_plan_compute_seconds_bucket",
        "flexgs_plan_cache_hits_total", "flexgs_plan_cache_misses_total", "flexgs_streams_active",
        "flexgs_stream_stalls_cancelled_total", "flexgs_streams_rejected_total", "flexgs_stream_bytes_in_flight"}) {
    EXPECT_THAT(text, HasSubstr(name));
  }
  EXPECT_THAT(text, HasSubstr("grpc_code=\"OK\""));
  EXPECT_THAT(text, HasSubstr("le=\"1800\""));
  EXPECT_THAT(text, HasSubstr("flexgs_streams_active 0"));
  server.metrics().StopExposer();
}

}  // namespace
}  // namespace flexgs::server

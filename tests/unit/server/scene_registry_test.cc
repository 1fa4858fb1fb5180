// Hot reload: SceneRegistry::Rescan over scratch scene directories (added, replaced,
// removed, touched, half-written, broken and unlistable), the bundle writer's staging
// directory, and PlanCache::EvictModel. No gRPC here; the server process around it is
// tested by tests/process/fault_reload_test.sh.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/file_io.h"
#include "elastic/model_bundle.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/ply_io.h"
#include "server/plan_cache.h"
#include "server/scene_registry.h"
#include "spdlog/spdlog.h"
#include "tests/support/test_models.h"
#include "tests/support/test_util.h"

namespace flexgs::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

SceneLoadOptions FastLoad() {
  SceneLoadOptions o;
  o.gi_views = 2;
  o.gi_size = 32;
  o.threads = 1;
  return o;
}

// A small heuristic model; different seeds give different digests.
std::string WriteBundle(const fs::path& dir, uint64_t seed, size_t n = 300) {
  ElasticModel m = ::flexgs::testing::HeuristicTestModel(n, seed);
  const absl::Status s = WriteModelBundle(dir.string(), m);
  EXPECT_TRUE(s.ok()) << s;
  return m.digest;
}

void WritePly(const fs::path& path, uint32_t seed, size_t n = 200) {
  std::mt19937 rng(seed);
  ASSERT_TRUE(WriteGaussianPly(path.string(), ::flexgs::testing::RandomCloud(n, 0, rng)).ok());
}

std::string DigestOf(const SceneRegistry& r, const std::string& id) {
  auto scene = r.Find(id);
  return scene == nullptr ? std::string() : scene->model->digest;
}

RescanResult MustRescan(SceneRegistry& r, const fs::path& dir) {
  absl::StatusOr<RescanResult> result = r.Rescan(dir.string(), FastLoad());
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : RescanResult{};
}

class SceneRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spdlog::set_level(spdlog::level::off);
    dir_ = ::flexgs::testing::ScratchDir() / "scenes";
    fs::create_directories(dir_);
  }
  fs::path dir_;
};

TEST_F(SceneRegistryTest, AddsReplacesAndRemovesWhileOldModelsStayAlive) {
  const std::string a1 = WriteBundle(dir_ / "a.flexgs", 1);
  WritePly(dir_ / "b.ply", 2);
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());
  ASSERT_EQ(registry.size(), 2u);
  EXPECT_EQ(DigestOf(registry, "a"), a1);
  // A "running stream" holds the scene it resolved.
  std::shared_ptr<const Scene> held = registry.Find("a");

  const std::string a2 = WriteBundle(dir_ / "a.flexgs", 3);
  ASSERT_NE(a1, a2);
  const std::string c1 = WriteBundle(dir_ / "c.flexgs", 4);
  fs::remove(dir_ / "b.ply");
  const std::string b_digest = DigestOf(registry, "b");
  RescanResult r = MustRescan(registry, dir_);
  EXPECT_THAT(r.added, ElementsAre("c"));
  EXPECT_THAT(r.replaced, ElementsAre("a"));
  EXPECT_THAT(r.removed, ElementsAre("b"));
  EXPECT_THAT(r.failed, IsEmpty());
  EXPECT_THAT(r.retired_digests, ::testing::UnorderedElementsAre(a1, b_digest));
  EXPECT_EQ(DigestOf(registry, "a"), a2);
  EXPECT_EQ(DigestOf(registry, "c"), c1);
  EXPECT_EQ(registry.Find("b"), nullptr);
  // The old version is untouched for whoever still holds it.
  EXPECT_EQ(held->model->digest, a1);
  EXPECT_EQ(held->model->gaussians.size(), 300u);

  // Nothing changed: nothing happens.
  r = MustRescan(registry, dir_);
  EXPECT_FALSE(r.changed());
  EXPECT_THAT(r.failed, IsEmpty());
}

TEST_F(SceneRegistryTest, TouchedFilesWithTheSameContentAreNotReloaded) {
  const std::string a1 = WriteBundle(dir_ / "a.flexgs", 1);
  WritePly(dir_ / "p.ply", 5);
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());
  std::shared_ptr<const Scene> a = registry.Find("a"), p = registry.Find("p");
  // The same model written again (new inodes and times, identical bytes) and the PLY
  // copied over itself: the signatures change, the content does not.
  EXPECT_EQ(WriteBundle(dir_ / "a.flexgs", 1), a1);
  const auto bytes = ReadFileToString((dir_ / "p.ply").string());
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(WriteFileAtomically((dir_ / "p.ply").string(), *bytes).ok());
  RescanResult r = MustRescan(registry, dir_);
  EXPECT_FALSE(r.changed());
  EXPECT_THAT(r.failed, IsEmpty());
  EXPECT_EQ(registry.Find("a"), a) << "same model must keep the same Scene object";
  EXPECT_EQ(registry.Find("p"), p);
}

TEST_F(SceneRegistryTest, ChangedPlyIsReloadedWithANewDigest) {
  WritePly(dir_ / "p.ply", 5);
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());
  const std::string before = DigestOf(registry, "p");
  WritePly(dir_ / "p.ply", 6, 250);
  RescanResult r = MustRescan(registry, dir_);
  EXPECT_THAT(r.replaced, ElementsAre("p"));
  EXPECT_NE(DigestOf(registry, "p"), before);
  EXPECT_EQ(registry.Find("p")->model->gaussians.size(), 250u);
}

TEST_F(SceneRegistryTest, BrokenReplacementKeepsServingThePreviousVersion) {
  const std::string a1 = WriteBundle(dir_ / "a.flexgs", 1);
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());

  // A replacement whose tensors were cut short (a copy that died half way), moved in.
  const fs::path staged = dir_.parent_path() / "staged.flexgs";
  WriteBundle(staged, 7);
  const fs::path tensors = staged / kBundleTensorFile;
  fs::resize_file(tensors, fs::file_size(tensors) / 2);
  fs::rename(dir_ / "a.flexgs", dir_.parent_path() / "old.flexgs");
  fs::rename(staged, dir_ / "a.flexgs");
  RescanResult r = MustRescan(registry, dir_);
  EXPECT_THAT(r.failed, ElementsAre("a"));
  EXPECT_FALSE(r.changed());
  EXPECT_EQ(DigestOf(registry, "a"), a1);
  // The same broken files are not retried (nor logged) on every rescan.
  r = MustRescan(registry, dir_);
  EXPECT_THAT(r.failed, IsEmpty());
  EXPECT_EQ(DigestOf(registry, "a"), a1);

  // Fixed by a complete write: served.
  const std::string a3 = WriteBundle(dir_ / "a.flexgs", 8);
  r = MustRescan(registry, dir_);
  EXPECT_THAT(r.replaced, ElementsAre("a"));
  EXPECT_EQ(DigestOf(registry, "a"), a3);
}

TEST_F(SceneRegistryTest, HalfCopiedNewSceneIsAddedOnlyOnceComplete) {
  const fs::path source = dir_.parent_path() / "source.flexgs";
  const std::string digest = WriteBundle(source, 9);
  const fs::path target = dir_ / "n.flexgs";
  fs::create_directories(target);
  // `cp -r` order: the manifest may well arrive first.
  fs::copy_file(source / kBundleManifestFile, target / kBundleManifestFile);
  fs::copy_file(source / kBundlePlyFile, target / kBundlePlyFile);
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());
  EXPECT_EQ(registry.Find("n"), nullptr);
  fs::copy_file(source / kBundleTensorFile, target / kBundleTensorFile);
  RescanResult r = MustRescan(registry, dir_);
  EXPECT_THAT(r.added, ElementsAre("n"));
  EXPECT_EQ(DigestOf(registry, "n"), digest);
}

TEST_F(SceneRegistryTest, UnlistableDirectoryIsAnErrorThatChangesNothing) {
  WriteBundle(dir_ / "a.flexgs", 1);
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());
  const fs::path moved = dir_.parent_path() / "moved";
  fs::rename(dir_, moved);
  absl::StatusOr<RescanResult> r = registry.Rescan(dir_.string(), FastLoad());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(dir_.string()));
  EXPECT_NE(registry.Find("a"), nullptr) << "an unmounted volume must not look like deleted scenes";

  // At start-up: a missing directory and a regular file are errors naming the path.
  SceneRegistry fresh;
  absl::Status missing = fresh.LoadDirectory(dir_.string(), FastLoad());
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("cannot list scenes directory"));
  const fs::path file = moved / "a-file";
  ASSERT_TRUE(WriteFileAtomically(file.string(), "x").ok());
  absl::Status not_dir = fresh.LoadDirectory(file.string(), FastLoad());
  EXPECT_FALSE(not_dir.ok());
  EXPECT_THAT(std::string(not_dir.message()), HasSubstr("Not a directory"));
}

TEST_F(SceneRegistryTest, StagingDirectoriesFifosAndDuplicatesAreSkippedWithoutHanging) {
  const std::string a1 = WriteBundle(dir_ / "a.flexgs", 1);
  // A complete bundle under a hidden staging name is not a scene (the writer renames it).
  WriteBundle(dir_ / ".b.flexgs.tmp.abc123", 2);
  // Reading a FIFO would block for ever: neither a FIFO scene nor a FIFO inside a bundle is read.
  ASSERT_EQ(::mkfifo((dir_ / "fifo.ply").c_str(), 0644), 0);
  fs::create_directories(dir_ / "f.flexgs");
  ASSERT_EQ(::mkfifo((dir_ / "f.flexgs" / kBundleManifestFile).c_str(), 0644), 0);
  // The same id twice: the first name in order (a.flexgs) wins.
  WritePly(dir_ / "a.ply", 3);
  // A file named like a bundle.
  ASSERT_TRUE(WriteFileAtomically((dir_ / "x.flexgs").string(), "not a directory").ok());
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());
  ASSERT_EQ(registry.size(), 1u);
  EXPECT_EQ(DigestOf(registry, "a"), a1);
  RescanResult r = MustRescan(registry, dir_);
  EXPECT_FALSE(r.changed());
  EXPECT_THAT(r.failed, IsEmpty()) << "f.flexgs failed at load and is not retried unchanged";
}

TEST_F(SceneRegistryTest, ScenesAddedInMemoryAreNeverTouchedByARescan) {
  SceneRegistry registry;
  ASSERT_TRUE(registry.Add("mem", "", ::flexgs::testing::HeuristicTestModel(100, 1)).ok() == false)
      << "a model without digest must be refused";
  ElasticModel m = ::flexgs::testing::HeuristicTestModel(100, 1);
  m.digest = "d1";
  ASSERT_TRUE(registry.Add("mem", "", m).ok());
  WriteBundle(dir_ / "mem.flexgs", 2);  // same id on disk: the in-memory scene keeps it
  WriteBundle(dir_ / "disk.flexgs", 3);
  RescanResult r = MustRescan(registry, dir_);
  EXPECT_THAT(r.added, ElementsAre("disk"));
  EXPECT_EQ(DigestOf(registry, "mem"), "d1");
  fs::remove_all(dir_ / "disk.flexgs");
  fs::remove_all(dir_ / "mem.flexgs");
  r = MustRescan(registry, dir_);
  EXPECT_THAT(r.removed, ElementsAre("disk"));
  EXPECT_EQ(DigestOf(registry, "mem"), "d1");
}

TEST_F(SceneRegistryTest, ConcurrentRewritesAreNeverServedMixed) {
  // A writer keeps replacing a bundle while rescans run: every rescan either keeps the
  // served model or swaps in a complete one of the two, never fails to a mixed state.
  const std::string d1 = WriteBundle(dir_ / "a.flexgs", 1, 2000);
  const std::string d2 = WriteBundle(dir_.parent_path() / "probe.flexgs", 2, 2000);
  SceneRegistry registry;
  ASSERT_TRUE(registry.LoadDirectory(dir_.string(), FastLoad()).ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 40; ++i) WriteBundle(dir_ / "a.flexgs", i % 2 == 0 ? 2 : 1, 2000);
    done.store(true);
  });
  int rescans = 0;
  while (!done.load() || rescans == 0) {
    MustRescan(registry, dir_);
    const std::string d = DigestOf(registry, "a");
    EXPECT_TRUE(d == d1 || d == d2) << d;
    ++rescans;
  }
  writer.join();
  MustRescan(registry, dir_);
  EXPECT_EQ(DigestOf(registry, "a"), d1) << "the last write (i = 39) is model 1";
  // No staging directory is left behind.
  for (const auto& e : fs::directory_iterator(dir_)) EXPECT_EQ(e.path().filename(), "a.flexgs");
}

// ---------------------------------------------------------------------------
// The bundle writer's staging directory.

TEST(BundlePublishTest, FailedWriteLeavesThePreviousBundleAndNoStaging) {
  const fs::path root = ::flexgs::testing::ScratchDir();
  const std::string d1 = WriteBundle(root / "s.flexgs", 1);
  // An invalid model is refused before the disk is touched.
  ElasticModel bad = ::flexgs::testing::HeuristicTestModel(10, 2);
  bad.global_importance.pop_back();
  EXPECT_EQ(WriteModelBundle((root / "s.flexgs").string(), bad).code(), absl::StatusCode::kInvalidArgument);
  // A write that fails on the disk: a read-only parent makes the staging directory impossible
  // for a non-root user; root ignores permissions, so make the target's place unusable instead.
  ASSERT_TRUE(WriteFileAtomically((root / "blocker").string(), "x").ok());
  ElasticModel m = ::flexgs::testing::HeuristicTestModel(10, 3);
  const absl::Status s = WriteModelBundle((root / "blocker" / "t.flexgs").string(), m);
  EXPECT_FALSE(s.ok());
  auto read = ReadModelBundle((root / "s.flexgs").string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->digest, d1);
  for (const auto& e : fs::directory_iterator(root)) {
    EXPECT_THAT(e.path().filename().string(), ::testing::Not(HasSubstr(".tmp.")));
  }
}

TEST(BundlePublishTest, ReplacedBundleIsReadableAndAccessibleToOthers) {
  const fs::path root = ::flexgs::testing::ScratchDir();
  WriteBundle(root / "s.flexgs", 1);
  const std::string d2 = WriteBundle(root / "s.flexgs", 2);
  auto read = ReadModelBundle((root / "s.flexgs").string());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->digest, d2);
  // mkdtemp makes 0700; a server running as another user must still read the bundle.
  struct stat st;
  ASSERT_EQ(::stat((root / "s.flexgs").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  // A symlinked bundle is replaced where it points; the link stays.
  fs::create_directory_symlink(root / "s.flexgs", root / "link.flexgs");
  const std::string d3 = WriteBundle(root / "link.flexgs", 3);
  EXPECT_TRUE(fs::is_symlink(root / "link.flexgs"));
  EXPECT_EQ(ReadModelBundle((root / "s.flexgs").string())->digest, d3);
  // A trailing slash names the same bundle (the staging directory is its sibling).
  const std::string d4 = WriteBundle((root / "s.flexgs").string() + "/", 4);
  EXPECT_EQ(ReadModelBundle((root / "s.flexgs").string())->digest, d4);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    ++entries;
    EXPECT_THAT(e.path().filename().string(), ::testing::Not(HasSubstr(".tmp.")));
  }
  EXPECT_EQ(entries, 2);
}

// ---------------------------------------------------------------------------
// PlanCache::EvictModel

TEST(PlanCacheEvictTest, DropsOnlyTheRetiredModelsScripts) {
  std::atomic<int> computed{0};
  PlanCache::ComputeFn fake = [&](const ElasticModel&, const StreamParams&, ThreadPool*) -> absl::StatusOr<WireScript> {
    computed.fetch_add(1);
    WireScript w;
    w.messages.resize(3);
    return w;
  };
  PlanCache cache(PlanCache::Options{}, {}, fake);
  auto model = std::make_shared<const ElasticModel>(::flexgs::testing::HeuristicTestModel(10, 1));
  // Scripts differ by digest and SH degree (every budget shares one per key).
  auto get = [&](const std::string& digest, int sh_degree) {
    StreamParams p;
    p.scene_id = "s";
    p.model_digest = digest;
    p.top_ratio = 0.5;
    p.sh_degree = sh_degree;
    p.ladder = {0.5, 1.0};
    std::atomic<bool> done{false};
    cache.Get(model, p, [&](absl::StatusOr<PlanCache::ScriptPtr> s) {
      EXPECT_TRUE(s.ok());
      done.store(true);
    });
    while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  get("old", 0);
  get("old", 1);
  get("new", 0);
  ASSERT_EQ(cache.stats().entries, 3u);
  EXPECT_EQ(cache.EvictModel("old"), 2u);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.EvictModel("old"), 0u);
  get("new", 0);  // still cached
  EXPECT_EQ(computed.load(), 3);
  get("old", 0);  // recomputed
  EXPECT_EQ(computed.load(), 4);
}

}  // namespace
}  // namespace flexgs::server

#include "stream/stream_export.h"

#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base/thread_pool.h"
#include "gtest/gtest.h"
#include "stream/level_planner.h"
#include "tests/support/test_models.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

struct Exported {
  StreamScript script;
  ExportedScene scene;
  std::string dir;
};

Exported Make(const std::string& dir, bool trained) {
  ThreadPool pool(2);
  ElasticModel m = trained ? testing::RatioDependentTestModel(3000, 3, 1) : testing::HeuristicTestModel(3000, 3, 1);
  auto plan = PlanLevels(m, CanonicalPlanRequest({}), &pool);
  EXPECT_TRUE(plan.ok());
  ScriptOptions options;
  options.sh_degree = 1;
  options.max_chunk_bytes = kMinChunkBytes;
  auto script = BuildStreamScript(*plan, options);
  EXPECT_TRUE(script.ok());
  Exported e{*std::move(script), {}, dir};
  e.scene.scene_id = "s";
  e.scene.model_digest = "abc";
  e.scene.model_gaussians = 3000;
  e.scene.model_sh_degree = 1;
  e.scene.ladder = m.ladder;
  e.scene.bounds_max = {1, 2, 3};
  e.scene.view_max = {0.5f, 1, 1.5f};
  EXPECT_TRUE(WriteStreamExport(e.script, e.scene, dir).ok());
  return e;
}

TEST(StreamExportTest, RoundTripsEveryLevelAndBlock) {
  for (bool trained : {false, true}) {
    SCOPED_TRACE(trained);
    const std::string dir = (testing::ScratchDir() / (trained ? "trained" : "heuristic")).string();
    const Exported e = Make(dir, trained);
    auto read = ReadStreamExport(dir);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->scene.model_digest, "abc");
    EXPECT_EQ(read->scene.ladder, e.scene.ladder);
    EXPECT_EQ(read->scene.view_max, e.scene.view_max);
    EXPECT_EQ(read->sh_degree, 1);
    ASSERT_EQ(read->levels.size(), e.script.levels.size());
    for (size_t k = 0; k < read->levels.size(); ++k) {
      EXPECT_EQ(read->levels[k].gaussians, e.script.levels[k].gaussians);
      EXPECT_EQ(read->levels[k].first_item, e.script.levels[k].first_item);
      EXPECT_EQ(read->levels[k].level_end_item, e.script.levels[k].level_end_item);
      EXPECT_EQ(read->levels[k].payload_bytes, e.script.levels[k].payload_bytes);
    }
    // Every block, at its sequence, with the script's bytes.
    size_t blocks = 0;
    for (size_t i = 0; i < e.script.items.size(); ++i) {
      const StreamItem& item = e.script.items[i];
      if (item.kind != StreamItemKind::kGaussians && item.kind != StreamItemKind::kPatches) continue;
      ASSERT_LT(blocks, read->blocks.size());
      const ExportedBlock& b = read->blocks[blocks];
      EXPECT_EQ(b.sequence, i);
      EXPECT_EQ(b.kind, item.kind);
      EXPECT_EQ(b.first, item.first);
      EXPECT_EQ(b.count, item.count);
      auto data = ReadExportedBlock(dir, *read, blocks);
      ASSERT_TRUE(data.ok()) << data.status();
      EXPECT_EQ(*data, item.data);
      ++blocks;
    }
    EXPECT_EQ(blocks, read->blocks.size());
    EXPECT_GT(blocks, read->levels.size());  // several blocks per level at 4 KiB chunks
    if (trained) {
      bool patches = false;
      for (const ExportedBlock& b : read->blocks) patches |= b.kind == StreamItemKind::kPatches;
      EXPECT_TRUE(patches);
    }
    std::filesystem::remove_all(dir);
  }
}

// Any edit of the index that contradicts the stream is refused before a block is read.
TEST(StreamExportTest, ContradictoryIndexesAreRefused) {
  const std::string dir = (testing::ScratchDir() / "export").string();
  Make(dir, true);
  const std::string index_path = dir + "/index.json";
  auto text = ReadFileToString(index_path);
  ASSERT_TRUE(text.ok());
  const nlohmann::json good = nlohmann::json::parse(*text);
  std::vector<std::pair<const char*, std::function<void(nlohmann::json&)>>> edits = {
      {"format", [](nlohmann::json& j) { j["format"] = "other"; }},
      {"version", [](nlohmann::json& j) { j["version"] = 2; }},
      {"sh degree above the model's", [](nlohmann::json& j) { j["sh_degree"] = 2; }},
      {"encoding", [](nlohmann::json& j) { j["encoding"] = "png"; }},
      {"ratio order", [](nlohmann::json& j) { j["levels"][2]["ratio"] = 0.001; }},
      {"count", [](nlohmann::json& j) { j["levels"][1]["gaussians"] = j["levels"][1]["gaussians"].get<int>() + 1; }},
      {"level sequence", [](nlohmann::json& j) { j["levels"][1]["first_sequence"] = 1; }},
      {"block offset", [](nlohmann::json& j) { j["blocks"][1]["offset"] = 0; }},
      {"block sequence", [](nlohmann::json& j) { j["blocks"][2]["sequence"] = 1; }},
      {"block kind", [](nlohmann::json& j) { j["blocks"][0]["kind"] = "trailer"; }},
      {"block bytes", [](nlohmann::json& j) { j["blocks"][0]["bytes"] = j["blocks"][0]["bytes"].get<int>() - 1; }},
      {"blocks_bytes", [](nlohmann::json& j) { j["blocks_bytes"] = 5; }},
      {"a block dropped", [](nlohmann::json& j) { j["blocks"].erase(3); }},
      {"negative count", [](nlohmann::json& j) { j["levels"][0]["gaussians"] = -4; }},
      {"non-finite bounds", [](nlohmann::json& j) { j["scene"]["bounds"]["min"][0] = "nan"; }},
  };
  for (auto& [what, edit] : edits) {
    SCOPED_TRACE(what);
    nlohmann::json j = good;
    edit(j);
    ASSERT_TRUE(WriteFileAtomically(index_path, j.dump()).ok());
    EXPECT_EQ(ReadStreamExport(dir).status().code(), absl::StatusCode::kDataLoss);
  }
  // A repeated key would let two readers disagree.
  std::string twice = good.dump();
  twice.insert(1, "\"version\":1,");
  ASSERT_TRUE(WriteFileAtomically(index_path, twice).ok());
  EXPECT_EQ(ReadStreamExport(dir).status().code(), absl::StatusCode::kDataLoss);
  // A missing index, a missing blocks file.
  ASSERT_TRUE(WriteFileAtomically(index_path, good.dump()).ok());
  ASSERT_TRUE(ReadStreamExport(dir).ok());
  std::filesystem::remove(dir + "/blocks.bin");
  EXPECT_EQ(ReadStreamExport(dir).status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove(index_path);
  EXPECT_EQ(ReadStreamExport(dir).status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(StreamExportTest, ADamagedBlockIsNamed) {
  const std::string dir = (testing::ScratchDir() / "export").string();
  Make(dir, false);
  auto e = ReadStreamExport(dir);
  ASSERT_TRUE(e.ok());
  {
    std::fstream f(dir + "/blocks.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(e->blocks[2].offset + 7));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(e->blocks[2].offset + 7));
    c ^= 0x01;
    f.write(&c, 1);
  }
  EXPECT_TRUE(ReadExportedBlock(dir, *e, 1).ok());
  auto bad = ReadExportedBlock(dir, *e, 2);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("block 2 (sequence " + std::to_string(e->blocks[2].sequence)),
            std::string::npos)
      << bad.status();
  EXPECT_EQ(ReadExportedBlock(dir, *e, e->blocks.size()).status().code(), absl::StatusCode::kOutOfRange);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flexgs

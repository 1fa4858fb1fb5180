#include "stream/stream_export.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "base/file_io.h"
#include "io/strict_json.h"

namespace flexgs {
namespace {

using nlohmann::json;

constexpr char kFormat[] = "flexgs-stream-export";
constexpr int kVersion = 1;
constexpr char kIndexFile[] = "index.json";
constexpr char kBlocksFile[] = "blocks.bin";
// An index is a few hundred bytes per block; 64 MiB holds ~200k blocks (50 GB of stream).
constexpr uint64_t kMaxIndexBytes = uint64_t{64} << 20;

std::string PathIn(const std::string& dir, const char* file) { return (std::filesystem::path(dir) / file).string(); }

absl::Status Bad(const std::string& dir, const std::string& what) {
  return absl::DataLossError(absl::StrCat(PathIn(dir, kIndexFile), ": ", what));
}

json Box(const std::array<float, 3>& lo, const std::array<float, 3>& hi) {
  return {{"min", {lo[0], lo[1], lo[2]}}, {"max", {hi[0], hi[1], hi[2]}}};
}

// Reads a {"min": [3], "max": [3]} box of finite floats.
bool ReadBox(const json& j, std::array<float, 3>* lo, std::array<float, 3>* hi) {
  if (!j.is_object() || !j.contains("min") || !j.contains("max")) return false;
  for (auto [key, out] : {std::pair{"min", lo}, {"max", hi}}) {
    const json& v = j.at(key);
    if (!v.is_array() || v.size() != 3) return false;
    for (int d = 0; d < 3; ++d) {
      if (!v[d].is_number()) return false;
      (*out)[d] = v[d].get<float>();
      if (!std::isfinite((*out)[d])) return false;
    }
  }
  return true;
}

template <typename T>
bool Unsigned(const json& j, const char* key, T* out) {
  if (!j.contains(key) || !j.at(key).is_number_unsigned()) return false;
  const uint64_t v = j.at(key).get<uint64_t>();
  if (v > std::numeric_limits<T>::max()) return false;
  *out = static_cast<T>(v);
  return true;
}

}  // namespace

absl::Status WriteStreamExport(const StreamScript& script, const ExportedScene& scene, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create '", dir, "': ", ec.message()));
  json index;
  index["format"] = kFormat;
  index["version"] = kVersion;
  index["scene"] = {{"scene_id", scene.scene_id},
                    {"model_digest", scene.model_digest},
                    {"model_gaussians", scene.model_gaussians},
                    {"model_sh_degree", scene.model_sh_degree},
                    {"trained", scene.trained},
                    {"ladder", scene.ladder},
                    {"bounds", Box(scene.bounds_min, scene.bounds_max)},
                    {"view_bounds", Box(scene.view_min, scene.view_max)}};
  index["sh_degree"] = script.sh_degree;
  index["encoding"] = script.encoding == ChunkEncoding::kLossless ? "lossless" : "quantized";
  json levels = json::array();
  for (const StreamLevelSummary& l : script.levels) {
    levels.push_back({{"ratio", l.ratio},
                      {"gaussians", l.gaussians},
                      {"added", l.added},
                      {"patched", l.patched},
                      {"payload_bytes", l.payload_bytes},
                      {"patch_bytes", l.patch_bytes},
                      {"first_sequence", l.first_item},
                      {"last_sequence", l.level_end_item}});
  }
  index["levels"] = std::move(levels);
  std::string blocks;
  json entries = json::array();
  for (size_t i = 0; i < script.items.size(); ++i) {
    const StreamItem& item = script.items[i];
    if (item.kind != StreamItemKind::kGaussians && item.kind != StreamItemKind::kPatches) continue;
    entries.push_back({{"sequence", i},
                       {"level", item.level},
                       {"kind", item.kind == StreamItemKind::kGaussians ? "gaussians" : "patches"},
                       {"first", item.first},
                       {"count", item.count},
                       {"offset", blocks.size()},
                       {"bytes", item.data.size()},
                       {"crc32c", Crc32c(item.data)}});
    blocks += item.data;
  }
  index["blocks"] = std::move(entries);
  index["blocks_bytes"] = blocks.size();
  if (absl::Status st = WriteFileAtomically(PathIn(dir, kBlocksFile), blocks); !st.ok()) return st;
  return WriteFileAtomically(PathIn(dir, kIndexFile), index.dump(1) + "\n");
}

absl::StatusOr<StreamExport> ReadStreamExport(const std::string& dir) {
  auto text = ReadFileToString(PathIn(dir, kIndexFile), kMaxIndexBytes);
  if (!text.ok()) return text.status();
  // The index nests 4 levels (scene, bounds, min); anything deeper is not one.
  auto parsed = ParseJsonStrict(*text, 8);
  if (!parsed.ok()) return Bad(dir, std::string(parsed.status().message()));
  const json& j = *parsed;
  if (!j.is_object()) return Bad(dir, "not a JSON object");
  if (j.value("format", "") != kFormat) return Bad(dir, absl::StrCat("format is not '", kFormat, "'"));
  if (!j.contains("version") || j["version"] != kVersion) return Bad(dir, absl::StrCat("version is not ", kVersion));

  StreamExport e;
  const json& s = j.value("scene", json());
  if (!s.is_object() || !s.value("scene_id", json()).is_string() || !s.value("model_digest", json()).is_string() ||
      !Unsigned(s, "model_gaussians", &e.scene.model_gaussians) || e.scene.model_gaussians == 0 ||
      !Unsigned(s, "model_sh_degree", &e.scene.model_sh_degree) || e.scene.model_sh_degree > kMaxShDegree ||
      !s.value("trained", json()).is_boolean() || !s.value("ladder", json()).is_array() ||
      !ReadBox(s.value("bounds", json()), &e.scene.bounds_min, &e.scene.bounds_max) ||
      !ReadBox(s.value("view_bounds", json()), &e.scene.view_min, &e.scene.view_max)) {
    return Bad(dir, "the scene's facts are missing or malformed");
  }
  e.scene.scene_id = s["scene_id"].get<std::string>();
  e.scene.model_digest = s["model_digest"].get<std::string>();
  e.scene.trained = s["trained"].get<bool>();
  for (const json& r : s["ladder"]) {
    if (!r.is_number() || !(r.get<double>() > 0.0 && r.get<double>() <= 1.0)) return Bad(dir, "bad ladder rung");
    e.scene.ladder.push_back(r.get<double>());
  }
  if (!Unsigned(j, "sh_degree", &e.sh_degree) || e.sh_degree > e.scene.model_sh_degree) {
    return Bad(dir, "sh_degree is missing or above the model's");
  }
  const std::string encoding = j.value("encoding", "");
  if (encoding != "quantized" && encoding != "lossless") return Bad(dir, "encoding is not quantized or lossless");
  e.encoding = encoding == "lossless" ? ChunkEncoding::kLossless : ChunkEncoding::kQuantized;
  if (!Unsigned(j, "blocks_bytes", &e.blocks_bytes)) return Bad(dir, "blocks_bytes is missing");

  // Levels: ratios increasing in (0, 1], counts growing by what they add, sequences
  // back to back (header 0, then each level's blocks and its LEVEL_END).
  const json& levels = j.value("levels", json());
  if (!levels.is_array() || levels.empty()) return Bad(dir, "no levels");
  uint64_t held = 0, next_sequence = 1;
  double previous_ratio = 0;
  for (size_t k = 0; k < levels.size(); ++k) {
    const json& l = levels[k];
    StreamLevelSummary v;
    if (!l.is_object() || !l.value("ratio", json()).is_number() || !Unsigned(l, "gaussians", &v.gaussians) ||
        !Unsigned(l, "added", &v.added) || !Unsigned(l, "patched", &v.patched) ||
        !Unsigned(l, "payload_bytes", &v.payload_bytes) || !Unsigned(l, "patch_bytes", &v.patch_bytes) ||
        !Unsigned(l, "first_sequence", &v.first_item) || !Unsigned(l, "last_sequence", &v.level_end_item)) {
      return Bad(dir, absl::StrCat("level ", k, " is malformed"));
    }
    v.ratio = l["ratio"].get<double>();
    if (!(v.ratio > previous_ratio && v.ratio <= 1.0) || v.gaussians < held || v.added != v.gaussians - held ||
        v.gaussians > e.scene.model_gaussians || v.patched > held || v.patch_bytes > v.payload_bytes ||
        v.first_item != next_sequence || v.level_end_item < v.first_item) {
      return Bad(dir, absl::StrCat("level ", k, " contradicts the levels before it"));
    }
    previous_ratio = v.ratio;
    held = v.gaussians;
    next_sequence = v.level_end_item + 1;
    e.levels.push_back(v);
  }

  // Blocks: at exactly the sequences between their level's first message and its end,
  // contiguous in blocks.bin, adding up to each level's payload and to the file.
  const json& blocks = j.value("blocks", json());
  if (!blocks.is_array()) return Bad(dir, "no block list");
  uint64_t offset = 0;
  size_t level = 0;
  uint64_t expected_sequence = 1, level_bytes = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const json& b = blocks[i];
    ExportedBlock v;
    const std::string kind = b.is_object() ? b.value("kind", "") : "";
    if (!b.is_object() || !Unsigned(b, "sequence", &v.sequence) || !Unsigned(b, "level", &v.level) ||
        !Unsigned(b, "first", &v.first) || !Unsigned(b, "count", &v.count) || !Unsigned(b, "offset", &v.offset) ||
        !Unsigned(b, "bytes", &v.bytes) || !Unsigned(b, "crc32c", &v.crc32c) ||
        (kind != "gaussians" && kind != "patches")) {
      return Bad(dir, absl::StrCat("block ", i, " is malformed"));
    }
    v.kind = kind == "gaussians" ? StreamItemKind::kGaussians : StreamItemKind::kPatches;
    // A level's LEVEL_END sits between its last block and the next level's first.
    while (level < e.levels.size() && v.sequence > e.levels[level].level_end_item) {
      if (expected_sequence != e.levels[level].level_end_item || level_bytes != e.levels[level].payload_bytes) {
        return Bad(dir, absl::StrCat("level ", level, "'s blocks do not fill it"));
      }
      expected_sequence = e.levels[level].level_end_item + 1;
      level_bytes = 0;
      ++level;
    }
    if (level == e.levels.size() || v.level != level || v.sequence != expected_sequence || v.offset != offset ||
        v.bytes > e.blocks_bytes - offset || v.count == 0) {
      return Bad(dir, absl::StrCat("block ", i, " (sequence ", v.sequence, ") is out of place"));
    }
    ++expected_sequence;
    offset += v.bytes;
    level_bytes += v.bytes;
    e.blocks.push_back(v);
  }
  for (; level < e.levels.size(); ++level) {
    if (expected_sequence != e.levels[level].level_end_item || level_bytes != e.levels[level].payload_bytes) {
      return Bad(dir, absl::StrCat("level ", level, "'s blocks do not fill it"));
    }
    expected_sequence = e.levels[level].level_end_item + 1;
    level_bytes = 0;
  }
  if (offset != e.blocks_bytes) return Bad(dir, "blocks do not cover blocks_bytes");
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(PathIn(dir, kBlocksFile), ec);
  if (ec) return absl::NotFoundError(absl::StrCat(PathIn(dir, kBlocksFile), ": ", ec.message()));
  if (size != e.blocks_bytes) {
    return absl::DataLossError(
        absl::StrCat(PathIn(dir, kBlocksFile), ": ", size, " bytes, the index says ", e.blocks_bytes));
  }
  return e;
}

absl::StatusOr<std::string> ReadExportedBlock(const std::string& dir, const StreamExport& e, size_t index) {
  if (index >= e.blocks.size()) {
    return absl::OutOfRangeError(absl::StrCat("block ", index, " of ", e.blocks.size()));
  }
  const ExportedBlock& b = e.blocks[index];
  const std::string path = PathIn(dir, kBlocksFile);
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string data(b.bytes, '\0');
  in.seekg(static_cast<std::streamoff>(b.offset));
  in.read(data.data(), static_cast<std::streamsize>(b.bytes));
  if (!in) return absl::DataLossError(absl::StrCat(path, ": block ", index, " (sequence ", b.sequence, ") is cut off"));
  if (Crc32c(data) != b.crc32c) {
    return absl::DataLossError(
        absl::StrCat(path, ": block ", index, " (sequence ", b.sequence, ", level ", b.level, ") fails its CRC-32C"));
  }
  return data;
}

}  // namespace flexgs

// StreamExport: a canonical stream as static files, so that a CDN or any HTTP server with
// Range requests can carry the bytes while a gRPC server (or none) decides budgets:
//
//   DIR/index.json  the scene's facts (what GetScene answers), the levels (ratio, counts,
//                   payload bytes, their first and LEVEL_END sequence numbers) and every
//                   block: its sequence number, level, kind, first index, count, and byte
//                   range and CRC-32C in blocks.bin
//   DIR/blocks.bin  every block of the stream (core/stream/chunk_codec.h), in stream
//                   order, back to back
//
// Sequence numbers are the server's (StreamScript item indices), so a client reading the
// files holds, after the same levels, exactly what a gRPC client of the same canonical
// stream holds. Reading checks everything: a damaged index is refused before any block
// is read, a damaged block with an error naming it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stream/stream_script.h"

namespace flexgs {

// What a reader needs besides the stream: the facts flexgs.v1.SceneInfo carries.
struct ExportedScene {
  std::string scene_id;
  std::string model_digest;
  uint64_t model_gaussians = 0;
  int model_sh_degree = 0;  // the model's; the stream's may be lower
  bool trained = false;
  std::vector<double> ladder;
  std::array<float, 3> bounds_min{}, bounds_max{};  // of the centres
  std::array<float, 3> view_min{}, view_max{};      // 1 %..99 % quantiles of the centres
};

struct ExportedBlock {
  uint64_t sequence = 0;  // the item's index in the stream
  uint32_t level = 0;
  StreamItemKind kind = StreamItemKind::kGaussians;  // kGaussians or kPatches
  uint64_t first = 0;
  uint32_t count = 0;
  uint64_t offset = 0;  // in blocks.bin
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
};

struct StreamExport {
  ExportedScene scene;
  int sh_degree = 0;
  ChunkEncoding encoding = ChunkEncoding::kQuantized;
  std::vector<StreamLevelSummary> levels;  // first_item / level_end_item: sequence numbers
  std::vector<ExportedBlock> blocks;
  uint64_t blocks_bytes = 0;  // size of blocks.bin
};

// Writes `script` (a canonical stream) and `scene` to `dir` (created if needed; files
// replaced atomically, the index last so that a reader never sees an index without its
// blocks).
absl::Status WriteStreamExport(const StreamScript& script, const ExportedScene& scene, const std::string& dir);

// Reads and checks DIR/index.json against itself and the size of DIR/blocks.bin:
// DATA_LOSS naming what is wrong (NOT_FOUND when a file is missing).
absl::StatusOr<StreamExport> ReadStreamExport(const std::string& dir);

// The bytes of block `index` of `e`, read from DIR/blocks.bin by its range; DATA_LOSS
// naming the block (its sequence number and level) when its CRC-32C differs.
absl::StatusOr<std::string> ReadExportedBlock(const std::string& dir, const StreamExport& e, size_t index);

}  // namespace flexgs

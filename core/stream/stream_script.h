// StreamScript: the complete, deterministic message sequence of one stream, built
// from a Plan and the chunk codec, without any transport. The server serialises each
// item into a flexgs.v1.StreamChunk (sequence = item index); a resumed stream starts
// at any index of the same script. Scripts are what the server caches.
//
// Order: header, then for each level its PATCHES blocks (previously sent Gaussians,
// client order: geometry patches, or for merged levels replacement blocks whose
// `first` is their first index) followed by its GAUSSIANS blocks (new ones, appended in order), then
// LEVEL_END; finally the trailer. Each block's encoded size stays under the chunk
// limit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stream/chunk_codec.h"
#include "stream/level_planner.h"

namespace flexgs {

enum class StreamItemKind { kHeader, kGaussians, kPatches, kLevelEnd, kTrailer };

struct StreamItem {
  StreamItemKind kind = StreamItemKind::kHeader;
  uint32_t level = 0;  // blocks and level ends
  uint64_t first = 0;  // client-order index of the block's first Gaussian
  uint32_t count = 0;  // Gaussians in the block
  std::string data;    // encoded block (chunk_codec.h); empty for header/level end/trailer
};

struct StreamLevelSummary {
  double ratio = 0;
  uint64_t gaussians = 0;  // held after the level
  uint64_t added = 0;
  uint64_t patched = 0;
  uint64_t payload_bytes = 0;  // encoded block bytes
  uint64_t patch_bytes = 0;    // of which patch blocks (the rest: added Gaussians)
  uint64_t first_item = 0;
  uint64_t level_end_item = 0;
};

struct StreamScript {
  std::vector<StreamItem> items;
  std::vector<StreamLevelSummary> levels;
  uint64_t payload_bytes = 0;  // all encoded block bytes
  int sh_degree = 0;
  ChunkEncoding encoding = ChunkEncoding::kQuantized;
  uint64_t ByteSize() const;  // memory held (for cache accounting)
};

// Bytes of each chunk kept back for the protobuf wrapping of a block (GaussianBlock /
// PatchBlock fields inside StreamChunk with sequence, kind, CRC: under 64 bytes at any
// size up to 4 MiB), so that the whole serialized StreamChunk fits max_chunk_bytes.
// Every block's data is at most max_chunk_bytes - kChunkEnvelopeBytes.
inline constexpr uint32_t kChunkEnvelopeBytes = 256;
inline constexpr uint32_t kMinChunkBytes = 4 << 10;
inline constexpr uint32_t kMaxChunkBytes = 4 << 20;

struct ScriptOptions {
  ChunkEncoding encoding = ChunkEncoding::kQuantized;
  int sh_degree = 0;                     // <= plan.sh_degree
  uint32_t max_chunk_bytes = 256 << 10;  // in [kMinChunkBytes, kMaxChunkBytes]
};

absl::StatusOr<StreamScript> BuildStreamScript(const Plan& plan, const ScriptOptions& options);

}  // namespace flexgs

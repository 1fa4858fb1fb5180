// WireScript: a StreamScript turned into the exact bytes of every StreamChunk
// payload, with its CRC-32C, ready to be written. Built once per (model, params) on
// a plan worker and cached (server/plan_cache.h), so a gRPC reaction only copies a
// prepared payload into the message in flight -- no encoding, hashing or
// serialisation on callback threads -- and every stream with the same parameters,
// resumed or not, sends identical bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "elastic/elastic_model.h"
#include "flexgs/v1/scene_service.pb.h"
#include "stream/resume_token.h"
#include "stream/stream_script.h"

namespace flexgs::server {

struct WireMessage {
  v1::ChunkKind kind = v1::CHUNK_KIND_UNSPECIFIED;
  std::string payload;  // serialized StreamHeader / GaussianBlock / PatchBlock / LevelEnd / StreamTrailer
  uint32_t crc32c = 0;  // Crc32c(payload)
};

struct WireScript {
  std::vector<WireMessage> messages;  // index = StreamChunk.sequence
  std::vector<StreamLevelSummary> levels;
  uint64_t block_bytes = 0;     // encoded block bytes (StreamScript::payload_bytes)
  uint64_t payload_bytes = 0;   // sum of every message payload (what the wire carries)
  uint64_t resident_bytes = 0;  // client resident bytes at the last level
  int sh_degree = 0;

  // Memory held, for cache accounting.
  uint64_t ByteSize() const;
};

// Plans `model` with `params` (top ratio, ladder), builds the stream script (SH
// degree, encoding, chunk size) and serialises every message. The header carries
// EncodeResumeToken(params). Errors are the planner's and script builder's.
absl::StatusOr<WireScript> BuildWireScript(const ElasticModel& model, const StreamParams& params, ThreadPool* pool);

}  // namespace flexgs::server

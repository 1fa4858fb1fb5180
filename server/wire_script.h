// WireScript: the canonical stream of a (model, ladder, SH degree, encoding, chunk size)
// -- every level up to ratio 1, with stops between rungs (PlanLevels with
// CanonicalPlanRequest) -- turned into the exact bytes of every StreamChunk payload, with
// its CRC-32C. Built once per key on a plan worker and cached (server/plan_cache.h), so a
// gRPC reaction only copies a prepared payload into the message in flight.
//
// WireCut: what one client receives: the script's first levels, as many as its budget
// holds, framed by a header and a trailer of its own. Every message between them is the
// script's, at the same sequence number, so streams for any two budgets share every byte
// up to the smaller one, and a stream resumed or extended to a larger budget (a new
// header, then the same sequence numbers) re-sends nothing.
#pragma once

#include <cstdint>
#include <memory>
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
  // Index = StreamChunk.sequence. The header (0) and trailer (last) are those of a
  // budget of 100 %; a WireCut replaces them with its own.
  std::vector<WireMessage> messages;
  std::vector<StreamLevelSummary> levels;
  uint64_t block_bytes = 0;    // encoded block bytes (StreamScript::payload_bytes)
  uint64_t payload_bytes = 0;  // sum of every message payload (what the wire carries)
  uint64_t model_gaussians = 0;
  int sh_degree = 0;

  // Memory held, for cache accounting.
  uint64_t ByteSize() const;
};

// Plans the canonical stream of `model` for `params` (its ladder; the top ratio is
// ignored), builds the stream script (SH degree, encoding, chunk size) and serialises
// every message. Errors are the planner's and script builder's.
absl::StatusOr<WireScript> BuildWireScript(const ElasticModel& model, const StreamParams& params, ThreadPool* pool);

// The same for a given plan (tests and tools that stream a plan of their own).
absl::StatusOr<WireScript> WireScriptFromPlan(const Plan& plan, const StreamParams& params);

class WireCut {
 public:
  // The cut of `script` for params.top_ratio: the levels holding at most
  // ElasticCount(model_gaussians, top_ratio) Gaussians. The header carries
  // EncodeResumeToken(params). FAILED_PRECONDITION when not even the first level fits.
  static absl::StatusOr<WireCut> Make(std::shared_ptr<const WireScript> script, const StreamParams& params);

  uint64_t total_messages() const { return trailer_sequence_ + 1; }
  // The message at `sequence` < total_messages().
  const WireMessage& At(uint64_t sequence) const;
  size_t levels() const { return levels_; }
  const WireScript& script() const { return *script_; }

 private:
  std::shared_ptr<const WireScript> script_;
  size_t levels_ = 0;
  uint64_t trailer_sequence_ = 0;
  WireMessage header_, trailer_;
};

}  // namespace flexgs::server

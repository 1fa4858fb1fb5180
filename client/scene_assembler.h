// SceneAssembler: the client side of the flexgs.v1 stream, without any transport.
//
// It takes StreamChunk messages in order and keeps a ResidentStore exactly where the
// server's plan says it should be: after LEVEL_END k the store holds level k's
// Gaussians (additions appended in order, earlier ones re-posed by the level's
// patches). Every message is checked before anything changes -- sequence number,
// CRC-32C, kind, payload parse, block decode, level/index/count consistency -- and a
// rejected message leaves the assembler untouched, so the caller can reconnect and
// resume from next_sequence() with the header's resume token: nothing verified is
// downloaded twice and nothing unverified is ever applied.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "client/resident_store.h"
#include "flexgs/v1/scene_service.pb.h"
#include "stream/chunk_codec.h"

namespace flexgs::client {

// What applying one message did.
struct ApplyResult {
  enum class Kind { kHeader, kGaussians, kPatches, kLevelEnd, kTrailer } kind = Kind::kHeader;
  int level = -1;              // blocks and LEVEL_END: the level index
  uint64_t payload_bytes = 0;  // StreamChunk.payload size
};

class SceneAssembler {
 public:
  // `store` must outlive the assembler; it is Reset() when the header arrives.
  explicit SceneAssembler(ResidentStore* store, BlockLimits limits = {});

  // Verifies and applies the next message. Errors (state unchanged on every error):
  //   DATA_LOSS        wrong sequence number, CRC mismatch, unparsable payload or block,
  //                    a block/level that contradicts the header (patch blocks must cover
  //                    the level's `patched` Gaussians in client order; a LEVEL_END must sit
  //                    at the header's last_sequence), a LEVEL_END whose count differs
  //                    from what is held, a trailer whose totals disagree;
  //   FAILED_PRECONDITION  a message after the trailer;
  //   RESOURCE_EXHAUSTED  the store cannot reserve the header's capacity.
  // A resumed stream (same token, so same model and plan) starts at next_sequence();
  // the header is not resent.
  absl::StatusOr<ApplyResult> Apply(const v1::StreamChunk& chunk);

  // Sequence number of the next message wanted (0 before the header).
  uint64_t next_sequence() const { return next_sequence_; }

  // Prepares to extend this stream to a larger budget (flexgs.v1 `extend`): the next
  // message must be the larger stream's header, at sequence 0, for the same scene, model,
  // SH degree and encoding, whose first levels are this header's levels unchanged (every
  // budget cuts one canonical stream). The stream then goes on at extension_sequence(),
  // so nothing held is received again; the store keeps what it holds and grows to the
  // new last level. FAILED_PRECONDITION before a header. Idempotent until that header.
  absl::Status BeginExtension();
  bool extending() const { return extend_from_.has_value(); }
  // Where an extension continues: where this stream stopped (its trailer's sequence,
  // which the larger stream uses for the next level, once complete).
  uint64_t extension_sequence() const { return complete_ ? next_sequence_ - 1 : next_sequence_; }

  bool has_header() const { return header_.has_value(); }
  const v1::StreamHeader& header() const { return *header_; }  // requires has_header()

  // Levels completed so far (LEVEL_END applied), and whether the trailer arrived.
  int levels_completed() const { return levels_completed_; }
  bool complete() const { return complete_ && !extend_from_.has_value(); }

  // Verified payload bytes taken so far (all message kinds).
  uint64_t payload_bytes() const { return payload_bytes_; }

  const ResidentStore& store() const { return *store_; }

 private:
  // Each verifies the (CRC-checked) payload completely, then applies it: nothing is
  // changed unless the whole message is accepted.
  absl::StatusOr<ApplyResult> ApplyHeader(uint64_t sequence, const std::string& payload);
  absl::StatusOr<ApplyResult> ApplyExtensionHeader(const v1::StreamChunk& chunk);
  // A GAUSSIANS or PATCHES block belongs to the level now streaming, before its end.
  absl::Status CheckBlockPlace(uint64_t sequence, int kind, uint32_t block_level) const;
  absl::StatusOr<ApplyResult> ApplyGaussians(uint64_t sequence, const std::string& payload);
  absl::StatusOr<ApplyResult> ApplyPatches(uint64_t sequence, const std::string& payload);
  // Counts an applied PATCHES block (either kind) against the level.
  ApplyResult PatchBlockApplied(const v1::PatchBlock& b);
  // A PATCHES chunk whose block is a replacement block (merged levels).
  absl::StatusOr<ApplyResult> ApplyReplacements(uint64_t sequence, const v1::PatchBlock& b, const BlockInfo& info);
  absl::StatusOr<ApplyResult> ApplyLevelEnd(uint64_t sequence, const std::string& payload);
  absl::StatusOr<ApplyResult> ApplyTrailer(uint64_t sequence, const std::string& payload);

  ResidentStore* store_;
  BlockLimits limits_;
  std::optional<v1::StreamHeader> header_;
  uint64_t next_sequence_ = 0;
  uint64_t payload_bytes_ = 0;
  int levels_completed_ = 0;
  int current_level_ = 0;       // level the next block belongs to
  uint64_t level_patched_ = 0;  // Gaussians patched so far in the current level
  // Replacement blocks (merged levels) in the current level: their indices ascend, so
  // the next block's first index must be at least this; 0 while none has arrived (so
  // also "this level has replacements" when above 0).
  uint64_t level_replace_floor_ = 0;
  uint64_t level_block_bytes_ = 0;  // encoded block bytes taken so far in the current level
  bool complete_ = false;
  std::optional<uint64_t> extend_from_;  // set by BeginExtension until its header
};

}  // namespace flexgs::client

// Turns a StreamSceneRequest into the parameters of a stream (protobuf -> core
// types), applying the protocol's rules with the core functions that own them:
//   scene_id unknown                         NOT_FOUND
//   budget unset, non-positive, NaN, absurd  INVALID_ARGUMENT
//   budget below the smallest level          FAILED_PRECONDITION (minimum in the message)
//   ladder not strictly increasing in (0,1]  INVALID_ARGUMENT
//   encoding not a known value               INVALID_ARGUMENT
//   max_chunk_bytes out of range             INVALID_ARGUMENT
//   max_chunk_bytes above the server's limit INVALID_ARGUMENT (the limit in the message)
//   max_sh_degree above the model's          clamped to the model's
//   resume_token damaged or foreign          INVALID_ARGUMENT
//   resume_token for another model digest    FAILED_PRECONDITION
//   request parameters differ from token's   INVALID_ARGUMENT
//   resume_from_sequence without a token     INVALID_ARGUMENT
//   extend without a token or a budget       INVALID_ARGUMENT
//   extend to a smaller top ratio            INVALID_ARGUMENT
//   scene_id over kMaxSceneIdBytes           INVALID_ARGUMENT (CheckRequestStrings)
//   resume_token over kMaxResumeTokenBytes   INVALID_ARGUMENT (CheckRequestStrings)
// Messages show client strings only as a short escaped prefix (EscapeClientString).
// (resume_from_sequence beyond the end is OUT_OF_RANGE, checked once the script's
// length is known.) A resumed request may carry only the token (and scene id); if
// it also sets a budget, every parameter must resolve to exactly the token's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flexgs/v1/scene_service.pb.h"
#include "server/scene_registry.h"
#include "stream/resume_token.h"
#include "stream/stream_script.h"

namespace flexgs::server {

// Ladders longer than this are refused (resume tokens hold at most 64 rungs).
inline constexpr size_t kMaxLadderRungs = 64;
// The string fields of requests: a scene id is at most as long as the registry
// allows one to be (a file name's stem); the server's own resume tokens are under
// 1.3 KiB (core/stream/resume_token.cc).
inline constexpr size_t kMaxSceneIdBytes = 256;
inline constexpr size_t kMaxResumeTokenBytes = 2048;

// INVALID_ARGUMENT naming the limit and the length when a scene id is too long.
absl::Status CheckSceneIdLength(const std::string& scene_id);
// Every string field of a StreamSceneRequest within its limit (scene_id,
// resume_token), else INVALID_ARGUMENT.
absl::Status CheckRequestStrings(const v1::StreamSceneRequest& request);

struct ResolvedStream {
  std::shared_ptr<const Scene> scene;
  StreamParams params;       // effective: concrete encoding, chunk size, ladder, SH degree
  uint64_t resume_from = 0;  // first sequence to send
  bool resumed = false;
  // An extension to a larger budget: the header (sequence 0) goes first, then the
  // messages from resume_from on.
  bool extended = false;
  std::string budget;  // what the client asked for, for logs ("ratio=0.1", "token", ...)
};

// `default_max_chunk_bytes` is used when the request names no chunk size;
// `max_client_chunk_bytes` is the largest it may name (resume tokens included).
absl::StatusOr<ResolvedStream> ResolveStreamRequest(const SceneRegistry& registry,
                                                    const v1::StreamSceneRequest& request,
                                                    uint32_t default_max_chunk_bytes,
                                                    uint32_t max_client_chunk_bytes = kMaxChunkBytes);

// The server's chunk-size flags: both in [kMinChunkBytes, kMaxChunkBytes] and the
// default no larger than what a client may ask for (else the server's own resume
// tokens would be refused). INVALID_ARGUMENT naming the flag otherwise.
absl::Status ValidateChunkLimits(uint32_t default_max_chunk_bytes, uint32_t max_client_chunk_bytes);

// OK when a request's max_chunk_bytes is within the server's limit, else
// INVALID_ARGUMENT naming the limit.
absl::Status CheckClientChunkBytes(uint32_t requested, uint32_t max_client_chunk_bytes);

// The scene ids a request names: its scene_id and, when the resume token decodes,
// the token's (what an authorization check must cover). Empty ids are left out.
std::vector<std::string> SceneIdsNamedBy(const v1::StreamSceneRequest& request);

}  // namespace flexgs::server

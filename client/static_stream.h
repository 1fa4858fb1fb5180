// StaticStream: a client's stream read from the files `flexgs export-stream` writes
// (core/stream/stream_export.h) -- a local directory, or a copy any HTTP cache served --
// instead of a server. The budget picks the same cut a server would make, and every block
// goes through the same SceneAssembler as a gRPC stream (sequence numbers, CRCs, counts,
// decoding), so the client ends holding exactly what a gRPC client of the same canonical
// stream and budget holds.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "client/scene_client.h"
#include "flexgs/v1/scene_service.pb.h"
#include "stream/stream_export.h"

namespace flexgs::client {

// The scene's facts as GetScene answers them, from the export's index.
v1::SceneInfo SceneInfoOf(const StreamExport& e);

// Streams `request`'s budget (exactly one kind; SH degree, ladder, encoding and chunk size
// are the export's, and the request may not ask for others) from the export in `dir`
// into `store`. Errors: INVALID_ARGUMENT / FAILED_PRECONDITION for a budget as a server
// would answer it; DATA_LOSS naming the block or message that failed a check.
absl::StatusOr<StreamSummary> StreamFromExport(const std::string& dir, const StreamExport& e,
                                               const StreamRequest& request, ResidentStore* store,
                                               StreamObserver* observer);

}  // namespace flexgs::client

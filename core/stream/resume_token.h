// Resume tokens: opaque bytes a stream hands the client so that a reconnect continues
// the *same* stream. The token pins the model digest and every plan parameter; a
// resumed stream regenerates the identical message sequence and starts at the
// client's next sequence number. Tokens carry a version and a CRC-32C so damaged or
// foreign tokens are rejected, not misread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flexgs {

struct StreamParams {
  std::string scene_id;
  std::string model_digest;
  double top_ratio = 0;
  std::vector<double> ladder;  // the effective ladder (never empty once planned)
  int sh_degree = 0;
  int encoding = 1;  // flexgs.v1.Encoding value
  uint32_t max_chunk_bytes = 0;

  bool operator==(const StreamParams& o) const;
};

std::string EncodeResumeToken(const StreamParams& params);

// INVALID_ARGUMENT for anything that is not a token this build wrote (bad magic,
// version, CRC, truncation, absurd lengths), or that carries values no stream can have
// (a top ratio outside [0, 1] or NaN, a non-finite rung, SH degree outside 0..3, an
// encoding outside 0..2).
absl::StatusOr<StreamParams> DecodeResumeToken(absl::string_view token);

}  // namespace flexgs

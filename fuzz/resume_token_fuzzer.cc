// Fuzz target: DecodeResumeToken (core/stream/resume_token.h), the opaque bytes a client
// sends back on reconnect. Each input is tried as is and with its trailing CRC-32C
// recomputed, so mutations of the body reach the field checks behind the checksum.
//
// Invariants of an accepted token: values a stream can have (top ratio in [0, 1],
// finite rungs, at most 64 of them, SH degree 0..3, encoding 0..2, bounded ids) and
// the encoding is canonical: EncodeResumeToken gives back exactly the input bytes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/crc32c.h"
#include "fuzz/fuzz_check.h"
#include "stream/resume_token.h"

namespace flexgs::fuzz {
namespace {

void Check(const std::string& token) {
  absl::StatusOr<StreamParams> params = DecodeResumeToken(absl::string_view(token.data(), token.size()));
  if (!params.ok()) {
    FUZZ_CHECK(params.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(std::isfinite(params->top_ratio) && params->top_ratio >= 0.0 && params->top_ratio <= 1.0);
  FUZZ_CHECK(params->ladder.size() <= 64);
  for (double rung : params->ladder) FUZZ_CHECK(std::isfinite(rung));
  FUZZ_CHECK(params->sh_degree >= 0 && params->sh_degree <= 3);
  FUZZ_CHECK(params->encoding >= 0 && params->encoding <= 2);
  FUZZ_CHECK(params->scene_id.size() <= 512 && params->model_digest.size() <= 128);
  FUZZ_CHECK(EncodeResumeToken(*params) == token);
}

}  // namespace
}  // namespace flexgs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flexgs;
  std::string token(fuzz::Bytes(data, size));
  fuzz::Check(token);
  if (token.size() >= 4) {
    const uint32_t crc = Crc32c(absl::string_view(token.data(), token.size() - 4));
    for (int i = 0; i < 4; ++i) token[token.size() - 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
    fuzz::Check(token);
  }
  return 0;
}

#include "stream/resume_token.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/byte_io.h"
#include "base/crc32c.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {
namespace {

// Layout (all integers little endian):
//   "FGRT" magic, u8 version (1),
//   u16 length + scene id (<= 512 bytes), u16 length + model digest (<= 128 bytes),
//   u64 top ratio (IEEE-754 bits), u8 rung count (<= 64) + u64 bits per rung,
//   i32 SH degree, i32 encoding, u32 max chunk bytes,
//   u32 CRC-32C of every byte before it.
// Doubles travel as their bits so a resumed stream plans with exactly the same ratios.
constexpr char kMagic[4] = {'F', 'G', 'R', 'T'};
constexpr uint8_t kVersion = 1;
constexpr size_t kMaxSceneId = 512;
constexpr size_t kMaxDigest = 128;
constexpr size_t kMaxRungs = 64;
// Encoding values a token may carry: flexgs.v1.Encoding UNSPECIFIED..LOSSLESS.
constexpr int kMaxEncoding = 2;

uint64_t DoubleBits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

// Strings longer than the bound are truncated on write; the caller's validation keeps
// them in bounds, and truncation still yields a token that decodes (and mismatches).
void PutString(ByteWriter& w, const std::string& s, size_t max) {
  const size_t n = std::min(s.size(), max);
  w.Put(static_cast<uint16_t>(n));
  w.PutBytes(std::string_view(s.data(), n));
}

bool GetString(ByteReader& r, size_t max, std::string* s) {
  uint16_t n;
  std::string_view bytes;
  if (!r.Get(&n) || n > max || !r.Bytes(n, &bytes)) return false;
  s->assign(bytes);
  return true;
}

absl::Status Damaged(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("resume token is damaged: ", why));
}

bool SameBits(double a, double b) { return DoubleBits(a) == DoubleBits(b); }

}  // namespace

bool StreamParams::operator==(const StreamParams& o) const {
  if (scene_id != o.scene_id || model_digest != o.model_digest || !SameBits(top_ratio, o.top_ratio) ||
      ladder.size() != o.ladder.size() || sh_degree != o.sh_degree || encoding != o.encoding ||
      max_chunk_bytes != o.max_chunk_bytes) {
    return false;
  }
  for (size_t i = 0; i < ladder.size(); ++i) {
    if (!SameBits(ladder[i], o.ladder[i])) return false;
  }
  return true;
}

std::string EncodeResumeToken(const StreamParams& params) {
  std::string out(kMagic, sizeof(kMagic));
  ByteWriter w(&out);
  w.Put(kVersion);
  PutString(w, params.scene_id, kMaxSceneId);
  PutString(w, params.model_digest, kMaxDigest);
  w.Put(params.top_ratio);
  const size_t rungs = std::min(params.ladder.size(), kMaxRungs);
  w.Put(static_cast<uint8_t>(rungs));
  for (size_t i = 0; i < rungs; ++i) w.Put(params.ladder[i]);
  w.Put(static_cast<uint32_t>(params.sh_degree));
  w.Put(static_cast<uint32_t>(params.encoding));
  w.Put(params.max_chunk_bytes);
  w.Put(Crc32c(out));
  return out;
}

absl::StatusOr<StreamParams> DecodeResumeToken(absl::string_view token) {
  constexpr size_t kMinSize = 4 + 1 + 2 + 2 + 8 + 1 + 4 + 4 + 4 + 4;
  constexpr size_t kMaxSize = kMinSize + kMaxSceneId + kMaxDigest + 8 * kMaxRungs;
  if (token.size() < kMinSize) return Damaged(absl::StrCat("too short (", token.size(), " bytes)"));
  if (token.size() > kMaxSize) return Damaged(absl::StrCat("too long (", token.size(), " bytes)"));
  if (std::memcmp(token.data(), kMagic, sizeof(kMagic)) != 0) return Damaged("not a flexgs resume token");
  // The CRC comes before the version check so that a damaged version byte reads as
  // damage; a well-formed token of another version is a different error.
  const absl::string_view body = token.substr(0, token.size() - 4);
  uint32_t stored_crc = 0;
  ByteReader crc_reader(token.substr(token.size() - 4));
  if (!crc_reader.Get(&stored_crc) || Crc32c(body) != stored_crc) return Damaged("checksum mismatch");
  const uint8_t version = static_cast<uint8_t>(body[4]);
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("resume token has version ", static_cast<int>(version),
                                                   "; this server reads version ", static_cast<int>(kVersion)));
  }

  ByteReader r(body.substr(5));
  StreamParams p;
  uint8_t rungs;
  uint32_t sh, enc;
  if (!GetString(r, kMaxSceneId, &p.scene_id)) return Damaged("bad scene id");
  if (!GetString(r, kMaxDigest, &p.model_digest)) return Damaged("bad model digest");
  if (!r.Get(&p.top_ratio)) return Damaged("truncated top ratio");
  if (!r.Get(&rungs) || rungs > kMaxRungs) return Damaged("bad ladder length");
  p.ladder.resize(rungs);
  for (double& rung : p.ladder) {
    if (!r.Get(&rung)) return Damaged("truncated ladder");
  }
  if (!r.Get(&sh) || !r.Get(&enc) || !r.Get(&p.max_chunk_bytes)) return Damaged("truncated parameters");
  if (r.remaining() != 0) return Damaged("trailing bytes");
  // Values no stream can have: a valid CRC is not proof of authorship, and these feed
  // straight into planning.
  if (!(std::isfinite(p.top_ratio) && p.top_ratio >= 0.0 && p.top_ratio <= 1.0)) return Damaged("bad top ratio");
  for (double rung : p.ladder) {
    if (!std::isfinite(rung)) return Damaged("bad ladder rung");
  }
  if (sh > static_cast<uint64_t>(kMaxShDegree)) return Damaged("bad SH degree");
  if (enc > static_cast<uint64_t>(kMaxEncoding)) return Damaged("bad encoding");
  p.sh_degree = static_cast<int>(sh);
  p.encoding = static_cast<int>(enc);
  return p;
}

}  // namespace flexgs

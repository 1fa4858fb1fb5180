#include "stream/resume_token.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
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

void PutU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
void PutLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
uint64_t DoubleBits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
// Strings longer than the bound are truncated on write; the caller's validation keeps
// them in bounds, and truncation still yields a token that decodes (and mismatches).
void PutString(std::string& out, const std::string& s, size_t max) {
  const size_t n = std::min(s.size(), max);
  PutLe(out, n, 2);
  out.append(s.data(), n);
}

absl::Status Damaged(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("resume token is damaged: ", why));
}

// Bounds-checked little-endian reader: every read says whether the bytes were there.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool Le(int bytes, uint64_t* v) {
    if (data_.size() - pos_ < static_cast<size_t>(bytes)) return false;
    *v = 0;
    for (int i = 0; i < bytes; ++i) *v |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += bytes;
    return true;
  }
  bool String(size_t max, std::string* s) {
    uint64_t n;
    if (!Le(2, &n) || n > max || data_.size() - pos_ < n) return false;
    s->assign(data_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool Double(double* d) {
    uint64_t b;
    if (!Le(8, &b)) return false;
    std::memcpy(d, &b, 8);
    return true;
  }
  bool AtEnd() const { return pos_ == data_.size(); }

 private:
  absl::string_view data_;
  size_t pos_ = 0;
};

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
  PutU8(out, kVersion);
  PutString(out, params.scene_id, kMaxSceneId);
  PutString(out, params.model_digest, kMaxDigest);
  PutLe(out, DoubleBits(params.top_ratio), 8);
  const size_t rungs = std::min(params.ladder.size(), kMaxRungs);
  PutU8(out, static_cast<uint8_t>(rungs));
  for (size_t i = 0; i < rungs; ++i) PutLe(out, DoubleBits(params.ladder[i]), 8);
  PutLe(out, static_cast<uint32_t>(params.sh_degree), 4);
  PutLe(out, static_cast<uint32_t>(params.encoding), 4);
  PutLe(out, params.max_chunk_bytes, 4);
  PutLe(out, Crc32c(out), 4);
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
  uint64_t stored_crc;
  Reader crc_reader(token.substr(token.size() - 4));
  crc_reader.Le(4, &stored_crc);
  if (Crc32c(body) != stored_crc) return Damaged("checksum mismatch");
  const uint8_t version = static_cast<uint8_t>(body[4]);
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("resume token has version ", static_cast<int>(version),
                                                   "; this server reads version ", static_cast<int>(kVersion)));
  }

  Reader r(body.substr(5));
  StreamParams p;
  uint64_t rungs, sh, enc, chunk;
  if (!r.String(kMaxSceneId, &p.scene_id)) return Damaged("bad scene id");
  if (!r.String(kMaxDigest, &p.model_digest)) return Damaged("bad model digest");
  if (!r.Double(&p.top_ratio)) return Damaged("truncated top ratio");
  if (!r.Le(1, &rungs) || rungs > kMaxRungs) return Damaged("bad ladder length");
  p.ladder.resize(rungs);
  for (double& rung : p.ladder) {
    if (!r.Double(&rung)) return Damaged("truncated ladder");
  }
  if (!r.Le(4, &sh) || !r.Le(4, &enc) || !r.Le(4, &chunk)) return Damaged("truncated parameters");
  if (!r.AtEnd()) return Damaged("trailing bytes");
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
  p.max_chunk_bytes = static_cast<uint32_t>(chunk);
  return p;
}

}  // namespace flexgs

#include "client/scene_assembler.h"

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "scene/gaussian_cloud.h"
#include "stream/level_planner.h"

namespace flexgs::client {
namespace {

const char* KindName(int kind) {
  switch (kind) {
    case v1::CHUNK_KIND_HEADER:
      return "HEADER";
    case v1::CHUNK_KIND_GAUSSIANS:
      return "GAUSSIANS";
    case v1::CHUNK_KIND_PATCHES:
      return "PATCHES";
    case v1::CHUNK_KIND_LEVEL_END:
      return "LEVEL_END";
    case v1::CHUNK_KIND_TRAILER:
      return "TRAILER";
    default:
      return "unknown kind";
  }
}

// Every rejection names the message (sequence and kind) and what is wrong with it, so a
// log line is enough to tell a flaky link from a broken server.
template <class... Args>
absl::Status Loss(uint64_t sequence, int kind, const Args&... what) {
  return absl::DataLossError(absl::StrCat("sequence ", sequence, " (", KindName(kind), "): ", what...));
}

ChunkEncoding BlockEncoding(v1::Encoding e) {
  return e == v1::ENCODING_LOSSLESS ? ChunkEncoding::kLossless : ChunkEncoding::kQuantized;
}

// What the header promises must be self-consistent before the store is sized from it
// and blocks are checked against it: every later check trusts these numbers.
absl::Status CheckHeader(const v1::StreamHeader& h) {
  constexpr int kKind = v1::CHUNK_KIND_HEADER;
  if (h.sh_degree() > static_cast<uint32_t>(kMaxShDegree)) return Loss(0, kKind, "SH degree ", h.sh_degree(), " > 3");
  if (h.encoding() != v1::ENCODING_QUANTIZED && h.encoding() != v1::ENCODING_LOSSLESS) {
    return Loss(0, kKind, "encoding ", static_cast<int>(h.encoding()), " is not a concrete encoding");
  }
  if (h.levels().empty()) return Loss(0, kKind, "no levels");
  if (h.model_gaussians() == 0) return Loss(0, kKind, "model has no Gaussians");
  uint64_t held = 0;           // Gaussians held before level k
  uint64_t next_sequence = 1;  // first sequence of level k
  uint64_t payload_bytes = 0;
  double previous_ratio = 0;
  for (int k = 0; k < h.levels_size(); ++k) {
    const v1::LevelInfo& l = h.levels(k);
    if (l.index() != static_cast<uint32_t>(k)) return Loss(0, kKind, "level ", k, " has index ", l.index());
    if (!(l.ratio() > previous_ratio && l.ratio() <= 1.0)) {  // (false for NaN)
      return Loss(0, kKind, "level ", k, " ratio ", l.ratio(), " is not in (", previous_ratio, ", 1]");
    }
    // Non-decreasing, not strictly increasing: on a small model two rungs can floor to
    // the same count, and such a level only patches.
    if (l.gaussians() < held || l.gaussians() == 0) {
      return Loss(0, kKind, "level ", k, " holds ", l.gaussians(), " Gaussians after ", held);
    }
    if (l.added() != l.gaussians() - held) {
      return Loss(0, kKind, "level ", k, " adds ", l.added(), " but goes from ", held, " to ", l.gaussians());
    }
    // A level re-poses all earlier Gaussians or none, or replaces some of them (merged
    // levels); which of the two is checked as its blocks arrive and at its end.
    if (l.patched() > held) {
      return Loss(0, kKind, "level ", k, " patches ", l.patched(), " of ", held, " held Gaussians");
    }
    // (The bound on last_sequence keeps next_sequence + 1 below from wrapping.)
    if (l.first_sequence() != next_sequence || l.last_sequence() < l.first_sequence() ||
        l.last_sequence() >= std::numeric_limits<uint64_t>::max() - 1) {
      return Loss(0, kKind, "level ", k, " spans sequences ", l.first_sequence(), "..", l.last_sequence(),
                  ", expected to start at ", next_sequence);
    }
    if (l.payload_bytes() > std::numeric_limits<uint64_t>::max() - payload_bytes) {
      return Loss(0, kKind, "level payload bytes overflow");
    }
    payload_bytes += l.payload_bytes();
    held = l.gaussians();
    next_sequence = l.last_sequence() + 1;
    previous_ratio = l.ratio();
  }
  if (held > h.model_gaussians()) {
    return Loss(0, kKind, "last level holds ", held, " of a ", h.model_gaussians(), "-Gaussian model");
  }
  if (h.total_messages() != next_sequence + 1) {
    return Loss(0, kKind, "total messages ", h.total_messages(), " but the last level ends at sequence ",
                next_sequence - 1);
  }
  if (h.total_payload_bytes() != payload_bytes) {
    return Loss(0, kKind, "total payload bytes ", h.total_payload_bytes(), " != the levels' sum ", payload_bytes);
  }
  return absl::OkStatus();
}

}  // namespace

SceneAssembler::SceneAssembler(ResidentStore* store, BlockLimits limits) : store_(store), limits_(limits) {}

absl::Status SceneAssembler::BeginExtension() {
  if (!header_.has_value()) return absl::FailedPreconditionError("no stream to extend: no header has arrived");
  if (!extend_from_.has_value()) extend_from_ = extension_sequence();
  return absl::OkStatus();
}

absl::StatusOr<ApplyResult> SceneAssembler::ApplyExtensionHeader(const v1::StreamChunk& chunk) {
  constexpr int kKind = v1::CHUNK_KIND_HEADER;
  const uint64_t sequence = chunk.sequence();
  if (chunk.kind() != v1::CHUNK_KIND_HEADER || sequence != 0) {
    return Loss(sequence, chunk.kind(), "an extension starts with the larger stream's header at sequence 0");
  }
  if (const uint32_t crc = Crc32c(chunk.payload()); crc != chunk.crc32c()) {
    return Loss(sequence, kKind, "CRC-32C of the payload is ", crc, ", the message says ", chunk.crc32c());
  }
  v1::StreamHeader h;
  if (!h.ParseFromString(chunk.payload())) return Loss(sequence, kKind, "payload is not a StreamHeader");
  if (absl::Status st = CheckHeader(h); !st.ok()) return st;
  const v1::StreamHeader& old = *header_;
  if (h.scene_id() != old.scene_id() || h.model_digest() != old.model_digest() ||
      h.model_gaussians() != old.model_gaussians() || h.sh_degree() != old.sh_degree() ||
      h.encoding() != old.encoding()) {
    return Loss(sequence, kKind, "the extension is for another scene, model, SH degree or encoding");
  }
  if (h.levels_size() < old.levels_size()) {
    return Loss(sequence, kKind, "the extension has ", h.levels_size(), " levels, fewer than the ", old.levels_size(),
                " held");
  }
  for (int k = 0; k < old.levels_size(); ++k) {
    if (h.levels(k).SerializeAsString() != old.levels(k).SerializeAsString()) {
      return Loss(sequence, kKind, "the extension's level ", k, " differs from the one held");
    }
  }
  if (*extend_from_ > h.levels(h.levels_size() - 1).last_sequence() + 1) {
    return Loss(sequence, kKind, "the extension ends before sequence ", *extend_from_);
  }
  // The store grows to the new last level, keeping what it holds (through the host:
  // an extension happens once per budget change, not per block).
  const size_t capacity = static_cast<size_t>(h.levels(h.levels_size() - 1).gaussians());
  if (capacity > store_->capacity()) {
    const GaussianCloud held = store_->ToHost();
    absl::Status st = store_->Reset(capacity, static_cast<int>(h.sh_degree()));
    if (st.ok()) st = store_->Append(held);
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("sequence 0 (HEADER): growing to ", capacity,
                                                  " Gaussians for the extension: ", st.message()));
    }
  }
  header_ = std::move(h);
  next_sequence_ = *extend_from_;
  extend_from_.reset();
  complete_ = false;
  payload_bytes_ += chunk.payload().size();
  ApplyResult r;
  r.kind = ApplyResult::Kind::kHeader;
  r.payload_bytes = chunk.payload().size();
  return r;
}

absl::StatusOr<ApplyResult> SceneAssembler::Apply(const v1::StreamChunk& chunk) {
  if (extend_from_.has_value()) return ApplyExtensionHeader(chunk);
  const uint64_t sequence = chunk.sequence();
  const int kind = static_cast<int>(chunk.kind());
  if (complete_) {
    return absl::FailedPreconditionError(absl::StrCat("sequence ", sequence, " (", KindName(kind),
                                                      "): the stream is complete, its trailer was sequence ",
                                                      next_sequence_ - 1));
  }
  if (sequence != next_sequence_) return Loss(sequence, kind, "expected sequence ", next_sequence_);
  if (const uint32_t crc = Crc32c(chunk.payload()); crc != chunk.crc32c()) {
    return Loss(sequence, kind, "CRC-32C of the payload is ", crc, ", the message says ", chunk.crc32c());
  }
  if (kind < v1::CHUNK_KIND_HEADER || kind > v1::CHUNK_KIND_TRAILER) {
    return Loss(sequence, kind, "chunk kind ", kind, " is not one this client knows");
  }
  // Only the header may start a stream, and only once: everything after it is checked
  // against what it promised.
  if (kind == v1::CHUNK_KIND_HEADER && header_.has_value()) return Loss(sequence, kind, "second header");
  if (kind != v1::CHUNK_KIND_HEADER && !header_.has_value()) {
    return Loss(sequence, kind, "the stream must start with a header");
  }
  absl::StatusOr<ApplyResult> result;
  switch (kind) {
    case v1::CHUNK_KIND_HEADER:
      result = ApplyHeader(sequence, chunk.payload());
      break;
    case v1::CHUNK_KIND_GAUSSIANS:
      result = ApplyGaussians(sequence, chunk.payload());
      break;
    case v1::CHUNK_KIND_PATCHES:
      result = ApplyPatches(sequence, chunk.payload());
      break;
    case v1::CHUNK_KIND_LEVEL_END:
      result = ApplyLevelEnd(sequence, chunk.payload());
      break;
    case v1::CHUNK_KIND_TRAILER:
      result = ApplyTrailer(sequence, chunk.payload());
      break;
    default:  // (refused above)
      return Loss(sequence, kind, "chunk kind ", kind, " is not one this client knows");
  }
  if (!result.ok()) return result.status();
  result->payload_bytes = chunk.payload().size();
  payload_bytes_ += chunk.payload().size();
  ++next_sequence_;
  return result;
}

absl::StatusOr<ApplyResult> SceneAssembler::ApplyHeader(uint64_t sequence, const std::string& payload) {
  constexpr int kKind = v1::CHUNK_KIND_HEADER;
  v1::StreamHeader h;
  if (!h.ParseFromString(payload)) return Loss(sequence, kKind, "payload is not a StreamHeader");
  if (absl::Status st = CheckHeader(h); !st.ok()) return st;
  // Capacity for the last level, reserved once: the store never reallocates while the
  // stream grows it, and a budget the device cannot hold fails here, before any block.
  const size_t capacity = static_cast<size_t>(h.levels(h.levels_size() - 1).gaussians());
  if (absl::Status st = store_->Reset(capacity, static_cast<int>(h.sh_degree())); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("sequence ", sequence, " (HEADER): reserving ", capacity,
                                                " Gaussians: ", st.message()));
  }
  header_ = std::move(h);
  current_level_ = 0;
  levels_completed_ = 0;
  level_patched_ = 0;
  level_block_bytes_ = 0;
  level_replace_floor_ = 0;
  ApplyResult r;
  r.kind = ApplyResult::Kind::kHeader;
  return r;
}

absl::Status SceneAssembler::CheckBlockPlace(uint64_t sequence, int kind, uint32_t block_level) const {
  const v1::StreamHeader& h = *header_;
  if (current_level_ >= h.levels_size()) return Loss(sequence, kind, "block after the last level");
  const v1::LevelInfo& level = h.levels(current_level_);
  if (block_level != static_cast<uint32_t>(current_level_)) {
    return Loss(sequence, kind, "block of level ", block_level, " while level ", current_level_, " is streaming");
  }
  if (sequence >= level.last_sequence()) {
    return Loss(sequence, kind, "level ", current_level_, " ends at sequence ", level.last_sequence());
  }
  return absl::OkStatus();
}

absl::StatusOr<ApplyResult> SceneAssembler::ApplyGaussians(uint64_t sequence, const std::string& payload) {
  constexpr int kKind = v1::CHUNK_KIND_GAUSSIANS;
  v1::GaussianBlock b;
  if (!b.ParseFromString(payload)) return Loss(sequence, kKind, "payload is not a GaussianBlock");
  if (absl::Status st = CheckBlockPlace(sequence, kKind, b.level()); !st.ok()) return st;
  const v1::StreamHeader& h = *header_;
  const v1::LevelInfo& level = h.levels(current_level_);
  const uint64_t held = store_->size();
  if (b.first() != held) return Loss(sequence, kKind, "block starts at ", b.first(), " but ", held, " are held");
  if (held > level.gaussians() || b.count() > level.gaussians() - held) {
    return Loss(sequence, kKind, held, " held + ", b.count(), " exceeds level ", current_level_, "'s ",
                level.gaussians(), " Gaussians");
  }
  // The fixed block header first: a block of the wrong kind, encoding or degree is
  // refused before anything is decompressed.
  absl::StatusOr<BlockInfo> info = ReadBlockInfo(b.data());
  if (!info.ok()) return Loss(sequence, kKind, info.status().message());
  if (info->kind != ChunkKind::kGaussians || info->encoding != BlockEncoding(h.encoding()) ||
      info->sh_degree != static_cast<int>(h.sh_degree()) || info->count != b.count()) {
    return Loss(sequence, kKind, "block data (kind ", static_cast<int>(info->kind), ", encoding ",
                static_cast<int>(info->encoding), ", SH degree ", info->sh_degree, ", count ", info->count,
                ") contradicts the block (count ", b.count(), ") or header (encoding ", static_cast<int>(h.encoding()),
                ", SH degree ", h.sh_degree(), ")");
  }
  absl::StatusOr<GaussianCloud> decoded = DecodeGaussianBlock(b.data(), limits_);
  if (!decoded.ok()) return Loss(sequence, kKind, decoded.status().message());
  if (decoded->size() != b.count() || decoded->sh_degree != static_cast<int>(h.sh_degree())) {
    return Loss(sequence, kKind, "decoded ", decoded->size(), " Gaussians at SH degree ", decoded->sh_degree,
                ", expected ", b.count(), " at ", h.sh_degree());
  }
  // Everything checked: the store has room (capacity is the last level's count) and the
  // degree matches, so an error here is the store's own (e.g. a device failure), and
  // it leaves the store unchanged.
  if (absl::Status st = store_->Append(*decoded); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("sequence ", sequence, " (GAUSSIANS): ", st.message()));
  }
  level_block_bytes_ += b.data().size();
  ApplyResult r;
  r.kind = ApplyResult::Kind::kGaussians;
  r.level = current_level_;
  return r;
}

absl::StatusOr<ApplyResult> SceneAssembler::ApplyPatches(uint64_t sequence, const std::string& payload) {
  constexpr int kKind = v1::CHUNK_KIND_PATCHES;
  v1::PatchBlock b;
  if (!b.ParseFromString(payload)) return Loss(sequence, kKind, "payload is not a PatchBlock");
  if (absl::Status st = CheckBlockPlace(sequence, kKind, b.level()); !st.ok()) return st;
  const v1::StreamHeader& h = *header_;
  const v1::LevelInfo& level = h.levels(current_level_);
  absl::StatusOr<BlockInfo> info = ReadBlockInfo(b.data());
  if (!info.ok()) return Loss(sequence, kKind, info.status().message());
  if (info->kind == ChunkKind::kReplacements) return ApplyReplacements(sequence, b, *info);
  if (level_replace_floor_ > 0) return Loss(sequence, kKind, "geometry patches after replacements in one level");
  // Patches cover the level's `patched` earlier Gaussians in client order, block after
  // block; requiring that order makes "all patched exactly once" checkable at LEVEL_END.
  if (b.first() != level_patched_) {
    return Loss(sequence, kKind, "patches start at ", b.first(), ", expected ", level_patched_);
  }
  if (b.count() > level.patched() - level_patched_ || level_patched_ + b.count() > store_->size()) {
    return Loss(sequence, kKind, "patches [", b.first(), ", ", b.first() + b.count(), ") exceed the level's ",
                level.patched(), " patched of ", store_->size(), " held Gaussians");
  }
  if (info->kind != ChunkKind::kPatches || info->encoding != BlockEncoding(h.encoding()) || info->count != b.count()) {
    return Loss(sequence, kKind, "block data (kind ", static_cast<int>(info->kind), ", encoding ",
                static_cast<int>(info->encoding), ", count ", info->count, ") contradicts the block (count ", b.count(),
                ") or header (encoding ", static_cast<int>(h.encoding()), ")");
  }
  absl::StatusOr<std::vector<float>> decoded = DecodePatchBlock(b.data(), limits_);
  if (!decoded.ok()) return Loss(sequence, kKind, decoded.status().message());
  if (decoded->size() != static_cast<size_t>(b.count()) * kPatchStride) {
    return Loss(sequence, kKind, "decoded ", decoded->size() / kPatchStride, " patches, expected ", b.count());
  }
  if (absl::Status st = store_->Patch(b.first(), *decoded); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("sequence ", sequence, " (PATCHES): ", st.message()));
  }
  return PatchBlockApplied(b);
}

ApplyResult SceneAssembler::PatchBlockApplied(const v1::PatchBlock& b) {
  level_patched_ += b.count();
  level_block_bytes_ += b.data().size();
  ApplyResult r;
  r.kind = ApplyResult::Kind::kPatches;
  r.level = current_level_;
  return r;
}

absl::StatusOr<ApplyResult> SceneAssembler::ApplyReplacements(uint64_t sequence, const v1::PatchBlock& b,
                                                              const BlockInfo& info) {
  constexpr int kKind = v1::CHUNK_KIND_PATCHES;
  const v1::StreamHeader& h = *header_;
  const v1::LevelInfo& level = h.levels(current_level_);
  if (level_patched_ > 0 && level_replace_floor_ == 0) {
    return Loss(sequence, kKind, "replacements after geometry patches in one level");
  }
  if (info.encoding != BlockEncoding(h.encoding()) || info.sh_degree != static_cast<int>(h.sh_degree()) ||
      info.count != b.count() || b.count() == 0) {
    return Loss(sequence, kKind, "replacement block (encoding ", static_cast<int>(info.encoding), ", SH degree ",
                info.sh_degree, ", count ", info.count, ") contradicts the block (count ", b.count(),
                ") or header (encoding ", static_cast<int>(h.encoding()), ", SH degree ", h.sh_degree(), ")");
  }
  if (b.count() > level.patched() - level_patched_) {
    return Loss(sequence, kKind, "replacements exceed the level's ", level.patched(), " patched");
  }
  absl::StatusOr<ReplacementBlock> decoded = DecodeReplacementBlock(b.data(), limits_);
  if (!decoded.ok()) return Loss(sequence, kKind, decoded.status().message());
  // Ascending across the level's blocks (so none is replaced twice), within what is held.
  const std::vector<uint32_t>& idx = decoded->indices;
  if (idx.front() != b.first() || idx.front() < level_replace_floor_ || idx.back() >= store_->size()) {
    return Loss(sequence, kKind, "replacements [", idx.front(), " .. ", idx.back(), "] (block says first ", b.first(),
                ") are not after index ", level_replace_floor_, " and within the ", store_->size(), " held");
  }
  if (absl::Status st = store_->Replace(idx, decoded->gaussians); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("sequence ", sequence, " (PATCHES): ", st.message()));
  }
  level_replace_floor_ = uint64_t{idx.back()} + 1;
  return PatchBlockApplied(b);
}

absl::StatusOr<ApplyResult> SceneAssembler::ApplyLevelEnd(uint64_t sequence, const std::string& payload) {
  constexpr int kKind = v1::CHUNK_KIND_LEVEL_END;
  v1::LevelEnd e;
  if (!e.ParseFromString(payload)) return Loss(sequence, kKind, "payload is not a LevelEnd");
  const v1::StreamHeader& h = *header_;
  if (current_level_ >= h.levels_size()) return Loss(sequence, kKind, "level end after the last level");
  const v1::LevelInfo& level = h.levels(current_level_);
  if (e.level() != static_cast<uint32_t>(current_level_)) {
    return Loss(sequence, kKind, "end of level ", e.level(), " while level ", current_level_, " is streaming");
  }
  // At the announced position: a level end that comes early means blocks are missing.
  if (sequence != level.last_sequence()) {
    return Loss(sequence, kKind, "level ", current_level_, " ends at sequence ", level.last_sequence());
  }
  if (e.ratio() != level.ratio()) {
    return Loss(sequence, kKind, "level ratio ", e.ratio(), " != header's ", level.ratio());
  }
  if (e.gaussians() != level.gaussians() || store_->size() != level.gaussians()) {
    return Loss(sequence, kKind, "level ", current_level_, " ends with ", e.gaussians(), " Gaussians, header says ",
                level.gaussians(), ", ", store_->size(), " held");
  }
  if (level_patched_ != level.patched()) {
    return Loss(sequence, kKind, level_patched_, " Gaussians patched, header says ", level.patched());
  }
  const uint64_t held_before = level.gaussians() - level.added();
  if (level_replace_floor_ == 0 && level_patched_ != 0 && level_patched_ != held_before) {
    return Loss(sequence, kKind, "geometry patches cover ", level_patched_, " of the ", held_before,
                " Gaussians held before the level (all or none)");
  }
  if (level_block_bytes_ != level.payload_bytes()) {
    return Loss(sequence, kKind, level_block_bytes_, " block bytes received, header says ", level.payload_bytes());
  }
  ApplyResult r;
  r.kind = ApplyResult::Kind::kLevelEnd;
  r.level = current_level_;
  ++current_level_;
  ++levels_completed_;
  level_patched_ = 0;
  level_block_bytes_ = 0;
  level_replace_floor_ = 0;
  return r;
}

absl::StatusOr<ApplyResult> SceneAssembler::ApplyTrailer(uint64_t sequence, const std::string& payload) {
  constexpr int kKind = v1::CHUNK_KIND_TRAILER;
  v1::StreamTrailer t;
  if (!t.ParseFromString(payload)) return Loss(sequence, kKind, "payload is not a StreamTrailer");
  const v1::StreamHeader& h = *header_;
  if (levels_completed_ != h.levels_size()) {
    return Loss(sequence, kKind, "trailer after ", levels_completed_, " of ", h.levels_size(), " levels");
  }
  if (t.messages() != sequence + 1 || t.messages() != h.total_messages()) {
    return Loss(sequence, kKind, "trailer counts ", t.messages(), " messages, header says ", h.total_messages());
  }
  if (t.payload_bytes() != h.total_payload_bytes()) {
    return Loss(sequence, kKind, "trailer counts ", t.payload_bytes(), " payload bytes, header says ",
                h.total_payload_bytes());
  }
  if (t.model_digest() != h.model_digest()) {
    return Loss(sequence, kKind, "trailer model digest differs from the header's");
  }
  complete_ = true;
  ApplyResult r;
  r.kind = ApplyResult::Kind::kTrailer;
  return r;
}

}  // namespace flexgs::client

#include "stream/stream_script.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {
namespace {

// Checks that a plan is internally consistent before anything indexes into it: a
// script built from a broken plan would hand clients out-of-range indices.
absl::Status CheckPlan(const Plan& plan) {
  if (plan.sh_degree < 0 || plan.sh_degree > kMaxShDegree) {
    return absl::InvalidArgumentError(absl::StrCat("plan SH degree ", plan.sh_degree, " is outside 0..3"));
  }
  uint64_t held = 0;
  for (size_t k = 0; k < plan.levels.size(); ++k) {
    const PlanLevel& l = plan.levels[k];
    const GaussianCloud& a = l.added_gaussians;
    // (An empty addition may come back as a default cloud; its SH degree is moot.)
    if (l.added.size() != a.size() || (!a.empty() && a.sh_degree != plan.sh_degree) || !a.Validate().ok()) {
      return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " has inconsistent additions"));
    }
    if (l.patches.size() % kPatchStride != 0 || (!l.patches.empty() && l.patches.size() / kPatchStride != held)) {
      return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " patches do not match the held set"));
    }
    const GaussianCloud& r = l.replacements;
    bool replacements_ok = r.size() == l.replaced.size() && (r.empty() || r.sh_degree == plan.sh_degree) &&
                           r.Validate().ok() && (l.replaced.empty() || l.patches.empty());
    for (size_t i = 0; replacements_ok && i < l.replaced.size(); ++i) {
      replacements_ok = l.replaced[i] < held && (i == 0 || l.replaced[i] > l.replaced[i - 1]);
    }
    if (!replacements_ok) {
      return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " replacements do not match the held set"));
    }
    held += l.added.size();
    if (l.count != held) {
      return absl::InvalidArgumentError(absl::StrCat("plan level ", k, " count ", l.count, " != held ", held));
    }
  }
  return absl::OkStatus();
}

// A header, level end or trailer: no data.
StreamItem Marker(StreamItemKind kind, uint32_t level) {
  StreamItem item;
  item.kind = kind;
  item.level = level;
  return item;
}

// The codec returns "" on failure, and promises blocks of at most `limit` bytes; a
// block over the limit would be refused by the client, so it is a build error here.
absl::Status CheckBlock(const std::string& data, size_t limit, size_t level) {
  if (data.empty()) return absl::InternalError(absl::StrCat("level ", level, ": block encoding failed"));
  if (data.size() > limit) {
    return absl::InternalError(
        absl::StrCat("level ", level, ": encoded block of ", data.size(), " bytes exceeds ", limit));
  }
  return absl::OkStatus();
}

uint64_t Blocks(uint64_t items, uint64_t per_block) { return (items + per_block - 1) / per_block; }

}  // namespace

uint64_t StreamScript::ByteSize() const {
  // Data plus a fixed per-item cost (the StreamItem itself and allocator slack for
  // its string); an estimate for cache accounting, deterministic by construction.
  uint64_t bytes = sizeof(StreamScript) + levels.size() * sizeof(StreamLevelSummary);
  for (const StreamItem& item : items) bytes += sizeof(StreamItem) + 16 + item.data.size();
  return bytes;
}

absl::StatusOr<StreamScript> BuildStreamScript(const Plan& plan, const ScriptOptions& options) {
  if (options.encoding != ChunkEncoding::kQuantized && options.encoding != ChunkEncoding::kLossless) {
    return absl::InvalidArgumentError(absl::StrCat("unknown chunk encoding ", static_cast<int>(options.encoding)));
  }
  if (options.sh_degree < 0 || options.sh_degree > plan.sh_degree) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SH degree %d is outside the model's 0..%d", options.sh_degree, plan.sh_degree));
  }
  if (options.max_chunk_bytes < kMinChunkBytes || options.max_chunk_bytes > kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("max chunk bytes %d is outside [%d, %d]", options.max_chunk_bytes,
                                                      kMinChunkBytes, kMaxChunkBytes));
  }
  if (absl::Status st = CheckPlan(plan); !st.ok()) return st;

  // Block data must leave room for the protobuf envelope (see kChunkEnvelopeBytes).
  const size_t block_bytes = options.max_chunk_bytes - kChunkEnvelopeBytes;
  const size_t gaussians_per_block = GaussiansPerBlock(block_bytes, options.encoding, options.sh_degree);
  const size_t patches_per_block = PatchesPerBlock(block_bytes, options.encoding);
  const size_t replacements_per_block = ReplacementsPerBlock(block_bytes, options.encoding, options.sh_degree);
  if (gaussians_per_block == 0 || patches_per_block == 0 || replacements_per_block == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max chunk bytes %d cannot hold a single block", options.max_chunk_bytes));
  }

  StreamScript script;
  script.sh_degree = options.sh_degree;
  script.encoding = options.encoding;
  uint64_t total_items = 2;
  for (const PlanLevel& l : plan.levels) {
    total_items += 1 + Blocks(l.patches.size() / kPatchStride, patches_per_block) +
                   Blocks(l.added.size(), gaussians_per_block) + Blocks(l.replaced.size(), replacements_per_block);
  }
  script.items.reserve(total_items);
  script.levels.reserve(plan.levels.size());

  script.items.push_back(Marker(StreamItemKind::kHeader, 0));
  uint64_t held = 0;  // Gaussians the client holds before the current level
  for (size_t k = 0; k < plan.levels.size(); ++k) {
    const PlanLevel& l = plan.levels[k];
    const uint32_t level = static_cast<uint32_t>(k);
    StreamLevelSummary summary;
    summary.ratio = l.ratio;
    summary.gaussians = l.count;
    summary.added = l.added.size();
    summary.patched = l.patches.size() / kPatchStride + l.replaced.size();
    summary.first_item = script.items.size();

    // Patches first: they address Gaussians the client already holds, in client order.
    const uint64_t geometry_patches = l.patches.size() / kPatchStride;
    for (uint64_t first = 0; first < geometry_patches; first += patches_per_block) {
      const uint64_t count = std::min<uint64_t>(patches_per_block, geometry_patches - first);
      std::string data = EncodePatchBlock(
          absl::MakeConstSpan(l.patches).subspan(first * kPatchStride, count * kPatchStride), options.encoding);
      FLEXGS_RETURN_IF_ERROR(CheckBlock(data, block_bytes, k));
      summary.payload_bytes += data.size();
      summary.patch_bytes += data.size();
      script.items.push_back({.kind = StreamItemKind::kPatches,
                              .level = level,
                              .first = first,
                              .count = static_cast<uint32_t>(count),
                              .data = std::move(data)});
    }
    // Or replacements (merged levels; a plan has one or the other): whole Gaussians,
    // ascending client order, each block naming its first index.
    for (uint64_t offset = 0; offset < l.replaced.size(); offset += replacements_per_block) {
      const uint64_t count = std::min<uint64_t>(replacements_per_block, l.replaced.size() - offset);
      std::string data = EncodeReplacementBlock(absl::MakeConstSpan(l.replaced).subspan(offset, count), l.replacements,
                                                offset, offset + count, options.encoding, options.sh_degree);
      FLEXGS_RETURN_IF_ERROR(CheckBlock(data, block_bytes, k));
      summary.payload_bytes += data.size();
      summary.patch_bytes += data.size();
      script.items.push_back({.kind = StreamItemKind::kPatches,
                              .level = level,
                              .first = l.replaced[offset],
                              .count = static_cast<uint32_t>(count),
                              .data = std::move(data)});
    }
    // Then the additions, appended after everything held. The encoder drops SH bands
    // above options.sh_degree itself, which equals encoding
    // added_gaussians.WithShDegree(sh_degree) without copying the level.
    for (uint64_t offset = 0; offset < summary.added; offset += gaussians_per_block) {
      const uint64_t count = std::min<uint64_t>(gaussians_per_block, summary.added - offset);
      std::string data =
          EncodeGaussianBlock(l.added_gaussians, offset, offset + count, options.encoding, options.sh_degree);
      FLEXGS_RETURN_IF_ERROR(CheckBlock(data, block_bytes, k));
      summary.payload_bytes += data.size();
      script.items.push_back({.kind = StreamItemKind::kGaussians,
                              .level = level,
                              .first = held + offset,
                              .count = static_cast<uint32_t>(count),
                              .data = std::move(data)});
    }
    held += summary.added;
    summary.level_end_item = script.items.size();
    script.items.push_back(Marker(StreamItemKind::kLevelEnd, level));
    script.payload_bytes += summary.payload_bytes;
    script.levels.push_back(summary);
  }
  script.items.push_back(Marker(StreamItemKind::kTrailer, 0));
  return script;
}

}  // namespace flexgs

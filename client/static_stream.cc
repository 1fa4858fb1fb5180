#include "client/static_stream.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "client/scene_assembler.h"
#include "stream/level_planner.h"  // LastLevelWithin
#include "stream/stream_budget.h"

namespace flexgs::client {
namespace {

v1::StreamChunk Chunk(uint64_t sequence, v1::ChunkKind kind, const google::protobuf::MessageLite& msg) {
  v1::StreamChunk c;
  c.set_sequence(sequence);
  c.set_kind(kind);
  c.set_payload(msg.SerializeAsString());
  c.set_crc32c(Crc32c(c.payload()));
  return c;
}

}  // namespace

v1::SceneInfo SceneInfoOf(const StreamExport& e) {
  v1::SceneInfo info;
  info.set_scene_id(e.scene.scene_id);
  info.set_gaussians(e.scene.model_gaussians);
  info.set_sh_degree(e.scene.model_sh_degree);
  for (int d = 0; d < 3; ++d) {
    info.mutable_bounds()->add_min(e.scene.bounds_min[d]);
    info.mutable_bounds()->add_max(e.scene.bounds_max[d]);
    info.mutable_view_bounds()->add_min(e.scene.view_min[d]);
    info.mutable_view_bounds()->add_max(e.scene.view_max[d]);
  }
  for (double r : e.scene.ladder) info.add_ladder(r);
  for (int d = 0; d <= e.scene.model_sh_degree; ++d) info.add_resident_bytes_per_gaussian(ResidentBytesPerGaussian(d));
  info.set_model_digest(e.scene.model_digest);
  info.set_trained(e.scene.trained);
  return info;
}

absl::StatusOr<StreamSummary> StreamFromExport(const std::string& dir, const StreamExport& e,
                                               const StreamRequest& request, ResidentStore* store,
                                               StreamObserver* observer) {
  if (store == nullptr) return absl::InvalidArgumentError("no ResidentStore given");
  const int budgets = request.memory_bytes.has_value() + request.ratio.has_value() + request.gaussians.has_value();
  if (budgets != 1) {
    return absl::InvalidArgumentError(absl::StrCat("a stream request needs exactly one budget; got ", budgets));
  }
  if ((request.max_sh_degree && static_cast<int>(*request.max_sh_degree) < e.sh_degree) || !request.ladder.empty() ||
      request.encoding != (e.encoding == ChunkEncoding::kLossless ? v1::ENCODING_LOSSLESS : v1::ENCODING_QUANTIZED)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the export in '", dir, "' is ", e.encoding == ChunkEncoding::kLossless ? "lossless" : "quantized",
                     " at SH degree ", e.sh_degree, " with its model's ladder; the request asks for another stream"));
  }
  Budget budget;
  if (request.memory_bytes) budget = {Budget::Kind::kMemoryBytes, static_cast<double>(*request.memory_bytes)};
  if (request.ratio) budget = {Budget::Kind::kRatio, *request.ratio};
  if (request.gaussians) budget = {Budget::Kind::kGaussians, static_cast<double>(*request.gaussians)};
  std::vector<double> ladder = e.scene.ladder;
  if (ladder.empty()) ladder = {e.levels.front().ratio};
  auto decision = DecideBudget(budget, e.scene.model_gaussians, e.sh_degree, ladder);
  if (!decision.ok()) return decision.status();
  std::vector<uint64_t> counts;
  for (const StreamLevelSummary& l : e.levels) counts.push_back(l.gaussians);
  const int last = LastLevelWithin(counts, decision->gaussians);
  if (last < 0) {
    return absl::FailedPreconditionError(absl::StrCat("the budget holds ", decision->gaussians,
                                                      " Gaussians, fewer than the first level's ", counts.front()));
  }

  // The messages a server sends for this cut, built from the index and the blocks.
  v1::StreamHeader h;
  h.set_scene_id(e.scene.scene_id);
  h.set_model_digest(e.scene.model_digest);
  h.set_model_gaussians(e.scene.model_gaussians);
  h.set_sh_degree(e.sh_degree);
  h.set_encoding(e.encoding == ChunkEncoding::kLossless ? v1::ENCODING_LOSSLESS : v1::ENCODING_QUANTIZED);
  uint64_t payload = 0;
  for (int k = 0; k <= last; ++k) {
    const StreamLevelSummary& s = e.levels[k];
    v1::LevelInfo* l = h.add_levels();
    l->set_index(static_cast<uint32_t>(k));
    l->set_ratio(s.ratio);
    l->set_gaussians(s.gaussians);
    l->set_added(s.added);
    l->set_patched(s.patched);
    l->set_payload_bytes(s.payload_bytes);
    l->set_patch_payload_bytes(s.patch_bytes);
    l->set_first_sequence(s.first_item);
    l->set_last_sequence(s.level_end_item);
    payload += s.payload_bytes;
  }
  const uint64_t trailer_sequence = e.levels[last].level_end_item + 1;
  h.set_total_messages(trailer_sequence + 1);
  h.set_total_payload_bytes(payload);
  h.set_resident_bytes(e.levels[last].gaussians * ResidentBytesPerGaussian(e.sh_degree));

  StreamObserver null_observer;
  StreamObserver& obs = observer != nullptr ? *observer : null_observer;
  SceneAssembler assembler(store);
  StreamSummary summary;
  uint64_t expected_bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto apply = [&](const v1::StreamChunk& chunk) -> absl::Status {
    auto applied = assembler.Apply(chunk);
    if (!applied.ok()) {
      return absl::Status(applied.status().code(), absl::StrCat("export '", dir, "': ", applied.status().message()));
    }
    ++summary.messages;
    ReportApplied(*applied, assembler, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                  summary, expected_bytes, obs);
    return absl::OkStatus();
  };
  if (absl::Status st = apply(Chunk(0, v1::CHUNK_KIND_HEADER, h)); !st.ok()) return st;
  size_t block = 0;
  for (int k = 0; k <= last; ++k) {
    const StreamLevelSummary& s = e.levels[k];
    for (; block < e.blocks.size() && e.blocks[block].sequence < s.level_end_item; ++block) {
      const ExportedBlock& b = e.blocks[block];
      auto data = ReadExportedBlock(dir, e, block);
      if (!data.ok()) return data.status();
      // GaussianBlock and PatchBlock have the same four fields.
      const auto block_chunk = [&](auto message, v1::ChunkKind kind) {
        message.set_level(b.level);
        message.set_first(b.first);
        message.set_count(b.count);
        message.set_data(*std::move(data));
        return Chunk(b.sequence, kind, message);
      };
      const v1::StreamChunk chunk = b.kind == StreamItemKind::kGaussians
                                        ? block_chunk(v1::GaussianBlock(), v1::CHUNK_KIND_GAUSSIANS)
                                        : block_chunk(v1::PatchBlock(), v1::CHUNK_KIND_PATCHES);
      if (absl::Status st = apply(chunk); !st.ok()) return st;
    }
    v1::LevelEnd end;
    end.set_level(static_cast<uint32_t>(k));
    end.set_ratio(s.ratio);
    end.set_gaussians(s.gaussians);
    if (absl::Status st = apply(Chunk(s.level_end_item, v1::CHUNK_KIND_LEVEL_END, end)); !st.ok()) return st;
  }
  v1::StreamTrailer t;
  t.set_messages(trailer_sequence + 1);
  t.set_payload_bytes(payload);
  t.set_model_digest(e.scene.model_digest);
  if (absl::Status st = apply(Chunk(trailer_sequence, v1::CHUNK_KIND_TRAILER, t)); !st.ok()) return st;
  summary.header = assembler.header();
  summary.payload_bytes = assembler.payload_bytes();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace flexgs::client

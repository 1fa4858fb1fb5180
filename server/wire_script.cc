#include "server/wire_script.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "stream/level_planner.h"
#include "stream/stream_budget.h"

namespace flexgs::server {
namespace {

WireMessage Make(v1::ChunkKind kind, const google::protobuf::MessageLite& msg) {
  WireMessage m;
  m.kind = kind;
  // These messages have no map fields, so serialisation is deterministic: two builds
  // of the same script (e.g. after a cache eviction) give byte-identical payloads and
  // a resumed stream continues exactly where the first one stopped.
  msg.SerializeToString(&m.payload);
  m.crc32c = Crc32c(m.payload);
  return m;
}

}  // namespace

uint64_t WireScript::ByteSize() const {
  uint64_t bytes = sizeof(WireScript) + levels.size() * sizeof(StreamLevelSummary);
  for (const WireMessage& m : messages) bytes += sizeof(WireMessage) + m.payload.capacity();
  return bytes;
}

absl::StatusOr<WireScript> BuildWireScript(const ElasticModel& model, const StreamParams& params, ThreadPool* pool) {
  if (params.encoding != v1::ENCODING_QUANTIZED && params.encoding != v1::ENCODING_LOSSLESS) {
    return absl::InvalidArgumentError(absl::StrCat("encoding ", params.encoding, " is not a concrete encoding"));
  }
  PlanRequest request;
  request.top_ratio = params.top_ratio;
  request.ladder = params.ladder;
  ScriptOptions options;
  options.encoding = params.encoding == v1::ENCODING_LOSSLESS ? ChunkEncoding::kLossless : ChunkEncoding::kQuantized;
  options.sh_degree = params.sh_degree;
  options.max_chunk_bytes = params.max_chunk_bytes;
  absl::StatusOr<StreamScript> script;
  uint64_t model_gaussians = 0;
  {  // the plan goes out of scope as soon as the script holds what it needs
    auto plan = PlanLevels(model, request, pool);
    if (!plan.ok()) return plan.status();
    model_gaussians = plan->model_gaussians;
    script = BuildStreamScript(*plan, options);
  }
  if (!script.ok()) return script.status();

  WireScript wire;
  wire.levels = script->levels;
  wire.block_bytes = script->payload_bytes;
  wire.sh_degree = script->sh_degree;
  wire.resident_bytes =
      script->levels.empty() ? 0 : script->levels.back().gaussians * ResidentBytesPerGaussian(script->sh_degree);
  wire.messages.reserve(script->items.size());
  for (StreamItem& item : script->items) {
    switch (item.kind) {
      case StreamItemKind::kHeader: {
        v1::StreamHeader h;
        h.set_scene_id(params.scene_id);
        h.set_model_digest(params.model_digest);
        h.set_model_gaussians(model_gaussians);
        h.set_sh_degree(script->sh_degree);
        h.set_encoding(static_cast<v1::Encoding>(params.encoding));
        for (size_t k = 0; k < script->levels.size(); ++k) {
          const StreamLevelSummary& s = script->levels[k];
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
        }
        h.set_resume_token(EncodeResumeToken(params));
        h.set_total_messages(script->items.size());
        h.set_total_payload_bytes(script->payload_bytes);
        h.set_resident_bytes(wire.resident_bytes);
        wire.messages.push_back(Make(v1::CHUNK_KIND_HEADER, h));
        break;
      }
      case StreamItemKind::kGaussians: {
        v1::GaussianBlock b;
        b.set_level(item.level);
        b.set_first(item.first);
        b.set_count(item.count);
        b.set_data(std::move(item.data));
        wire.messages.push_back(Make(v1::CHUNK_KIND_GAUSSIANS, b));
        break;
      }
      case StreamItemKind::kPatches: {
        v1::PatchBlock b;
        b.set_level(item.level);
        b.set_first(item.first);
        b.set_count(item.count);
        b.set_data(std::move(item.data));
        wire.messages.push_back(Make(v1::CHUNK_KIND_PATCHES, b));
        break;
      }
      case StreamItemKind::kLevelEnd: {
        const StreamLevelSummary& s = script->levels.at(item.level);
        v1::LevelEnd e;
        e.set_level(item.level);
        e.set_ratio(s.ratio);
        e.set_gaussians(s.gaussians);
        wire.messages.push_back(Make(v1::CHUNK_KIND_LEVEL_END, e));
        break;
      }
      case StreamItemKind::kTrailer: {
        v1::StreamTrailer t;
        t.set_messages(script->items.size());
        t.set_payload_bytes(script->payload_bytes);
        t.set_model_digest(params.model_digest);
        wire.messages.push_back(Make(v1::CHUNK_KIND_TRAILER, t));
        break;
      }
    }
    std::string().swap(item.data);  // release block bytes as they are converted
    wire.payload_bytes += wire.messages.back().payload.size();
  }
  return wire;
}

}  // namespace flexgs::server

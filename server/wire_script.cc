#include "server/wire_script.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "elastic/elastic_selection.h"  // ElasticCount
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

uint64_t CutPayloadBytes(const WireScript& script, size_t levels) {
  uint64_t bytes = 0;
  for (size_t k = 0; k < levels; ++k) bytes += script.levels[k].payload_bytes;
  return bytes;
}

// The header of a stream of the script's first `levels` levels.
WireMessage HeaderMessage(const WireScript& script, size_t levels, const StreamParams& params) {
  v1::StreamHeader h;
  h.set_scene_id(params.scene_id);
  h.set_model_digest(params.model_digest);
  h.set_model_gaussians(script.model_gaussians);
  h.set_sh_degree(script.sh_degree);
  h.set_encoding(static_cast<v1::Encoding>(params.encoding));
  for (size_t k = 0; k < levels; ++k) {
    const StreamLevelSummary& s = script.levels[k];
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
  h.set_total_messages(levels == 0 ? 2 : script.levels[levels - 1].level_end_item + 2);
  h.set_total_payload_bytes(CutPayloadBytes(script, levels));
  h.set_resident_bytes(levels == 0 ? 0
                                   : script.levels[levels - 1].gaussians * ResidentBytesPerGaussian(script.sh_degree));
  return Make(v1::CHUNK_KIND_HEADER, h);
}

WireMessage TrailerMessage(const WireScript& script, size_t levels, const StreamParams& params) {
  v1::StreamTrailer t;
  t.set_messages(levels == 0 ? 2 : script.levels[levels - 1].level_end_item + 2);
  t.set_payload_bytes(CutPayloadBytes(script, levels));
  t.set_model_digest(params.model_digest);
  return Make(v1::CHUNK_KIND_TRAILER, t);
}

absl::StatusOr<ScriptOptions> OptionsFor(const StreamParams& params) {
  if (params.encoding != v1::ENCODING_QUANTIZED && params.encoding != v1::ENCODING_LOSSLESS) {
    return absl::InvalidArgumentError(absl::StrCat("encoding ", params.encoding, " is not a concrete encoding"));
  }
  ScriptOptions options;
  options.encoding = params.encoding == v1::ENCODING_LOSSLESS ? ChunkEncoding::kLossless : ChunkEncoding::kQuantized;
  options.sh_degree = params.sh_degree;
  options.max_chunk_bytes = params.max_chunk_bytes;
  return options;
}

// Every item of `script` as its StreamChunk payload; the header and trailer are a 100 %
// budget's (WireCut makes each client's own).
WireScript SerializeScript(StreamScript script, uint64_t model_gaussians, const StreamParams& params) {
  WireScript wire;
  wire.levels = script.levels;
  wire.block_bytes = script.payload_bytes;
  wire.sh_degree = script.sh_degree;
  wire.model_gaussians = model_gaussians;
  wire.messages.reserve(script.items.size());
  StreamParams full = params;
  full.top_ratio = 1.0;
  for (StreamItem& item : script.items) {
    switch (item.kind) {
      case StreamItemKind::kHeader:
        wire.messages.push_back(HeaderMessage(wire, wire.levels.size(), full));
        break;
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
        const StreamLevelSummary& s = script.levels.at(item.level);
        v1::LevelEnd e;
        e.set_level(item.level);
        e.set_ratio(s.ratio);
        e.set_gaussians(s.gaussians);
        wire.messages.push_back(Make(v1::CHUNK_KIND_LEVEL_END, e));
        break;
      }
      case StreamItemKind::kTrailer:
        wire.messages.push_back(TrailerMessage(wire, wire.levels.size(), full));
        break;
    }
    std::string().swap(item.data);  // release block bytes as they are converted
    wire.payload_bytes += wire.messages.back().payload.size();
  }
  return wire;
}

}  // namespace

uint64_t WireScript::ByteSize() const {
  uint64_t bytes = sizeof(WireScript) + levels.size() * sizeof(StreamLevelSummary);
  for (const WireMessage& m : messages) bytes += sizeof(WireMessage) + m.payload.capacity();
  return bytes;
}

absl::StatusOr<WireScript> BuildWireScript(const ElasticModel& model, const StreamParams& params, ThreadPool* pool) {
  auto options = OptionsFor(params);
  if (!options.ok()) return options.status();
  absl::StatusOr<StreamScript> script;
  uint64_t model_gaussians = 0;
  {  // the plan goes out of scope as soon as the script holds what it needs
    auto plan = PlanLevels(model, CanonicalPlanRequest(params.ladder), pool);
    if (!plan.ok()) return plan.status();
    model_gaussians = plan->model_gaussians;
    script = BuildStreamScript(*plan, *options);
  }
  if (!script.ok()) return script.status();
  return SerializeScript(*std::move(script), model_gaussians, params);
}

absl::StatusOr<WireScript> WireScriptFromPlan(const Plan& plan, const StreamParams& params) {
  auto options = OptionsFor(params);
  if (!options.ok()) return options.status();
  auto script = BuildStreamScript(plan, *options);
  if (!script.ok()) return script.status();
  return SerializeScript(*std::move(script), plan.model_gaussians, params);
}

absl::StatusOr<WireCut> WireCut::Make(std::shared_ptr<const WireScript> script, const StreamParams& params) {
  const WireScript& s = *script;
  std::vector<uint64_t> counts(s.levels.size());
  for (size_t k = 0; k < counts.size(); ++k) counts[k] = s.levels[k].gaussians;
  const uint64_t gaussians = ElasticCount(s.model_gaussians, params.top_ratio);
  const int last = LastLevelWithin(counts, gaussians);
  if (last < 0) {
    return absl::FailedPreconditionError(absl::StrCat("a top ratio of ", params.top_ratio, " holds ", gaussians,
                                                      " Gaussians, fewer than the first level's ",
                                                      counts.empty() ? 0 : counts[0]));
  }
  WireCut cut;
  cut.script_ = std::move(script);
  cut.levels_ = static_cast<size_t>(last) + 1;
  cut.trailer_sequence_ = s.levels[last].level_end_item + 1;
  cut.header_ = HeaderMessage(s, cut.levels_, params);
  cut.trailer_ = TrailerMessage(s, cut.levels_, params);
  return cut;
}

const WireMessage& WireCut::At(uint64_t sequence) const {
  if (sequence == 0) return header_;
  if (sequence == trailer_sequence_) return trailer_;
  return script_->messages.at(sequence);
}

}  // namespace flexgs::server

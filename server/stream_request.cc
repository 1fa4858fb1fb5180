#include "server/stream_request.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/log_escape.h"
#include "stream/chunk_codec.h"
#include "stream/level_planner.h"
#include "stream/stream_budget.h"
#include "stream/stream_script.h"

namespace flexgs::server {
namespace {

absl::StatusOr<Budget> BudgetOf(const v1::StreamSceneRequest& r, std::string* text) {
  Budget b;
  switch (r.budget_case()) {
    case v1::StreamSceneRequest::kMemoryBytes:
      b.kind = Budget::Kind::kMemoryBytes;
      b.value = static_cast<double>(r.memory_bytes());
      *text = absl::StrCat("memory_bytes=", r.memory_bytes());
      return b;
    case v1::StreamSceneRequest::kRatio:
      b.kind = Budget::Kind::kRatio;
      b.value = r.ratio();
      *text = absl::StrCat("ratio=", r.ratio());
      return b;
    case v1::StreamSceneRequest::kGaussians:
      b.kind = Budget::Kind::kGaussians;
      b.value = static_cast<double>(r.gaussians());
      *text = absl::StrCat("gaussians=", r.gaussians());
      return b;
    default:
      return absl::InvalidArgumentError("no budget: set one of memory_bytes, ratio or gaussians");
  }
}

absl::StatusOr<int> EncodingOf(v1::Encoding e) {
  switch (e) {
    case v1::ENCODING_UNSPECIFIED:
    case v1::ENCODING_QUANTIZED:
      return static_cast<int>(v1::ENCODING_QUANTIZED);
    case v1::ENCODING_LOSSLESS:
      return static_cast<int>(v1::ENCODING_LOSSLESS);
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown encoding ", static_cast<int>(e)));
  }
}

ChunkEncoding ChunkEncodingOf(int encoding) {
  return encoding == v1::ENCODING_LOSSLESS ? ChunkEncoding::kLossless : ChunkEncoding::kQuantized;
}

// The chunk size must be in the script builder's range and hold at least one
// Gaussian and one patch after the protobuf envelope.
absl::Status CheckChunkBytes(uint32_t bytes, int encoding, int sh_degree) {
  if (bytes < kMinChunkBytes || bytes > kMaxChunkBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max_chunk_bytes %d is outside [%d, %d]", bytes, kMinChunkBytes, kMaxChunkBytes));
  }
  const size_t block = bytes - kChunkEnvelopeBytes;
  if (GaussiansPerBlock(block, ChunkEncodingOf(encoding), sh_degree) == 0 ||
      PatchesPerBlock(block, ChunkEncodingOf(encoding)) == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max_chunk_bytes %d cannot hold a single Gaussian at SH degree %d", bytes, sh_degree));
  }
  return absl::OkStatus();
}

absl::Status CheckLadder(const ElasticModel& model, const std::vector<double>& ladder) {
  if (ladder.size() > kMaxLadderRungs) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ladder has %d rungs; at most %d are allowed", ladder.size(), kMaxLadderRungs));
  }
  PlanRequest probe;
  probe.top_ratio = 1.0;
  probe.ladder = ladder;
  return PlanRatios(model, probe).status();
}

// Parameters of a fresh (non-resumed) stream for `scene`.
absl::StatusOr<StreamParams> FreshParams(const Scene& scene, const v1::StreamSceneRequest& r,
                                         uint32_t default_max_chunk_bytes, uint32_t max_client_chunk_bytes,
                                         std::string* budget_text) {
  const ElasticModel& model = *scene.model;
  auto budget = BudgetOf(r, budget_text);
  if (!budget.ok()) return budget.status();
  StreamParams p;
  p.scene_id = scene.id;
  p.model_digest = model.digest;
  p.sh_degree = model.gaussians.sh_degree;
  if (r.has_max_sh_degree())
    p.sh_degree = std::min<int>(p.sh_degree, static_cast<int>(std::min(r.max_sh_degree(), 3u)));
  p.ladder = r.ladder().empty() ? model.ladder : std::vector<double>(r.ladder().begin(), r.ladder().end());
  if (absl::Status st = CheckLadder(model, p.ladder); !st.ok()) return st;
  auto encoding = EncodingOf(r.encoding());
  if (!encoding.ok()) return encoding.status();
  p.encoding = *encoding;
  if (absl::Status st = CheckClientChunkBytes(r.max_chunk_bytes(), max_client_chunk_bytes); !st.ok()) return st;
  p.max_chunk_bytes = r.max_chunk_bytes() == 0 ? default_max_chunk_bytes : r.max_chunk_bytes();
  if (absl::Status st = CheckChunkBytes(p.max_chunk_bytes, p.encoding, p.sh_degree); !st.ok()) return st;
  auto decision = DecideBudget(*budget, model.gaussians.size(), p.sh_degree, p.ladder);
  if (!decision.ok()) return decision.status();
  p.top_ratio = decision->top_ratio;
  return p;
}

}  // namespace

absl::Status CheckSceneIdLength(const std::string& scene_id) {
  if (scene_id.size() <= kMaxSceneIdBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("scene_id '", EscapeClientString(scene_id), "' is longer than the ",
                                                 "limit: at most ", kMaxSceneIdBytes, " bytes"));
}

absl::Status CheckRequestStrings(const v1::StreamSceneRequest& request) {
  if (absl::Status st = CheckSceneIdLength(request.scene_id()); !st.ok()) return st;
  if (request.resume_token().size() > kMaxResumeTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("resume_token is longer than the limit (",
                                                   request.resume_token().size(), " bytes): at most ",
                                                   kMaxResumeTokenBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ResolvedStream> ResolveStreamRequest(const SceneRegistry& registry,
                                                    const v1::StreamSceneRequest& request,
                                                    uint32_t default_max_chunk_bytes, uint32_t max_client_chunk_bytes) {
  if (absl::Status st = CheckRequestStrings(request); !st.ok()) return st;
  ResolvedStream out;
  if (request.resume_token().empty()) {
    if (request.resume_from_sequence() != 0) {
      return absl::InvalidArgumentError("resume_from_sequence needs the resume_token of the earlier stream");
    }
    if (request.extend()) return absl::InvalidArgumentError("extend needs the resume_token of the earlier stream");
    if (request.scene_id().empty()) return absl::InvalidArgumentError("scene_id is empty");
    out.scene = registry.Find(request.scene_id());
    if (out.scene == nullptr) {
      return absl::NotFoundError(absl::StrCat("no scene '", EscapeClientString(request.scene_id()), "'"));
    }
    auto params = FreshParams(*out.scene, request, default_max_chunk_bytes, max_client_chunk_bytes, &out.budget);
    if (!params.ok()) return params.status();
    out.params = *std::move(params);
    return out;
  }

  auto token = DecodeResumeToken(request.resume_token());
  if (!token.ok()) return token.status();
  if (!request.scene_id().empty() && request.scene_id() != token->scene_id) {
    return absl::InvalidArgumentError(absl::StrCat("scene_id '", EscapeClientString(request.scene_id()),
                                                   "' differs from the resume token's '",
                                                   EscapeClientString(token->scene_id), "'"));
  }
  out.scene = registry.Find(token->scene_id);
  if (out.scene == nullptr) {
    return absl::NotFoundError(absl::StrCat("no scene '", EscapeClientString(token->scene_id), "'"));
  }
  const ElasticModel& model = *out.scene->model;
  if (token->model_digest != model.digest) {
    return absl::FailedPreconditionError(absl::StrCat("resume token is for model ",
                                                      EscapeClientString(token->model_digest, 16), "; scene '",
                                                      EscapeClientString(token->scene_id), "' now serves model ",
                                                      model.digest.substr(0, 16), ": start a new stream"));
  }
  // The digest matches, so the token was issued for this model; these checks only
  // stop a forged token (a CRC is not a signature) from reaching the planner.
  if (!(token->top_ratio > 0.0 && token->top_ratio <= 1.0) || token->sh_degree > model.gaussians.sh_degree ||
      (token->encoding != v1::ENCODING_QUANTIZED && token->encoding != v1::ENCODING_LOSSLESS)) {
    return absl::InvalidArgumentError("resume token parameters are not valid for this model");
  }
  if (absl::Status st = CheckLadder(model, token->ladder); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("resume token: ", st.message()));
  }
  if (absl::Status st = CheckChunkBytes(token->max_chunk_bytes, token->encoding, token->sh_degree); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("resume token: ", st.message()));
  }
  if (absl::Status st = CheckClientChunkBytes(token->max_chunk_bytes, max_client_chunk_bytes); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("resume token: ", st.message()));
  }
  if (request.extend()) {
    // Only the budget comes from the request: the token pins everything else.
    auto budget = BudgetOf(request, &out.budget);
    if (!budget.ok()) return budget.status();
    auto decision = DecideBudget(*budget, model.gaussians.size(), token->sh_degree, token->ladder);
    if (!decision.ok()) return decision.status();
    if (decision->top_ratio < token->top_ratio) {
      return absl::InvalidArgumentError(
          absl::StrFormat("extend: the budget's top ratio %g is below the earlier stream's %g; a stream only grows",
                          decision->top_ratio, token->top_ratio));
    }
    out.params = *std::move(token);
    out.params.top_ratio = decision->top_ratio;
    out.resume_from = request.resume_from_sequence();
    out.resumed = out.extended = true;
    out.budget = absl::StrCat("extend(", out.budget, ")");
    return out;
  }
  if (request.budget_case() != v1::StreamSceneRequest::BUDGET_NOT_SET) {
    std::string ignored;
    auto fresh = FreshParams(*out.scene, request, default_max_chunk_bytes, max_client_chunk_bytes, &ignored);
    if (!fresh.ok()) return fresh.status();
    if (!(*fresh == *token)) {
      return absl::InvalidArgumentError(
          "request parameters differ from the resume token's; resend the original request or only the token");
    }
  }
  out.params = *std::move(token);
  out.resume_from = request.resume_from_sequence();
  out.resumed = true;
  out.budget = absl::StrFormat("token(top_ratio=%g)", out.params.top_ratio);
  return out;
}

absl::Status ValidateChunkLimits(uint32_t default_max_chunk_bytes, uint32_t max_client_chunk_bytes) {
  for (auto [flag, value] : {std::pair<const char*, uint32_t>{"--max-chunk-bytes", default_max_chunk_bytes},
                             {"--max-client-chunk-bytes", max_client_chunk_bytes}}) {
    if (value < kMinChunkBytes || value > kMaxChunkBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s %d is outside [%d, %d]", flag, value, kMinChunkBytes, kMaxChunkBytes));
    }
  }
  if (default_max_chunk_bytes > max_client_chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat("--max-chunk-bytes %d is above --max-client-chunk-bytes %d",
                                                      default_max_chunk_bytes, max_client_chunk_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckClientChunkBytes(uint32_t requested, uint32_t max_client_chunk_bytes) {
  if (requested <= max_client_chunk_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("max_chunk_bytes %d is above this server's limit of %d bytes (--max-client-chunk-bytes)",
                      requested, max_client_chunk_bytes));
}

std::vector<std::string> SceneIdsNamedBy(const v1::StreamSceneRequest& request) {
  std::vector<std::string> ids;
  if (!request.scene_id().empty()) ids.push_back(request.scene_id());
  if (!request.resume_token().empty()) {
    auto token = DecodeResumeToken(request.resume_token());
    if (token.ok() && !token->scene_id.empty() && token->scene_id != request.scene_id()) ids.push_back(token->scene_id);
  }
  return ids;
}

}  // namespace flexgs::server

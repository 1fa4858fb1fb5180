#include "client/scene_client.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/channel_credentials.h"
#include "client/token_bucket.h"
#include "flexgs/v1/scene_service.grpc.pb.h"

namespace flexgs::client {

absl::StatusOr<SceneBounds> FramingBounds(const v1::SceneInfo& info) {
  const v1::Bounds& b = info.view_bounds().min_size() == 3 ? info.view_bounds() : info.bounds();
  if (b.min_size() != 3 || b.max_size() != 3) {
    return absl::DataLossError("the server's SceneInfo has no 3-D bounds to frame views on");
  }
  SceneBounds bounds;
  for (int d = 0; d < 3; ++d) {
    bounds.lo[d] = b.min(d);
    bounds.hi[d] = b.max(d);
  }
  return bounds;
}

void StreamCancel::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (ctx_ != nullptr) ctx_->TryCancel();
  cv_.notify_all();
}

bool StreamCancel::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool StreamCancel::Attach(grpc::ClientContext* ctx) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return false;
  ctx_ = ctx;
  return true;
}

void StreamCancel::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  ctx_ = nullptr;
}

bool StreamCancel::WaitFor(std::chrono::milliseconds duration) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, duration, [this] { return cancelled_; });
}

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// gRPC and absl share the canonical code numbering (0..16).
absl::Status FromGrpc(const grpc::Status& s, absl::string_view doing) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), absl::StrCat(doing, ": ", s.error_message()));
}

// Errors a retry cannot fix: the request itself is wrong, the caller lacks rights, or
// the model changed under a resume token (retrying would mix versions).
bool IsPermanent(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kAlreadyExists:
      return true;
    default:
      return false;
  }
}

// The server's hint (RESOURCE_EXHAUSTED at its stream limit) for when to come back.
std::chrono::milliseconds RetryAfterHint(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find("flexgs-retry-after-ms");
  if (it == md.end()) return std::chrono::milliseconds(0);
  const std::string v(it->second.data(), it->second.size());
  char* end = nullptr;
  const long long ms = std::strtoll(v.c_str(), &end, 10);
  if (end == v.c_str() || ms < 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(std::min<long long>(ms, 60000));
}

}  // namespace

struct SceneClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::SceneService::Stub> stub;
  std::string bearer_token;

  void Authorize(grpc::ClientContext& ctx) const {
    if (!bearer_token.empty()) ctx.AddMetadata("authorization", absl::StrCat("Bearer ", bearer_token));
  }
};

SceneClient::SceneClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SceneClient::~SceneClient() = default;

absl::StatusOr<std::unique_ptr<SceneClient>> SceneClient::Connect(const ConnectOptions& options) {
  if (options.address.empty()) return absl::InvalidArgumentError("server address is empty (expected HOST:PORT)");
  auto creds = MakeChannelCredentials({options.tls_ca_file, options.tls_cert_file, options.tls_key_file});
  if (!creds.ok()) return creds.status();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_message_bytes));
  // A restarted server should be found again in well under a second; gRPC's default
  // reconnect backoff (1 s growing to 120 s) would dominate resume time.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // Despite its name, gRPC takes this as the minimum *connect timeout* (TCP, TLS and
  // the HTTP/2 SETTINGS exchange). At 100 ms a TLS handshake on a loaded machine, or
  // any link with more than a few tens of ms RTT, never completes; a refused
  // connection still fails at once, so reconnecting stays quick.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  if (options.keepalive_time.count() > 0) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_time.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.keepalive_timeout.count()));
    // A receiving client sends no DATA frames; gRPC would otherwise stop pinging after
    // two pings "without data" and never notice a link that died mid-stream.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS,
                static_cast<int>(options.keepalive_time.count()));
  }
  if (options.flow_control_window_bytes > 0) {
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, static_cast<int>(options.flow_control_window_bytes));
  }
  auto impl = std::make_unique<Impl>();
  impl->channel = grpc::CreateCustomChannel(options.address, *creds, args);
  impl->stub = v1::SceneService::NewStub(impl->channel);
  impl->bearer_token = options.bearer_token;
  return std::unique_ptr<SceneClient>(new SceneClient(std::move(impl)));
}

absl::StatusOr<v1::SceneInfo> SceneClient::GetScene(const std::string& scene_id, std::chrono::milliseconds deadline) {
  grpc::ClientContext ctx;
  impl_->Authorize(ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  v1::GetSceneRequest request;
  request.set_scene_id(scene_id);
  v1::SceneInfo info;
  const grpc::Status s = impl_->stub->GetScene(&ctx, request, &info);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("GetScene('", scene_id, "')"));
  return info;
}

void ReportApplied(const ApplyResult& applied, const SceneAssembler& assembler, double now_s, StreamSummary& summary,
                   uint64_t& expected_bytes, StreamObserver& obs) {
  const ResidentStore* store = &assembler.store();
  switch (applied.kind) {
    case ApplyResult::Kind::kHeader: {
      const v1::StreamHeader& h = assembler.header();
      summary.levels.assign(h.levels_size(), LevelStats{});
      for (int i = 0; i < h.levels_size(); ++i) {
        summary.levels[i].index = i;
        summary.levels[i].ratio = h.levels(i).ratio();
        summary.levels[i].gaussians = h.levels(i).gaussians();
      }
      // Block bytes plus the small LEVEL_END/trailer messages: close enough for a bar.
      expected_bytes = h.total_payload_bytes() + applied.payload_bytes + 64 * h.total_messages();
      obs.OnHeader(h);
      break;
    }
    case ApplyResult::Kind::kGaussians:
    case ApplyResult::Kind::kPatches:
    case ApplyResult::Kind::kLevelEnd: {
      LevelStats& ls = summary.levels[applied.level];
      if (ls.payload_bytes == 0) {
        ls.started_s = now_s;
        obs.OnLevelStarted(applied.level, ls.ratio);
      }
      ls.payload_bytes += applied.payload_bytes;
      if (applied.kind == ApplyResult::Kind::kLevelEnd) {
        ls.completed_s = now_s;
        obs.OnLevelComplete(ls, *store);
      } else {
        obs.OnBlockApplied(applied.level, *store);
      }
      break;
    }
    case ApplyResult::Kind::kTrailer:
      break;
  }
  obs.OnProgress(assembler.payload_bytes(), std::max(expected_bytes, assembler.payload_bytes()));
}

absl::StatusOr<StreamSummary> SceneClient::Stream(const StreamRequest& request, const StreamOptions& options,
                                                  ResidentStore* store, StreamObserver* observer) {
  if (store == nullptr) return absl::InvalidArgumentError("no ResidentStore given");
  SceneAssembler assembler(store);
  return Stream(request, options, assembler, observer);
}

absl::StatusOr<StreamSummary> SceneClient::Extend(const StreamRequest& request, const StreamOptions& options,
                                                  SceneAssembler& assembler, StreamObserver* observer) {
  if (absl::Status st = assembler.BeginExtension(); !st.ok()) return st;
  return Stream(request, options, assembler, observer);
}

absl::StatusOr<StreamSummary> SceneClient::Stream(const StreamRequest& request, const StreamOptions& options,
                                                  SceneAssembler& assembler, StreamObserver* observer) {
  const int budgets = request.memory_bytes.has_value() + request.ratio.has_value() + request.gaussians.has_value();
  if (budgets != 1) {
    return absl::InvalidArgumentError(absl::StrCat("a stream request needs exactly one budget (memory bytes, ratio or ",
                                                   "Gaussian count); got ", budgets));
  }
  const RetryPolicy& retry = options.retry;
  if (retry.initial_backoff.count() <= 0 || retry.max_backoff < retry.initial_backoff || !(retry.multiplier >= 1.0)) {
    return absl::InvalidArgumentError("retry policy: need 0 < initial_backoff <= max_backoff and multiplier >= 1");
  }

  StreamObserver null_observer;
  StreamObserver& obs = observer != nullptr ? *observer : null_observer;
  std::optional<TokenBucket> bucket;
  if (options.max_bandwidth_bytes_per_s > 0) {
    // A burst of ~50 ms keeps the rate smooth without stalling on every message.
    bucket.emplace(options.max_bandwidth_bytes_per_s, std::max(16384.0, options.max_bandwidth_bytes_per_s * 0.05));
  }

  StreamSummary summary;
  std::mt19937_64 rng(retry.seed);
  const auto t0 = Clock::now();
  auto last_progress = t0;
  int failures_in_a_row = 0;
  uint64_t expected_bytes = 0;
  absl::Status last_error;

  while (true) {
    grpc::ClientContext ctx;
    impl_->Authorize(ctx);
    if (retry.attempt_deadline.count() > 0) ctx.set_deadline(std::chrono::system_clock::now() + retry.attempt_deadline);
    v1::StreamSceneRequest wire;
    wire.set_scene_id(request.scene_id);
    if (assembler.extending()) {
      // The token pins everything but the budget; the server answers with the larger
      // stream's header and then what the assembler lacks.
      wire.set_resume_token(assembler.header().resume_token());
      wire.set_resume_from_sequence(assembler.extension_sequence());
      wire.set_extend(true);
      if (request.memory_bytes) wire.set_memory_bytes(*request.memory_bytes);
      if (request.ratio) wire.set_ratio(*request.ratio);
      if (request.gaussians) wire.set_gaussians(*request.gaussians);
    } else if (assembler.has_header()) {
      // The token pins budget, ladder, SH degree, encoding and chunk size; sending
      // only it avoids any chance of a parameter resolving differently.
      wire.set_resume_token(assembler.header().resume_token());
      wire.set_resume_from_sequence(assembler.next_sequence());
    } else {
      if (request.memory_bytes) wire.set_memory_bytes(*request.memory_bytes);
      if (request.ratio) wire.set_ratio(*request.ratio);
      if (request.gaussians) wire.set_gaussians(*request.gaussians);
      if (request.max_sh_degree) wire.set_max_sh_degree(*request.max_sh_degree);
      for (double r : request.ladder) wire.add_ladder(r);
      wire.set_encoding(request.encoding);
      wire.set_max_chunk_bytes(request.max_chunk_bytes);
    }

    const auto cancelled = [&] {
      return absl::CancelledError(absl::StrCat("StreamScene('", request.scene_id, "'): cancelled by the client"));
    };
    if (options.cancel != nullptr && !options.cancel->Attach(&ctx)) return cancelled();
    auto reader = impl_->stub->StreamScene(&ctx, wire);
    v1::StreamChunk chunk;
    absl::Status rejected;
    bool progressed = false;
    while (!assembler.complete()) {
      if (!reader->Read(&chunk)) break;
      // Consumption-side throttle: while we wait the HTTP/2 window fills and the
      // server's writes block, so the rate limit propagates to the sender.
      if (bucket) bucket->Acquire(chunk.ByteSizeLong());
      if (options.chunk_hook) options.chunk_hook(chunk);
      auto applied = assembler.Apply(chunk);
      if (!applied.ok()) {
        rejected = applied.status();
        ++summary.rejected_messages;
        ctx.TryCancel();
        break;
      }
      progressed = true;
      last_progress = Clock::now();
      ++summary.messages;
      const double now_s = SecondsSince(t0);
      ReportApplied(*applied, assembler, now_s, summary, expected_bytes, obs);
    }

    if (options.cancel != nullptr) options.cancel->Detach();
    if (assembler.complete()) {
      // Everything is verified; a late transport error on Finish changes nothing.
      ctx.TryCancel();
      reader->Finish();
      summary.header = assembler.header();
      summary.payload_bytes = assembler.payload_bytes();
      summary.seconds = SecondsSince(t0);
      return summary;
    }
    const grpc::Status finished = reader->Finish();
    if (options.cancel != nullptr && options.cancel->cancelled()) return cancelled();
    std::chrono::milliseconds hint(0);
    if (!rejected.ok()) {
      last_error = rejected;
      if (rejected.code() != absl::StatusCode::kDataLoss) {
        // Not corruption in flight (e.g. a message after the trailer): retrying cannot help.
        return absl::Status(rejected.code(), absl::StrCat("stream '", request.scene_id, "': ", rejected.message()));
      }
    } else if (!finished.ok()) {
      last_error = FromGrpc(finished, absl::StrCat("StreamScene('", request.scene_id, "')"));
      if (IsPermanent(last_error.code())) return last_error;
      hint = RetryAfterHint(ctx);
    } else {
      // The server closed the call cleanly before the trailer: a draining server.
      last_error = absl::UnavailableError(absl::StrCat("StreamScene('", request.scene_id,
                                                       "'): stream ended before its trailer at sequence ",
                                                       assembler.next_sequence()));
    }

    failures_in_a_row = progressed ? 1 : failures_in_a_row + 1;
    const auto idle = Clock::now() - last_progress;
    if (idle >= retry.give_up_after) {
      return absl::Status(
          last_error.code() == absl::StatusCode::kDataLoss ? absl::StatusCode::kDataLoss
                                                           : absl::StatusCode::kUnavailable,
          absl::StrCat("gave up after ", std::chrono::duration_cast<std::chrono::milliseconds>(idle).count() / 1000.0,
                       " s without progress (", summary.retries, " retries, holding ", assembler.levels_completed(),
                       " complete levels); last error: ", last_error.message()));
    }
    // Exponential backoff with equal jitter: half fixed (so retries never hammer),
    // half random (so many clients cut off together do not come back together).
    const double base = std::min<double>(
        retry.max_backoff.count(), retry.initial_backoff.count() * std::pow(retry.multiplier, failures_in_a_row - 1));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto backoff = std::chrono::milliseconds(static_cast<int64_t>(base * jitter(rng)));
    backoff = std::max(backoff, hint);
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(retry.give_up_after - idle);
    backoff = std::min(backoff, std::max(remaining, std::chrono::milliseconds(1)));
    ++summary.retries;
    obs.OnRetry(last_error, summary.retries, backoff);
    if (options.cancel != nullptr) {
      if (options.cancel->WaitFor(backoff)) return cancelled();
    } else {
      std::this_thread::sleep_for(backoff);
    }
  }
}

}  // namespace flexgs::client

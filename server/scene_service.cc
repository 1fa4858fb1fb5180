#include "server/scene_service.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <grpcpp/alarm.h>
#include <grpcpp/impl/codegen/server_callback_handlers.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/grpc_status.h"
#include "server/stream_request.h"
#include "spdlog/spdlog.h"
#include "stream/stream_budget.h"

namespace flexgs::server {
namespace {

using Clock = std::chrono::steady_clock;  // durations; grpc::Alarm deadlines use system_clock

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Polling interval while the global in-flight budget is exhausted: short at first
// (another stream's write usually completes within a millisecond on a fast link),
// doubling up to a ceiling so that many waiting streams do not spin.
constexpr std::chrono::milliseconds kMinRetry{1};
constexpr std::chrono::milliseconds kMaxRetry{50};

// A stream waits for younger streams' first levels (FirstLevelGate) for at most this
// many times --first-level-priority-ms in all: a stream of newcomers that never finish
// their first levels (slow or hostile clients) delays each stream by a bounded time.
constexpr int kMaxParkedPerLimit = 5;

}  // namespace

v1::SceneInfo MakeSceneInfo(const Scene& scene) {
  const ElasticModel& model = *scene.model;
  v1::SceneInfo info;
  info.set_scene_id(scene.id);
  info.set_gaussians(model.gaussians.size());
  info.set_sh_degree(model.gaussians.sh_degree);
  for (int d = 0; d < 3; ++d) {
    info.mutable_bounds()->add_min(scene.bounds_min[d]);
    info.mutable_bounds()->add_max(scene.bounds_max[d]);
    info.mutable_view_bounds()->add_min(scene.view_min[d]);
    info.mutable_view_bounds()->add_max(scene.view_max[d]);
  }
  for (double r : model.ladder) info.add_ladder(r);
  for (int d = 0; d <= model.gaussians.sh_degree; ++d)
    info.add_resident_bytes_per_gaussian(ResidentBytesPerGaussian(d));
  info.set_model_digest(model.digest);
  info.set_trained(!model.heuristic());
  return info;
}

// One StreamScene call. States (all under mu_):
//   read_pending_    StartRead issued, OnReadDone not yet run (request_ is busy)
//   plan_pending_    waiting for the PlanCache
//   write_in_flight_ StartWrite issued, OnWriteDone not yet run (chunk_ is busy)
//   timers_          alarms set whose callbacks have not yet run, and holds: one
//                    while the constructor runs, one while a stall is cancelled
//                    (StallWatch), one while parked in the FirstLevelGate, so
//                    that nothing finishes early
//   done_producing_  no further write will start; status_ is what Finish sends
// Finish runs when done_producing_ and nothing but a read is outstanding. gRPC calls
// (StartRead, StartWrite, Finish, TryCancel, Alarm::Set) are made without mu_ held,
// because some of them can run reactions inline.
class SceneService::StreamReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, v1::StreamChunk>,
                                          private StallWatch,
                                          private FirstLevelGate::Waiter {
 public:
  StreamReactor(SceneService* service, grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx), start_(Clock::now()), peer_(EscapeClientString(ctx->peer(), 128)) {
    ServerMetrics* m = service_->metrics_;
    m->RpcStarted(RpcMethod::kStreamScene);
    if (!service_->ready_.load()) {
      Reject(grpc::Status(grpc::StatusCode::UNAVAILABLE, "scenes are still loading"));
      return;
    }
    const std::string address = PeerAddress(ctx_->peer());
    // Before authentication, so that token guessing through StreamScene is throttled too.
    if (std::chrono::milliseconds retry_after{0};
        service_->rate_limiter_ != nullptr && !service_->rate_limiter_->TryAcquire(address, &retry_after)) {
      ctx_->AddTrailingMetadata("flexgs-retry-after-ms", std::to_string(retry_after.count()));
      Reject(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrFormat("too many new streams from this address (limit %g per second, burst %g); "
                                          "retry later",
                                          service_->options_.stream_rate, service_->options_.stream_burst)),
             RejectReason::kRateLimited);
      return;
    }
    // The token now; whether it grants the scene once the request has arrived.
    if (grpc::Status auth = service_->Authenticate(ctx_, &grant_); !auth.ok()) {
      Reject(std::move(auth));
      return;
    }
    if (service_->peer_streams_ != nullptr) {
      // Tokens are told apart by their grant (one per token, never freed).
      peer_key_ = grant_ == nullptr ? address : absl::StrCat(address, " token@", absl::Hex(grant_));
      if (!service_->peer_streams_->TryAcquire(peer_key_)) {
        ctx_->AddTrailingMetadata("flexgs-retry-after-ms", "1000");
        Reject(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("too many concurrent streams from this client (limit ",
                                         service_->peer_streams_->max_per_peer(), "); retry later")),
               RejectReason::kPeerLimit);
        return;
      }
      peer_held_ = true;
    }
    if (!service_->TryAdmit()) {
      ctx_->AddTrailingMetadata("flexgs-retry-after-ms", "1000");
      Reject(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("server is at its limit of ", service_->options_.max_streams,
                                       " concurrent streams; retry later")));
      return;
    }
    admitted_ = true;
    m->StreamsActive(+1);
    service_->sweeper_->Add(this);
    // Young from admission, not from its plan: in a burst the calls whose requests
    // are still being read are exactly the ones to make room for (measured: p99 first
    // chunk 15-20 ms against 20-28 ms when counted from the plan). A call that never
    // sends its request holds others back too, but each stream waits at most
    // kMaxParkedPerLimit limits in all.
    if (service_->gate_ != nullptr) service_->gate_->Enter(&gate_entry_);
    // The request must arrive within request_timeout. The alarm is set before the
    // read starts, and the constructor's hold keeps Finish from running before
    // StartRead has been issued.
    {
      std::lock_guard<std::mutex> lock(mu_);
      read_pending_ = true;
      timers_ += 2;  // the request timer and the constructor's hold
    }
    request_timer_ = std::make_unique<grpc::Alarm>();
    request_timer_->Set(std::chrono::system_clock::now() + service_->options_.request_timeout,
                        [this](bool fired) { OnRequestTimer(fired); });
    StartRead(&request_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --timers_;  // the hold
    }
    Pump();  // may finish (the timer fired already, or a cancel came): touch nothing after this
  }

  void OnReadDone(bool ok) override {
    request_timer_.reset();  // cancels the timer; its callback still runs (fired=false)
    bool proceed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      read_pending_ = false;
      proceed = !done_producing_;
    }
    if (!proceed) {
      Pump();
      return;
    }
    if (!ok) {
      // The client ended its side without a message (or the call was cancelled, or
      // gRPC refused an oversized message: then this status is never sent).
      no_message_ = true;
      Reject(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message before the end of the stream"));
      return;
    }
    v1::StreamSceneRequest request;
    if (!grpc::SerializationTraits<v1::StreamSceneRequest>::Deserialize(&request_, &request).ok()) {
      undecodable_ = true;
      Reject(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "request message could not be decoded as a flexgs.v1.StreamSceneRequest"));
      return;
    }
    scene_id_ = EscapeClientString(request.scene_id());
    if (absl::Status st = CheckRequestStrings(request); !st.ok()) {
      Reject(ToGrpcStatus(st));
      return;
    }
    if (grpc::Status denied = service_->CheckGrant(grant_, SceneIdsNamedBy(request)); !denied.ok()) {
      Reject(std::move(denied));
      return;
    }
    auto resolved = ResolveStreamRequest(*service_->registry_, request, service_->options_.default_max_chunk_bytes,
                                         service_->options_.max_client_chunk_bytes);
    if (!resolved.ok()) {
      Reject(ToGrpcStatus(resolved.status()));
      return;
    }
    resolved_ = *std::move(resolved);
    scene_id_ = EscapeClientString(resolved_.params.scene_id);
    if (resolved_.resumed) service_->metrics_->StreamResumed();
    spdlog::info(
        "stream start: scene={} budget={} top_ratio={:.6g} ladder_rungs={} sh={} encoding={} chunk={} "
        "resume_from={} peer={}",
        scene_id_, resolved_.budget, resolved_.params.top_ratio, resolved_.params.ladder.size(),
        resolved_.params.sh_degree, v1::Encoding_Name(static_cast<v1::Encoding>(resolved_.params.encoding)),
        resolved_.params.max_chunk_bytes, resolved_.resume_from, peer_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      plan_pending_ = true;
    }
    // May call OnScript inline (cache hit): nothing below may touch members.
    service_->cache_->Get(resolved_.scene->model, resolved_.params,
                          [this](absl::StatusOr<PlanCache::ScriptPtr> script) { OnScript(std::move(script)); });
  }

  void OnWriteDone(bool ok) override {
    const uint64_t bytes = chunk_bytes_;
    service_->ReleaseBytes(bytes);
    bool first = false, first_level = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_in_flight_ = false;
      if (ok) {
        // An extension's header is followed by the client's next sequence.
        next_ = next_ == 0 && resolved_.extended ? std::max<uint64_t>(1, resolved_.resume_from) : next_ + 1;
        ++messages_;
        bytes_sent_ += bytes;
        first = messages_ == 1;
        first_level = !first_level_sent_ && chunk_.kind() == v1::CHUNK_KIND_LEVEL_END;
        first_level_sent_ = first_level_sent_ || first_level;
        // The first level goes out inline: it is small, and a client's first picture
        // should not queue behind other streams' refinements.
        yield_next_ = service_->options_.yield_between_writes && first_level_sent_;
      } else {
        StopLocked(stalled_ ? StallStatus() : grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled"));
      }
    }
    if (ok) {
      ServerMetrics* m = service_->metrics_;
      m->MessageSent(RpcMethod::kStreamScene);
      m->StreamBytesSent(bytes);
      if (first) m->TimeToFirstChunk(SecondsSince(start_));
      if (first_level && service_->gate_ != nullptr) service_->gate_->Leave(&gate_entry_);
    }
    Pump();
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      StopLocked(stalled_ ? StallStatus() : grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled"));
    }
    Pump();
  }

  void OnDone() override {
    ServerMetrics* m = service_->metrics_;
    grpc::Status status;
    uint64_t messages, bytes;
    bool rejected, cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status = status_;
      messages = messages_;
      bytes = bytes_sent_;
      rejected = rejected_;
      cancelled = cancelled_;
    }
    // A request that ended without a message counts as undecodable unless the call
    // was cancelled (by the client, or by gRPC for an oversized message).
    if (undecodable_ || (no_message_ && !cancelled)) m->RequestUndecodable(RpcMethod::kStreamScene);
    if (no_message_ && cancelled) status = grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
    const double seconds = SecondsSince(start_);
    m->RpcHandled(RpcMethod::kStreamScene, status.error_code(), seconds);
    if (admitted_) m->StreamsActive(-1);
    if (rejected) {
      uint64_t suppressed = 0;
      if (service_->reject_log_.Allow(&suppressed)) {
        spdlog::info("stream rejected: scene={} status={} ({}) peer={}{}", scene_id_, GrpcCodeName(status.error_code()),
                     EscapeClientString(status.error_message(), 512), peer_,
                     suppressed > 0 ? fmt::format(" [{} similar lines suppressed]", suppressed) : std::string());
      }
    } else {
      spdlog::info("stream end: scene={} budget={} levels={} messages={} bytes={} duration={:.3f}s status={}{}{}",
                   scene_id_, resolved_.budget, levels_, messages, bytes, seconds, GrpcCodeName(status.error_code()),
                   status.ok() ? "" : " ", EscapeClientString(status.error_message(), 512));
    }
    if (admitted_) service_->sweeper_->Remove(this);
    if (service_->gate_ != nullptr) service_->gate_->Leave(&gate_entry_);
    // Last, so that a caller who sees the slot free also sees every metric updated.
    if (admitted_) service_->ReleaseAdmission();
    delete this;
  }

 private:
  // Refusal before any plan was requested; counted as a rejection.
  void Reject(grpc::Status status) {
    const RejectReason reason = RejectReasonFor(status.error_code());
    Reject(std::move(status), reason);
  }
  void Reject(grpc::Status status, RejectReason reason) {
    service_->metrics_->StreamRejected(reason);
    {
      std::lock_guard<std::mutex> lock(mu_);
      rejected_ = true;
      StopLocked(std::move(status));
    }
    Pump();
  }

  void OnRequestTimer(bool fired) {
    bool timed_out = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (fired && read_pending_ && !done_producing_) {
        timed_out = true;
        rejected_ = true;
        StopLocked(grpc::Status(
            grpc::StatusCode::DEADLINE_EXCEEDED,
            absl::StrCat("no complete request within ", service_->options_.request_timeout.count(), " ms")));
      }
      --timers_;
    }
    if (timed_out) service_->metrics_->StreamRejected(RejectReason::kRequestTimeout);
    Pump();  // Finish with the read still pending: gRPC then fails the read
  }

  void OnScript(absl::StatusOr<PlanCache::ScriptPtr> script) {
    grpc::Status refused;
    {
      std::lock_guard<std::mutex> lock(mu_);
      plan_pending_ = false;
      if (!done_producing_) {
        if (!script.ok()) {
          refused = ToGrpcStatus(script.status());
          if (refused.ok()) refused = grpc::Status(grpc::StatusCode::INTERNAL, "planning failed");
        } else if (auto cut = WireCut::Make(*std::move(script), resolved_.params); !cut.ok()) {
          refused = ToGrpcStatus(cut.status());
        } else if (resolved_.resume_from > cut->total_messages()) {
          refused =
              grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                           absl::StrCat("resume_from_sequence ", resolved_.resume_from,
                                        " is beyond the end of the stream (", cut->total_messages(), " messages)"));
        } else {
          cut_ = std::make_unique<const WireCut>(*std::move(cut));
          next_ = resolved_.extended ? 0 : resolved_.resume_from;
          levels_ = cut_->levels();
        }
        if (!refused.ok()) {
          rejected_ = true;
          StopLocked(refused);
        }
      }
    }
    if (!refused.ok()) service_->metrics_->StreamRejected(RejectReasonFor(refused.error_code()));
    Pump();
  }

  // StallWatch, for the service's StallSweeper.
  bool MarkIfStalled(Clock::time_point now) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!write_in_flight_ || cancelled_ || stalled_ || now - write_started_ < service_->options_.stall_timeout) {
      return false;
    }
    stalled_ = true;
    ++timers_;  // the hold: the call cannot finish (and be deleted) before OnStalled
    return true;
  }

  void OnStalled() override {
    uint64_t write_id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_id = write_id_;
    }
    spdlog::warn("stream stalled: scene={} write of message {} not done after {} ms; cancelling", scene_id_, write_id,
                 service_->options_.stall_timeout.count());
    service_->stalls_.fetch_add(1);
    service_->metrics_->StallCancelled();
    ctx_->TryCancel();
    {
      std::lock_guard<std::mutex> lock(mu_);
      --timers_;
    }
    Pump();
  }

  // FirstLevelGate::Waiter: the gate's thread releases a parked stream. Its next write
  // starts here, on the gate's thread: that is a yield already.
  void OnGateOpen() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      parked_ = false;
      parked_for_ += Clock::now() - parked_at_;
      yield_next_ = false;
      --timers_;
    }
    Pump();
  }

  void OnRetry() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --timers_;
      retry_armed_ = false;
    }
    Pump();
  }

  // Marks the end of production with `status` (the first reason wins).
  void StopLocked(grpc::Status status) {
    if (done_producing_) return;
    done_producing_ = true;
    status_ = std::move(status);
  }

  grpc::Status StallStatus() const {
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        absl::StrCat("write stalled for more than ", service_->options_.stall_timeout.count(), " ms"));
  }

  // The one place that starts writes and finishes the call.
  void Pump() {
    enum class Action { kNone, kWrite, kRetry, kFinish } action = Action::kNone;
    const WireMessage* msg = nullptr;
    uint64_t sequence = 0;
    std::chrono::milliseconds retry_delay{0};
    grpc::Status finish_status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      if (!done_producing_ && cut_ != nullptr && !write_in_flight_ && !retry_armed_ && !parked_) {
        if (next_ >= cut_->total_messages()) {
          StopLocked(grpc::Status::OK);
        } else if (first_level_sent_ && service_->gate_ != nullptr &&
                   parked_for_ < kMaxParkedPerLimit * service_->options_.first_level_priority &&
                   service_->gate_->Park(this)) {
          // Younger streams are still sending their first levels (under mu_, so that
          // OnGateOpen, which may run at once, waits for the hold).
          parked_ = true;
          parked_at_ = Clock::now();
          ++timers_;
        } else if (yield_next_) {
          // From gRPC's executor, at once (SceneServiceOptions::yield_between_writes).
          yield_next_ = false;
          retry_armed_ = true;
          ++timers_;
          action = Action::kRetry;
        } else {
          msg = &cut_->At(next_);
          if (service_->TryAcquireBytes(msg->payload.size())) {
            write_in_flight_ = true;
            sequence = next_;
            write_id_ = sequence;
            write_started_ = Clock::now();
            retry_backoff_ = kMinRetry;
            action = Action::kWrite;
          } else {
            retry_armed_ = true;
            ++timers_;
            retry_delay = retry_backoff_;
            retry_backoff_ = std::min(kMaxRetry, retry_backoff_ * 2);
            action = Action::kRetry;
          }
        }
      }
      if (action == Action::kNone && done_producing_ && !write_in_flight_ && !plan_pending_ && timers_ == 0) {
        finished_ = true;
        finish_status = status_;
        action = Action::kFinish;
      }
    }
    switch (action) {
      case Action::kNone:
        return;
      case Action::kWrite: {
        // This thread owns chunk_ until OnWriteDone.
        chunk_.set_sequence(sequence);
        chunk_.set_kind(msg->kind);
        chunk_.set_payload(msg->payload);
        chunk_.set_crc32c(msg->crc32c);
        chunk_bytes_ = msg->payload.size();
        service_->metrics_->BytesInFlight(static_cast<int64_t>(chunk_bytes_));
        // Payloads are zstd inside; gRPC compression would only cost CPU.
        StartWrite(&chunk_, grpc::WriteOptions().set_no_compression());
        return;  // OnWriteDone may already be running: touch nothing after StartWrite
      }
      case Action::kRetry:
        retry_ = std::make_unique<grpc::Alarm>();
        retry_->Set(std::chrono::system_clock::now() + retry_delay, [this](bool) { OnRetry(); });
        return;
      case Action::kFinish:
        // The client's slot is free once it can see the status: a client that starts
        // its next stream on seeing one end must not be refused for the ended one.
        if (peer_held_) service_->peer_streams_->Release(peer_key_);
        Finish(finish_status);
        return;  // OnDone may delete this at any moment now
    }
  }

  SceneService* const service_;
  grpc::CallbackServerContext* const ctx_;
  const Clock::time_point start_;
  const std::string peer_;  // escaped, for logs
  // Set in the constructor only:
  bool admitted_ = false;
  bool peer_held_ = false;
  std::string peer_key_;
  const TokenGrant* grant_ = nullptr;
  // Set in OnReadDone only (read in OnDone, which runs after it):
  ResolvedStream resolved_;
  std::string scene_id_;  // escaped, for logs
  bool no_message_ = false;
  bool undecodable_ = false;
  grpc::ByteBuffer request_;
  std::unique_ptr<grpc::Alarm> request_timer_;

  std::mutex mu_;
  std::unique_ptr<const WireCut> cut_;  // shares the cached script; null until planned
  uint64_t next_ = 0;                   // next sequence to write
  uint64_t write_id_ = 0;               // sequence of the write in flight
  Clock::time_point write_started_;     // when it started (StallSweeper)
  bool read_pending_ = false;
  bool plan_pending_ = false;
  bool write_in_flight_ = false;
  bool retry_armed_ = false;       // retry_ set: after a byte-budget refusal, or to yield
  bool yield_next_ = false;        // the next write goes through retry_, due at once
  bool first_level_sent_ = false;  // a LEVEL_END was written: FirstLevelGate applies
  bool parked_ = false;            // waiting in FirstLevelGate (a hold in timers_)
  Clock::time_point parked_at_;
  Clock::duration parked_for_{};  // in all, at most kMaxParkedPerLimit limits
  int timers_ = 0;
  bool done_producing_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  bool stalled_ = false;
  bool rejected_ = false;
  grpc::Status status_;
  std::chrono::milliseconds retry_backoff_ = kMinRetry;
  uint64_t messages_ = 0;
  uint64_t bytes_sent_ = 0;
  size_t levels_ = 0;

  // The message in flight -- this stream's only buffer -- and its alarms; owned by
  // whichever thread holds the write (or retry) slot.
  v1::StreamChunk chunk_;
  uint64_t chunk_bytes_ = 0;
  std::unique_ptr<grpc::Alarm> retry_;
  FirstLevelGate::Entry gate_entry_;  // the gate's own lock guards it
};

// ListScenes and GetScene, served like StreamScene as bidi-streaming calls of raw
// request bytes (see the class comment) with unary behaviour: one request, then one
// response or an error. A call in progress -- its request not yet complete, mostly --
// counts against `max_streams` and `max_streams_per_peer`, in counters of its own
// (a unary call never waits for a stream slot, nor takes one).
template <typename Request, typename Response>
class SceneService::UnaryReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, Response> {
 public:
  // The method's answer to a decoded request (filling *response when OK).
  using Handler = grpc::Status (SceneService::*)(grpc::CallbackServerContext*, const Request&, Response*);

  UnaryReactor(SceneService* service, grpc::CallbackServerContext* ctx, RpcMethod method, Handler handler)
      : service_(service), ctx_(ctx), method_(method), handler_(handler), start_(Clock::now()) {
    service_->metrics_->RpcStarted(method_);
    address_ = PeerAddress(ctx_->peer());
    if (service_->unary_peers_ != nullptr) {
      if (!service_->unary_peers_->TryAcquire(address_)) {
        ctx_->AddTrailingMetadata("flexgs-retry-after-ms", "1000");
        Decide(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("too many concurrent calls from this client (limit ",
                                         service_->unary_peers_->max_per_peer(), "); retry later")));
        return;
      }
      peer_held_ = true;
    }
    if (service_->unary_active_.fetch_add(1) >= service_->options_.max_streams) {
      service_->unary_active_.fetch_sub(1);
      ctx_->AddTrailingMetadata("flexgs-retry-after-ms", "1000");
      Decide(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("server is at its limit of ", service_->options_.max_streams,
                                       " concurrent calls; retry later")));
      return;
    }
    admitted_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      timers_ += 2;  // the request timer and the constructor's hold (see StreamReactor)
    }
    timer_ = std::make_unique<grpc::Alarm>();
    timer_->Set(std::chrono::system_clock::now() + service_->options_.request_timeout,
                [this](bool fired) { OnTimer(fired); });
    this->StartRead(&request_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --timers_;
    }
    MaybeFinish();
  }

  void OnReadDone(bool ok) override {
    timer_.reset();  // its callback still runs, fired=false
    bool decided;
    {
      std::lock_guard<std::mutex> lock(mu_);
      decided = decided_;  // timed out or cancelled first
    }
    if (decided) {
      MaybeFinish();
      return;
    }
    if (!ok) {
      no_message_ = true;
      Decide(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message before the end of the stream"));
      return;
    }
    Request request;
    if (!grpc::SerializationTraits<Request>::Deserialize(&request_, &request).ok()) {
      undecodable_ = true;
      Decide(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("request message could not be decoded as a ",
                                                                           Request::descriptor()->full_name())));
      return;
    }
    Decide((service_->*handler_)(ctx_, request, &response_));
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    Decide(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
  }

  void OnDone() override {
    ServerMetrics* m = service_->metrics_;
    grpc::Status status;
    bool cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status = status_;
      cancelled = cancelled_;
    }
    if (undecodable_ || (no_message_ && !cancelled)) m->RequestUndecodable(method_);
    if (status.ok()) m->MessageSent(method_);
    m->RpcHandled(method_, cancelled && !status.ok() ? grpc::StatusCode::CANCELLED : status.error_code(),
                  SecondsSince(start_));
    if (admitted_) service_->unary_active_.fetch_sub(1);
    delete this;
  }

 private:
  void OnTimer(bool fired) {
    bool timed_out = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      timed_out = fired && !decided_;
      --timers_;
    }
    if (timed_out) {
      Decide(
          grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                       absl::StrCat("no complete request within ", service_->options_.request_timeout.count(), " ms")));
    } else {
      MaybeFinish();
    }
  }

  // The first decision wins; the call finishes once no alarm is outstanding.
  void Decide(grpc::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!decided_) {
        decided_ = true;
        status_ = std::move(status);
      }
    }
    MaybeFinish();
  }

  void MaybeFinish() {
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!decided_ || finished_ || timers_ > 0) return;
      finished_ = true;
      status = status_;
    }
    // Free once the client can see the status (as StreamReactor).
    if (peer_held_) service_->unary_peers_->Release(address_);
    if (status.ok()) {
      this->StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      this->Finish(status);
    }
  }

  SceneService* const service_;
  grpc::CallbackServerContext* const ctx_;
  const RpcMethod method_;
  const Handler handler_;
  const Clock::time_point start_;
  std::string address_;
  bool peer_held_ = false;    // constructor only
  bool admitted_ = false;     // constructor only
  bool no_message_ = false;   // OnReadDone only (read in OnDone, after it)
  bool undecodable_ = false;  // OnReadDone only
  grpc::ByteBuffer request_;
  Response response_;
  std::unique_ptr<grpc::Alarm> timer_;

  std::mutex mu_;
  int timers_ = 0;
  bool decided_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  grpc::Status status_;
};

SceneService::SceneService(const SceneRegistry* registry, PlanCache* cache, ServerMetrics* metrics,
                           const SceneServiceOptions& options)
    : registry_(registry),
      cache_(cache),
      metrics_(metrics),
      options_(options),
      rate_limiter_(options.stream_rate > 0
                        ? std::make_unique<PeerRateLimiter>(options.stream_rate, options.stream_burst)
                        : nullptr),
      peer_streams_(options.max_streams_per_peer > 0 ? std::make_unique<PeerStreamLimiter>(options.max_streams_per_peer)
                                                     : nullptr),
      unary_peers_(options.max_streams_per_peer > 0 ? std::make_unique<PeerStreamLimiter>(options.max_streams_per_peer)
                                                    : nullptr),
      reject_log_(options.rejection_log_rate, 20),
      gate_(options.first_level_priority.count() > 0 ? std::make_unique<FirstLevelGate>(options.first_level_priority)
                                                     : nullptr),
      // A stall is cancelled within stall_timeout + 1/8 of it (at most +1 s).
      sweeper_(std::make_unique<StallSweeper>(
          std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(options.stall_timeout / 8),
                     std::chrono::milliseconds(1), std::chrono::milliseconds(1000)))) {
  // StreamScene (method 2 in the proto) as a bidi-streaming call of raw request
  // bytes: gRPC matches it on its headers (no payload to wait for), so StreamReactor
  // sees, counts and times a call whose request has not arrived yet.
  MarkMethodStreamed(2, new grpc::internal::CallbackBidiHandler<grpc::ByteBuffer, v1::StreamChunk>(
                            [this](grpc::CallbackServerContext* ctx) { return new StreamReactor(this, ctx); }));
  // The unary methods (0: ListScenes, 1: GetScene) the same way, so that a call
  // whose request is incomplete is bounded and timed as well.
  MarkMethodStreamed(0, new grpc::internal::CallbackBidiHandler<grpc::ByteBuffer, v1::ListScenesResponse>(
                            [this](grpc::CallbackServerContext* ctx) {
                              return new UnaryReactor<v1::ListScenesRequest, v1::ListScenesResponse>(
                                  this, ctx, RpcMethod::kListScenes, &SceneService::DoListScenes);
                            }));
  MarkMethodStreamed(1, new grpc::internal::CallbackBidiHandler<grpc::ByteBuffer, v1::SceneInfo>(
                            [this](grpc::CallbackServerContext* ctx) {
                              return new UnaryReactor<v1::GetSceneRequest, v1::SceneInfo>(
                                  this, ctx, RpcMethod::kGetScene, &SceneService::DoGetScene);
                            }));
}

SceneService::~SceneService() = default;

grpc::Status SceneService::Authorize(const grpc::CallbackServerContext* ctx, const std::vector<std::string>& scene_ids,
                                     const TokenGrant** grant) const {
  if (grant != nullptr) *grant = nullptr;
  const TokenGrant* granted = nullptr;
  if (grpc::Status st = Authenticate(ctx, &granted); !st.ok()) return st;
  if (grpc::Status st = CheckGrant(granted, scene_ids); !st.ok()) return st;
  if (grant != nullptr) *grant = granted;
  return grpc::Status::OK;
}

grpc::Status SceneService::Authenticate(const grpc::CallbackServerContext* ctx, const TokenGrant** grant) const {
  *grant = nullptr;
  if (options_.authenticator == nullptr) return grpc::Status::OK;
  absl::Status st;
  const auto [first, last] = ctx->client_metadata().equal_range("authorization");
  if (first != last && std::next(first) != last) {
    st = absl::UnauthenticatedError("more than one authorization metadata entry");
  } else {
    std::optional<std::string_view> header;
    if (first != last) header = std::string_view(first->second.data(), first->second.size());
    auto authenticated = options_.authenticator->Authenticate(header);
    st = authenticated.status();
    if (st.ok()) *grant = *authenticated;
  }
  if (!st.ok()) {
    const grpc::Status refused = ToGrpcStatus(st);
    metrics_->AuthFailed(refused.error_code());
    return refused;
  }
  return grpc::Status::OK;
}

grpc::Status SceneService::CheckGrant(const TokenGrant* grant, const std::vector<std::string>& scene_ids) const {
  if (grant == nullptr) return grpc::Status::OK;
  for (const std::string& id : scene_ids) {
    if (absl::Status st = TokenAuthenticator::CheckScene(*grant, id); !st.ok()) {
      const grpc::Status refused = ToGrpcStatus(st);
      metrics_->AuthFailed(refused.error_code());
      return refused;
    }
  }
  return grpc::Status::OK;
}

bool SceneService::TryAdmit() {
  int cur = active_.load();
  while (cur < options_.max_streams) {
    if (active_.compare_exchange_weak(cur, cur + 1)) return true;
  }
  return false;
}

void SceneService::ReleaseAdmission() { active_.fetch_sub(1); }

bool SceneService::TryAcquireBytes(uint64_t bytes) {
  uint64_t cur = in_flight_.load();
  for (;;) {
    // Always let one write through, whatever its size, so that progress is possible.
    if (cur != 0 && cur + bytes > options_.max_bytes_in_flight) return false;
    if (in_flight_.compare_exchange_weak(cur, cur + bytes)) break;
  }
  const uint64_t now = cur + bytes;
  uint64_t peak = peak_in_flight_.load();
  while (now > peak && !peak_in_flight_.compare_exchange_weak(peak, now)) {}
  return true;
}

void SceneService::ReleaseBytes(uint64_t bytes) {
  in_flight_.fetch_sub(bytes);
  metrics_->BytesInFlight(-static_cast<int64_t>(bytes));
}

grpc::Status SceneService::DoListScenes(grpc::CallbackServerContext* ctx, const v1::ListScenesRequest& /*request*/,
                                        v1::ListScenesResponse* response) {
  if (!ready_.load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scenes are still loading");
  const TokenGrant* grant = nullptr;
  if (grpc::Status status = Authorize(ctx, {}, &grant); !status.ok()) return status;
  for (const auto& scene : registry_->List()) {
    if (grant == nullptr || grant->Allows(scene->id)) *response->add_scenes() = MakeSceneInfo(*scene);
  }
  return grpc::Status::OK;
}

grpc::Status SceneService::DoGetScene(grpc::CallbackServerContext* ctx, const v1::GetSceneRequest& request,
                                      v1::SceneInfo* response) {
  if (!ready_.load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scenes are still loading");
  const TokenGrant* grant = nullptr;
  if (grpc::Status status = Authenticate(ctx, &grant); !status.ok()) return status;
  if (absl::Status st = CheckSceneIdLength(request.scene_id()); !st.ok()) return ToGrpcStatus(st);
  // Refused before the lookup: the answer is the same for scenes that do not exist.
  if (grpc::Status status =
          CheckGrant(grant, request.scene_id().empty() ? std::vector<std::string>{}
                                                       : std::vector<std::string>{request.scene_id()});
      !status.ok()) {
    return status;
  }
  if (request.scene_id().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "scene_id is empty");
  auto scene = registry_->Find(request.scene_id());
  if (scene == nullptr) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no scene '", EscapeClientString(request.scene_id()), "'"));
  }
  *response = MakeSceneInfo(*scene);
  return grpc::Status::OK;
}

}  // namespace flexgs::server

// SceneClient: connects to a flexgs-server, sizes a request from the scene's facts and
// receives the nested levels into a ResidentStore, surviving broken connections.
//
// Resilience: when a stream breaks (transport error, deadline, a message that fails
// verification) the client waits with exponential backoff and full jitter, then resumes
// with the header's token from SceneAssembler::next_sequence(). The token pins the model
// digest and plan, so a resumed stream can never mix model versions: a server that no
// longer serves that model answers FAILED_PRECONDITION and the client stops with that
// error instead of restarting silently. Permanent errors (INVALID_ARGUMENT, NOT_FOUND,
// FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, OUT_OF_RANGE) are not retried;
// everything else is, until `give_up_after` has passed since the last progress.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/resident_store.h"
#include "client/scene_assembler.h"
#include "flexgs/v1/scene_service.pb.h"
#include "scene/orbit.h"

namespace grpc {
class ClientContext;
}

namespace flexgs::client {

// Lets another thread stop a Stream() in progress -- a viewer whose window closes, a
// user who changes the budget. Cancel() ends the call in flight at once (and any backoff
// wait), and Stream() returns CANCELLED; what the store holds stays as it was. One
// StreamCancel serves one Stream() at a time; once cancelled it stays cancelled.
class StreamCancel {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class SceneClient;
  // Stream()'s side: the call to cancel (false if already cancelled), and a backoff wait
  // that a Cancel() cuts short (true if cancelled).
  bool Attach(grpc::ClientContext* ctx);
  void Detach();
  bool WaitFor(std::chrono::milliseconds duration);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  grpc::ClientContext* ctx_ = nullptr;
  bool cancelled_ = false;
};

struct ConnectOptions {
  std::string address;  // host:port, or any gRPC target ("dns:///svc:50051")
  // TLS: with tls_ca set the channel uses TLS, verifying the server against that CA
  // bundle; client cert/key add mutual TLS. Empty: plaintext.
  std::string tls_ca_file, tls_cert_file, tls_key_file;
  std::string bearer_token;  // sent as "authorization: Bearer <token>" when non-empty
  uint32_t max_receive_message_bytes = 8u << 20;
  // HTTP/2 receive window per stream. 0: gRPC's adaptive window (BDP probing), which
  // on a fast path grows to megabytes -- then a slow reader's pace only reaches the
  // server after that much is buffered here. A rate-limited client sets a small fixed
  // window so its read rate is the sender's rate.
  uint32_t flow_control_window_bytes = 0;
  // HTTP/2 keepalive while a call is open: a ping every keepalive_time, and the
  // connection declared dead when one goes unanswered for keepalive_timeout -- the
  // stream then fails UNAVAILABLE and is resumed like any broken stream. Without it a
  // client reading from a link that silently drops everything waits for TCP (minutes).
  // 0: gRPC's default (no client pings). The server must permit the interval
  // (flexgs-server accepts down to min(10 s, its own --keepalive-time)).
  std::chrono::milliseconds keepalive_time{0};
  std::chrono::milliseconds keepalive_timeout{20000};
};

// One client request. Exactly one budget kind is set (see v1.StreamSceneRequest).
struct StreamRequest {
  std::string scene_id;
  std::optional<uint64_t> memory_bytes;
  std::optional<double> ratio;
  std::optional<uint64_t> gaussians;
  std::optional<uint32_t> max_sh_degree;
  std::vector<double> ladder;  // empty: the scene's
  v1::Encoding encoding = v1::ENCODING_QUANTIZED;
  uint32_t max_chunk_bytes = 0;  // 0: server default
};

struct RetryPolicy {
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  double multiplier = 2.0;
  std::chrono::milliseconds give_up_after{60000};  // without progress
  std::chrono::milliseconds attempt_deadline{0};   // per call; 0: none
  uint64_t seed = 1;                               // jitter
};

struct StreamOptions {
  double max_bandwidth_bytes_per_s = 0;  // 0: unlimited (token bucket on consumption)
  RetryPolicy retry;
  // Test hook: sees every received message before verification and may alter it
  // (e.g. flip a payload byte) to prove corruption is caught and resumed from.
  std::function<void(v1::StreamChunk&)> chunk_hook;
  // When set, another thread may stop the stream through it (see StreamCancel).
  StreamCancel* cancel = nullptr;
};

// Per-level statistics (seconds are since Stream() began).
struct LevelStats {
  int index = 0;
  double ratio = 0;
  uint64_t gaussians = 0;      // held after the level
  uint64_t payload_bytes = 0;  // StreamChunk payload bytes received for this level
  double started_s = 0;        // first message of the level verified
  double completed_s = 0;      // its LEVEL_END applied
};

// Callbacks from the receiving thread, in stream order. Keep them short or hand off;
// time spent here is time not reading (it also throttles the sender).
class StreamObserver {
 public:
  virtual ~StreamObserver() = default;
  virtual void OnHeader(const v1::StreamHeader& /*header*/) {}
  virtual void OnLevelStarted(int /*level*/, double /*ratio*/) {}
  // After each verified message: total payload bytes so far and the expected total
  // (header's sum of level payloads plus framing, best effort).
  virtual void OnProgress(uint64_t /*bytes*/, uint64_t /*expected_bytes*/) {}
  // A Gaussian or patch block of `level` was applied (the level is not complete yet).
  virtual void OnBlockApplied(int /*level*/, const ResidentStore& /*store*/) {}
  // The store now holds exactly this level.
  virtual void OnLevelComplete(const LevelStats& /*stats*/, const ResidentStore& /*store*/) {}
  virtual void OnRetry(const absl::Status& /*why*/, int /*attempt*/, std::chrono::milliseconds /*backoff*/) {}
};

struct StreamSummary {
  v1::StreamHeader header;
  std::vector<LevelStats> levels;
  uint64_t payload_bytes = 0;  // verified payload bytes kept
  uint64_t messages = 0;
  int retries = 0;                 // reconnects
  uint64_t rejected_messages = 0;  // failed verification (each caused a resume)
  double seconds = 0;
};

// What to frame views on: the scene's view bounds (1%-99% quantiles of the centres), or
// its full bounds from a server that sends none. DATA_LOSS when neither is 3-D.
absl::StatusOr<SceneBounds> FramingBounds(const v1::SceneInfo& info);

// What every source of a stream (a server, exported files) does after `applied` was
// applied by `assembler`: keeps `summary`'s per-level statistics and `expected_bytes`
// (the progress bar's total, from the header) and calls `obs`. `now_s`: seconds since
// the stream began.
void ReportApplied(const ApplyResult& applied, const SceneAssembler& assembler, double now_s, StreamSummary& summary,
                   uint64_t& expected_bytes, StreamObserver& obs);

class SceneClient {
 public:
  // Builds the channel (no I/O yet). INVALID_ARGUMENT for an empty address, NOT_FOUND /
  // INVALID_ARGUMENT for unreadable or bad TLS files.
  static absl::StatusOr<std::unique_ptr<SceneClient>> Connect(const ConnectOptions& options);
  ~SceneClient();

  absl::StatusOr<v1::SceneInfo> GetScene(const std::string& scene_id,
                                         std::chrono::milliseconds deadline = std::chrono::seconds(30));

  // Streams `request` into `store` (reset on the header) to the trailer. `observer` may
  // be null. Returns the summary, or the error that ended it (gRPC codes mapped to the
  // absl code of the same number, message prefixed with what was being done).
  absl::StatusOr<StreamSummary> Stream(const StreamRequest& request, const StreamOptions& options, ResidentStore* store,
                                       StreamObserver* observer);

  // The same with the caller's assembler, which keeps what was received when a stream
  // ends early (cancelled, given up): a fresh assembler streams from the start, one
  // holding part of a stream resumes it with its token (`request` is then not sent).
  absl::StatusOr<StreamSummary> Stream(const StreamRequest& request, const StreamOptions& options,
                                       SceneAssembler& assembler, StreamObserver* observer);

  // Extends what `assembler` holds -- a whole stream, or one cut off -- to `request`'s
  // larger budget (a user raising a budget slider): the server sends the larger stream's
  // header and then only what the assembler lacks. The store ends equal to a fresh
  // stream's for that budget. INVALID_ARGUMENT (from the server) for a smaller budget.
  absl::StatusOr<StreamSummary> Extend(const StreamRequest& request, const StreamOptions& options,
                                       SceneAssembler& assembler, StreamObserver* observer);

 private:
  struct Impl;
  explicit SceneClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flexgs::client

// SceneService: the flexgs.v1.SceneService callback implementation.
//
// StreamScene (one reactor per call, see StreamReactor in the .cc):
// - Registration: every RPC is served as a bidirectional-streaming method of raw
//   request bytes (identical on the wire to the unary and server-streaming methods
//   the proto declares). gRPC then hands a call over as soon as its headers arrive,
//   not when its request message is complete, so a call whose request never
//   completes is admitted, counted and timed like any other (see Limits).
//   ListScenes and GetScene (UnaryReactor) read one request and answer once; a unary
//   call in progress counts against max_streams and max_streams_per_peer in
//   counters of its own, has the same request timeout, and the same INVALID_ARGUMENT
//   for requests that do not decode.
// - Threads: the reactor never blocks a gRPC thread. It reads and validates the
//   request, asks the PlanCache for the stream's prepared messages (computed on the
//   cache's workers on a miss) and starts writing when they arrive -- on whichever
//   thread delivers them.
// - Backpressure: exactly one write in flight per stream; the next message is only
//   prepared in OnWriteDone(true), i.e. after the previous one passed HTTP/2 flow
//   control. The only per-stream buffer is that one message (<= max_chunk_bytes),
//   copied from the shared cached script.
// - Limits: at most `max_streams` admitted streams, and at most
//   `max_streams_per_peer` per client (its address, and its token when tokens are
//   on), both counted from the call's headers on, i.e. including calls still
//   waiting for their request (more: RESOURCE_EXHAUSTED with a retry hint in
//   trailing metadata); the request must be complete within `request_timeout` of the
//   headers (else DEADLINE_EXCEEDED); at most `max_bytes_in_flight` payload bytes in
//   writes not yet completed over all streams (a stream over the cap waits, polling
//   with a short grpc::Alarm backoff; one write may always proceed so that a cap
//   below one message cannot deadlock). A request that does not decode, or that
//   ends before its message, is INVALID_ARGUMENT and counted as undecodable; string
//   fields over their limits (stream_request.h) are INVALID_ARGUMENT.
// - Stall watchdog: every write arms a grpc::Alarm; if the write has not completed
//   after `stall_timeout`, the call is cancelled (TryCancel) and counted. This
//   catches peers that stop reading while the connection stays up, which keepalive
//   does not.
// - Security (all optional): with an authenticator every SceneService RPC needs
//   "authorization: Bearer <token>" (missing/malformed/unknown: UNAUTHENTICATED) and
//   a token granted the scene (else PERMISSION_DENIED, checked before the scene is
//   looked up, with one message for every scene, so it never tells whether a scene
//   exists); ListScenes lists only granted scenes. Health and reflection are other
//   services and stay open. `stream_rate` limits new StreamScene calls per client
//   address (RESOURCE_EXHAUSTED with the retry hint). A refused StreamScene is
//   checked in this order: loading (UNAVAILABLE), peer rate, token, per-peer cap,
//   max_streams, then the request once it has arrived: request timeout, decoding,
//   string lengths, scene grant, the request's parameters.
// - Logs: client strings are escaped and cut (log_escape.h) before they are logged
//   or put in a status message; "stream rejected" lines are rate-limited
//   (`rejection_log_rate` per second, with a count of the lines left out).
// - Lifetime: Finish is called exactly once, only when no write, alarm or plan
//   computation is outstanding (a read may be: gRPC completes it, failed, once the
//   call is finished), and gRPC calls OnDone only after every reaction has run, so
//   nothing can touch the reactor after OnDone deletes it. Cancellation, deadlines
//   and shutdown all end in OnCancel -> the outstanding write fails -> Finish ->
//   OnDone.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "flexgs/v1/scene_service.grpc.pb.h"
#include "server/first_level_gate.h"
#include "server/log_escape.h"
#include "server/peer_rate_limiter.h"
#include "server/plan_cache.h"
#include "server/scene_registry.h"
#include "server/server_metrics.h"
#include "server/stall_sweeper.h"
#include "server/token_authenticator.h"
#include "stream/stream_script.h"

namespace flexgs::server {

struct SceneServiceOptions {
  int max_streams = 256;
  uint64_t max_bytes_in_flight = uint64_t{256} << 20;
  std::chrono::milliseconds stall_timeout{30'000};
  uint32_t default_max_chunk_bytes = 256 << 10;
  // Largest max_chunk_bytes a request may name (>= default_max_chunk_bytes).
  uint32_t max_client_chunk_bytes = kMaxChunkBytes;
  // Bearer tokens and their scene grants; null: no authentication.
  std::shared_ptr<const TokenAuthenticator> authenticator;
  // New StreamScene calls per second per client address (0: unlimited) and the
  // burst allowed after an idle period (>= 1).
  double stream_rate = 0;
  double stream_burst = 10;
  // Concurrent StreamScene calls per client -- its address, and its token when
  // tokens are on -- counted from the call's headers (0: no per-client cap).
  int max_streams_per_peer = 64;
  // Time from a StreamScene call's headers to its complete request message.
  std::chrono::milliseconds request_timeout{10'000};
  // "stream rejected" log lines per second after a burst of 20 (0: every line).
  double rejection_log_rate = 5;
  // Start each write after a stream's first level from gRPC's executor (an alarm due
  // at once) instead of inline from the last write's completion. Inline, the thread
  // that accepted a call writes that whole stream (loopback and fast links take it
  // all) before it reads the next call, so a burst of N calls is served one stream
  // after another and the last first message waits for N-1 whole streams. Yielding
  // serves running streams a message each while new calls are taken and sent their
  // first levels, at more server CPU per byte (bench/RESULTS.md). The first level is
  // always written inline: it is small, and it is the client's first picture.
  bool yield_between_writes = true;
  // First levels first: a stream whose first level is out waits, before each further
  // message, while a stream admitted less than this long ago is still
  // sending its first level -- at most this long per message and 5x this in all
  // (FirstLevelGate). 0: off.
  std::chrono::milliseconds first_level_priority{20};
};

class SceneService final : public v1::SceneService::CallbackService {
 public:
  // `registry`, `cache` and `metrics` must outlive the service (and the server).
  SceneService(const SceneRegistry* registry, PlanCache* cache, ServerMetrics* metrics,
               const SceneServiceOptions& options);
  ~SceneService() override;

  // Until called with true (scenes loaded), every RPC answers UNAVAILABLE.
  void SetReady(bool ready) { ready_.store(ready); }

  // The RPCs are not served through the generated virtual methods: the constructor
  // registers StreamReactor and UnaryReactor for them (see the class comment).

  // Introspection (tests, logs).
  int active_streams() const { return active_.load(); }
  uint64_t bytes_in_flight() const { return in_flight_.load(); }
  uint64_t peak_bytes_in_flight() const { return peak_in_flight_.load(); }
  uint64_t stalls_cancelled() const { return stalls_.load(); }
  // Times a stream waited for younger streams' first levels (0 with the gate off).
  uint64_t first_level_waits() const { return gate_ == nullptr ? 0 : gate_->parked_total(); }
  const SceneServiceOptions& options() const { return options_; }

 private:
  class StreamReactor;
  template <typename Request, typename Response>
  class UnaryReactor;

  // The unary methods' answers to a decoded request (UnaryReactor calls them).
  grpc::Status DoListScenes(grpc::CallbackServerContext* ctx, const v1::ListScenesRequest& request,
                            v1::ListScenesResponse* response);
  grpc::Status DoGetScene(grpc::CallbackServerContext* ctx, const v1::GetSceneRequest& request,
                          v1::SceneInfo* response);

  // OK without an authenticator; else UNAUTHENTICATED or PERMISSION_DENIED (counted
  // in metrics) unless the call's token grants every id in `scene_ids`. `*grant`
  // (optional) gets the token's grant, or null without an authenticator.
  grpc::Status Authorize(const grpc::CallbackServerContext* ctx, const std::vector<std::string>& scene_ids,
                         const TokenGrant** grant) const;
  // The two halves of Authorize: the token (UNAUTHENTICATED), then its grant of
  // every id (PERMISSION_DENIED); both counted in metrics. Null grant: no tokens.
  grpc::Status Authenticate(const grpc::CallbackServerContext* ctx, const TokenGrant** grant) const;
  grpc::Status CheckGrant(const TokenGrant* grant, const std::vector<std::string>& scene_ids) const;
  bool TryAdmit();
  void ReleaseAdmission();
  // Reserves `bytes` of the global in-flight budget; false when over the cap.
  bool TryAcquireBytes(uint64_t bytes);
  void ReleaseBytes(uint64_t bytes);

  const SceneRegistry* const registry_;
  PlanCache* const cache_;
  ServerMetrics* const metrics_;
  const SceneServiceOptions options_;
  const std::unique_ptr<PeerRateLimiter> rate_limiter_;    // null: no --stream-rate
  const std::unique_ptr<PeerStreamLimiter> peer_streams_;  // null: no per-peer cap
  const std::unique_ptr<PeerStreamLimiter> unary_peers_;   // the same cap, for unary calls
  std::atomic<int> unary_active_{0};                       // unary calls in progress
  mutable LogThrottle reject_log_;
  std::atomic<bool> ready_{false};
  std::atomic<int> active_{0};
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> peak_in_flight_{0};
  std::atomic<uint64_t> stalls_{0};
  // Last members: destroyed (their threads joined) first. Streams cannot outlive the
  // service: the server is shut down before it.
  const std::unique_ptr<FirstLevelGate> gate_;  // null: first_level_priority 0
  const std::unique_ptr<StallSweeper> sweeper_;
};

// SceneInfo for a loaded scene (ListScenes / GetScene).
v1::SceneInfo MakeSceneInfo(const Scene& scene);

}  // namespace flexgs::server

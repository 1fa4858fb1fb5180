// ServerMetrics: Prometheus metrics for the scene server, served at /metrics by
// MetricsHttpServer (one poll() thread; cannot be locked out by idle connections).
//
// gRPC metrics follow go-grpc-prometheus (labels grpc_service, grpc_method,
// grpc_type, grpc_code); stream metrics are prefixed flexgs_. Every labelled child is
// created in the constructor and kept by reference, so hot paths never call
// Family::Add (slow, and a lock per call); labels are low-cardinality by design
// (never a scene id or a peer address).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace flexgs::server {

class MetricsHttpServer;

enum class RpcMethod { kListScenes = 0, kGetScene, kStreamScene };
inline constexpr int kRpcMethodCount = 3;

// Why a stream was refused before sending anything (label `reason`).
enum class RejectReason {
  kMaxStreams = 0,      // RESOURCE_EXHAUSTED: too many concurrent streams
  kNotFound,            // unknown scene
  kInvalidArgument,     // malformed request or resume token
  kFailedPrecondition,  // budget below the smallest level, or a token for another model
  kOutOfRange,          // resume beyond the end
  kUnavailable,         // scenes still loading, or shutting down
  kInternal,            // planning failed
  kRateLimited,         // RESOURCE_EXHAUSTED: the peer's --stream-rate bucket is empty
  kUnauthenticated,     // missing, malformed or unknown bearer token
  kPermissionDenied,    // the token does not grant the scene
  kPeerLimit,           // RESOURCE_EXHAUSTED: the client holds --max-streams-per-peer streams
  kRequestTimeout,      // DEADLINE_EXCEEDED: no complete request within --request-timeout
};
inline constexpr int kRejectReasonCount = 12;

// Maps a refusal's status code to its reason label (RESOURCE_EXHAUSTED: max_streams,
// DEADLINE_EXCEEDED: request_timeout; rate-limited and per-peer refusals name their
// reason themselves).
RejectReason RejectReasonFor(grpc::StatusCode code);

class ServerMetrics {
 public:
  ServerMetrics();
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Serves /metrics on host:port (port 0: any free port); returns the bound port.
  // Errors if the port cannot be bound. `max_connections` and `request_timeout`:
  // see MetricsHttpServer.
  absl::StatusOr<int> StartExposer(const std::string& host, int port, int max_connections = 64,
                                   std::chrono::milliseconds request_timeout = std::chrono::seconds(5));
  void StopExposer();

  // The text exposition format, as /metrics serves it.
  std::string Render() const;

  void RpcStarted(RpcMethod method);
  void RpcHandled(RpcMethod method, grpc::StatusCode code, double seconds);
  void MessageSent(RpcMethod method);

  void StreamBytesSent(uint64_t bytes);
  void TimeToFirstChunk(double seconds);
  void PlanComputed(double seconds);
  void PlanCacheHit();
  void PlanCacheMiss();
  // The plan cache's scripts: how many and their bytes (one canonical stream per model and
  // stream parameters, whatever the budgets).
  void PlanCacheSize(uint64_t entries, uint64_t bytes);
  void StreamsActive(int delta);
  void BytesInFlight(int64_t delta);
  void StallCancelled();
  void StreamRejected(RejectReason reason);
  void StreamResumed();
  // A call refused by bearer-token authentication: `code` is UNAUTHENTICATED or
  // PERMISSION_DENIED (label `code`; never a token or scene).
  void AuthFailed(grpc::StatusCode code);
  // A request message that could not be decoded, or a call that ended before its
  // message (label grpc_method).
  void RequestUndecodable(RpcMethod method);
  // Scenes that failed to load in a rescan (and failed listings of the directory).
  void SceneReloadFailed(uint64_t count);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> exposer_;

  std::array<prometheus::Counter*, kRpcMethodCount> started_{};
  std::array<std::array<prometheus::Counter*, 17>, kRpcMethodCount> handled_{};  // by grpc::StatusCode
  std::array<prometheus::Counter*, kRpcMethodCount> msg_sent_{};
  std::array<prometheus::Histogram*, kRpcMethodCount> handling_seconds_{};
  std::array<prometheus::Counter*, kRejectReasonCount> rejected_{};
  prometheus::Counter* bytes_sent_ = nullptr;
  prometheus::Histogram* ttfc_ = nullptr;
  prometheus::Histogram* plan_seconds_ = nullptr;
  prometheus::Counter* cache_hits_ = nullptr;
  prometheus::Counter* cache_misses_ = nullptr;
  prometheus::Gauge* cache_entries_ = nullptr;
  prometheus::Gauge* cache_bytes_ = nullptr;
  prometheus::Gauge* active_ = nullptr;
  prometheus::Gauge* in_flight_ = nullptr;
  prometheus::Counter* stalls_ = nullptr;
  prometheus::Counter* resumed_ = nullptr;
  prometheus::Counter* unauthenticated_ = nullptr;
  prometheus::Counter* permission_denied_ = nullptr;
  std::array<prometheus::Counter*, kRpcMethodCount> undecodable_{};
  prometheus::Counter* reload_failures_ = nullptr;
};

}  // namespace flexgs::server

// ServerMetrics: Prometheus metrics for the scene server, served by prometheus-cpp's
// Exposer at /metrics.
//
// gRPC metrics follow go-grpc-prometheus (labels grpc_service, grpc_method,
// grpc_type, grpc_code); stream metrics are prefixed flexgs_. Every labelled child is
// created in the constructor and kept by reference, so hot paths never call
// Family::Add (slow, and a lock per call); labels are low-cardinality by design
// (never a scene id or a peer address).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace flexgs::server {

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
};
inline constexpr int kRejectReasonCount = 10;

// Maps a refusal's status code to its reason label (RESOURCE_EXHAUSTED: max_streams;
// rate-limited refusals name kRateLimited themselves).
RejectReason RejectReasonFor(grpc::StatusCode code);

class ServerMetrics {
 public:
  ServerMetrics();
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Serves /metrics on host:port (port 0: any free port); returns the bound port.
  // Errors if the port cannot be bound.
  absl::StatusOr<int> StartExposer(const std::string& host, int port);
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
  void StreamsActive(int delta);
  void BytesInFlight(int64_t delta);
  void StallCancelled();
  void StreamRejected(RejectReason reason);
  void StreamResumed();
  // A call refused by bearer-token authentication: `code` is UNAUTHENTICATED or
  // PERMISSION_DENIED (label `code`; never a token or scene).
  void AuthFailed(grpc::StatusCode code);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;

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
  prometheus::Gauge* active_ = nullptr;
  prometheus::Gauge* in_flight_ = nullptr;
  prometheus::Counter* stalls_ = nullptr;
  prometheus::Counter* resumed_ = nullptr;
  prometheus::Counter* unauthenticated_ = nullptr;
  prometheus::Counter* permission_denied_ = nullptr;
};

}  // namespace flexgs::server

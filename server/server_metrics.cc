#include "server/server_metrics.h"

#include <exception>
#include <sstream>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"
#include "server/metrics_http_server.h"

namespace flexgs::server {
namespace {

constexpr char kService[] = "flexgs.v1.SceneService";
constexpr const char* kMethodNames[kRpcMethodCount] = {"ListScenes", "GetScene", "StreamScene"};
constexpr const char* kMethodTypes[kRpcMethodCount] = {"unary", "unary", "server_stream"};
constexpr const char* kRejectNames[kRejectReasonCount] = {
    "max_streams", "not_found",    "invalid_argument", "failed_precondition", "out_of_range", "unavailable",
    "internal",    "rate_limited", "unauthenticated",  "permission_denied",   "peer_limit",   "request_timeout"};

// Streams over slow links last minutes: the default buckets (<= 10 s) would put them
// all in +Inf.
const prometheus::Histogram::BucketBoundaries kHandlingBuckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                                                  5,     10,    30,   60,   120, 300,  600, 1800};
const prometheus::Histogram::BucketBoundaries kFirstChunkBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
const prometheus::Histogram::BucketBoundaries kPlanBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                              1,     2.5,   5,    10,    30,   60,  120};

}  // namespace

RejectReason RejectReasonFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return RejectReason::kMaxStreams;
    case grpc::StatusCode::NOT_FOUND:
      return RejectReason::kNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return RejectReason::kInvalidArgument;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return RejectReason::kFailedPrecondition;
    case grpc::StatusCode::OUT_OF_RANGE:
      return RejectReason::kOutOfRange;
    case grpc::StatusCode::UNAVAILABLE:
      return RejectReason::kUnavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
      return RejectReason::kUnauthenticated;
    case grpc::StatusCode::PERMISSION_DENIED:
      return RejectReason::kPermissionDenied;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return RejectReason::kRequestTimeout;
    default:
      return RejectReason::kInternal;
  }
}

ServerMetrics::ServerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& started = BuildCounter()
                      .Name("grpc_server_started_total")
                      .Help("Total number of RPCs started on the server.")
                      .Register(*registry_);
  auto& handled = BuildCounter()
                      .Name("grpc_server_handled_total")
                      .Help("Total number of RPCs completed on the server, regardless of success or failure.")
                      .Register(*registry_);
  auto& sent = BuildCounter()
                   .Name("grpc_server_msg_sent_total")
                   .Help("Total number of gRPC stream messages sent by the server.")
                   .Register(*registry_);
  auto& seconds = BuildHistogram()
                      .Name("grpc_server_handling_seconds")
                      .Help(
                          "Histogram of response latency (seconds) of gRPC that had been application-level "
                          "handled by the server.")
                      .Register(*registry_);
  for (int m = 0; m < kRpcMethodCount; ++m) {
    const prometheus::Labels base = {
        {"grpc_service", kService}, {"grpc_method", kMethodNames[m]}, {"grpc_type", kMethodTypes[m]}};
    started_[m] = &started.Add(base);
    msg_sent_[m] = &sent.Add(base);
    handling_seconds_[m] = &seconds.Add(base, kHandlingBuckets);
    for (int c = 0; c < 17; ++c) {
      prometheus::Labels labels = base;
      labels["grpc_code"] = GrpcCodeName(static_cast<grpc::StatusCode>(c));
      handled_[m][c] = &handled.Add(labels);
    }
  }
  bytes_sent_ = &BuildCounter()
                     .Name("flexgs_stream_bytes_sent_total")
                     .Help("StreamChunk payload bytes whose write completed.")
                     .Register(*registry_)
                     .Add({});
  ttfc_ = &BuildHistogram()
               .Name("flexgs_stream_time_to_first_chunk_seconds")
               .Help("From a stream's start to the completion of its first write (includes planning on a miss).")
               .Register(*registry_)
               .Add({}, kFirstChunkBuckets);
  plan_seconds_ = &BuildHistogram()
                       .Name("flexgs_plan_compute_seconds")
                       .Help("Time to plan levels and encode a stream script (plan cache misses).")
                       .Register(*registry_)
                       .Add({}, kPlanBuckets);
  cache_hits_ = &BuildCounter()
                     .Name("flexgs_plan_cache_hits_total")
                     .Help("Stream scripts served from the plan cache or a computation already running.")
                     .Register(*registry_)
                     .Add({});
  cache_misses_ = &BuildCounter()
                       .Name("flexgs_plan_cache_misses_total")
                       .Help("Stream scripts that had to be computed.")
                       .Register(*registry_)
                       .Add({});
  cache_entries_ = &BuildGauge()
                        .Name("flexgs_plan_cache_entries")
                        .Help("Stream scripts in the plan cache (one per model and stream parameters).")
                        .Register(*registry_)
                        .Add({});
  cache_bytes_ = &BuildGauge()
                      .Name("flexgs_plan_cache_bytes")
                      .Help("Memory held by the plan cache's stream scripts.")
                      .Register(*registry_)
                      .Add({});
  active_ = &BuildGauge()
                 .Name("flexgs_streams_active")
                 .Help("StreamScene calls admitted and not yet done.")
                 .Register(*registry_)
                 .Add({});
  in_flight_ = &BuildGauge()
                    .Name("flexgs_stream_bytes_in_flight")
                    .Help("Payload bytes of writes started and not yet completed, over all streams.")
                    .Register(*registry_)
                    .Add({});
  stalls_ = &BuildCounter()
                 .Name("flexgs_stream_stalls_cancelled_total")
                 .Help("Streams cancelled because a write did not complete within the stall timeout.")
                 .Register(*registry_)
                 .Add({});
  resumed_ = &BuildCounter()
                  .Name("flexgs_streams_resumed_total")
                  .Help("Streams started from a resume token.")
                  .Register(*registry_)
                  .Add({});
  auto& rejected = BuildCounter()
                       .Name("flexgs_streams_rejected_total")
                       .Help("Streams refused before their first message, by reason.")
                       .Register(*registry_);
  for (int r = 0; r < kRejectReasonCount; ++r) rejected_[r] = &rejected.Add({{"reason", kRejectNames[r]}});
  auto& auth = BuildCounter()
                   .Name("flexgs_auth_failures_total")
                   .Help("SceneService calls refused by bearer-token authentication, by status code.")
                   .Register(*registry_);
  unauthenticated_ = &auth.Add({{"code", "UNAUTHENTICATED"}});
  permission_denied_ = &auth.Add({{"code", "PERMISSION_DENIED"}});
  auto& undecodable = BuildCounter()
                          .Name("flexgs_requests_undecodable_total")
                          .Help(
                              "SceneService requests whose message could not be decoded or that ended before "
                              "their message (answered INVALID_ARGUMENT), by method.")
                          .Register(*registry_);
  for (int m = 0; m < kRpcMethodCount; ++m) undecodable_[m] = &undecodable.Add({{"grpc_method", kMethodNames[m]}});
  reload_failures_ = &BuildCounter()
                          .Name("flexgs_scene_reload_failures_total")
                          .Help(
                              "Scenes that failed to load in a rescan (the previous version, if any, is kept), "
                              "and rescans whose directory could not be listed.")
                          .Register(*registry_)
                          .Add({});
}

ServerMetrics::~ServerMetrics() { StopExposer(); }

absl::StatusOr<int> ServerMetrics::StartExposer(const std::string& host, int port, int max_connections,
                                                std::chrono::milliseconds request_timeout) {
  StopExposer();
  auto server = std::make_unique<MetricsHttpServer>();
  MetricsHttpServer::Options options;
  options.host = host;
  options.port = port;
  options.max_connections = max_connections;
  options.request_timeout = request_timeout;
  auto bound = server->Start(options, [this] { return Render(); });
  if (!bound.ok()) return bound.status();
  exposer_ = std::move(server);
  return *bound;
}

void ServerMetrics::StopExposer() { exposer_.reset(); }

std::string ServerMetrics::Render() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

void ServerMetrics::RpcStarted(RpcMethod method) { started_[static_cast<int>(method)]->Increment(); }

void ServerMetrics::RpcHandled(RpcMethod method, grpc::StatusCode code, double seconds) {
  const int m = static_cast<int>(method);
  const int c = static_cast<int>(code) >= 0 && static_cast<int>(code) < 17
                    ? static_cast<int>(code)
                    : static_cast<int>(grpc::StatusCode::UNKNOWN);
  handled_[m][c]->Increment();
  handling_seconds_[m]->Observe(seconds);
}

void ServerMetrics::MessageSent(RpcMethod method) { msg_sent_[static_cast<int>(method)]->Increment(); }
void ServerMetrics::StreamBytesSent(uint64_t bytes) { bytes_sent_->Increment(static_cast<double>(bytes)); }
void ServerMetrics::TimeToFirstChunk(double seconds) { ttfc_->Observe(seconds); }
void ServerMetrics::PlanComputed(double seconds) { plan_seconds_->Observe(seconds); }
void ServerMetrics::PlanCacheHit() { cache_hits_->Increment(); }
void ServerMetrics::PlanCacheMiss() { cache_misses_->Increment(); }
void ServerMetrics::PlanCacheSize(uint64_t entries, uint64_t bytes) {
  cache_entries_->Set(static_cast<double>(entries));
  cache_bytes_->Set(static_cast<double>(bytes));
}
void ServerMetrics::StreamsActive(int delta) { active_->Increment(delta); }
void ServerMetrics::BytesInFlight(int64_t delta) { in_flight_->Increment(static_cast<double>(delta)); }
void ServerMetrics::StallCancelled() { stalls_->Increment(); }
void ServerMetrics::StreamRejected(RejectReason reason) { rejected_[static_cast<int>(reason)]->Increment(); }
void ServerMetrics::StreamResumed() { resumed_->Increment(); }
void ServerMetrics::RequestUndecodable(RpcMethod method) { undecodable_[static_cast<int>(method)]->Increment(); }
void ServerMetrics::SceneReloadFailed(uint64_t count) { reload_failures_->Increment(static_cast<double>(count)); }
void ServerMetrics::AuthFailed(grpc::StatusCode code) {
  (code == grpc::StatusCode::PERMISSION_DENIED ? permission_denied_ : unauthenticated_)->Increment();
}

}  // namespace flexgs::server

// flexgs-server: streams elastic 3DGS scenes over gRPC (flexgs.v1.SceneService).
//
// Startup: bind the port (health NOT_SERVING), load the scenes directory, then
// SERVING. SIGTERM/SIGINT: health NOT_SERVING, Server::Shutdown(now + drain) -- new
// calls are refused, running streams get until the deadline and are then cancelled
// -- and exit 0. SIGHUP, and every --rescan-interval seconds: rescan the scenes
// directory (SceneRescanner: new scenes added, changed ones reloaded in the background
// and swapped in, removed ones dropped; running streams finish on their version).
// Every flag can also be set by an environment variable
// FLEXGS_<FLAG> (e.g. FLEXGS_PORT=50051); a flag given on the command line wins.
// FLEXGS_TOKENS (inline bearer tokens, see server/token_authenticator.h) has no flag,
// so that tokens need not appear in a command line.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include <google/protobuf/stubs/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <CLI/CLI.hpp>

#include "absl/synchronization/mutex.h"
#include "kernels/backend.h"
#include "server/log_escape.h"
#include "server/plan_cache.h"
#include "server/scene_registry.h"
#include "server/scene_rescanner.h"
#include "server/scene_service.h"
#include "server/script_warmer.h"
#include "server/server_credentials.h"
#include "server/server_metrics.h"
#include "server/stream_request.h"
#include "server/token_authenticator.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace flexgs::server {
namespace {

constexpr char kServiceName[] = "flexgs.v1.SceneService";

struct Flags {
  std::string host = "0.0.0.0";
  int port = 50051;
  std::string scenes;
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 9464;
  int metrics_max_connections = 64;
  double metrics_request_timeout = 5;
  std::string device = "auto";
  int max_streams = 256;
  uint64_t max_inflight_bytes = uint64_t{256} << 20;
  double stall_timeout = 30;
  uint64_t plan_cache_bytes = uint64_t{1} << 30;
  int plan_workers = 2;
  int threads = 0;
  double drain_seconds = 10;
  uint32_t max_chunk_bytes = 256 << 10;
  int gi_views = 16;
  int gi_size = 256;
  uint64_t resource_quota_bytes = uint64_t{2} << 30;
  double rescan_interval = 30;
  double keepalive_time = 30;
  double keepalive_timeout = 20;
  std::string log_level = "info";
  std::string tls_cert, tls_key, tls_ca;
  std::string tokens_file;
  int max_request_bytes = 64 << 10;
  uint32_t max_client_chunk_bytes = kMaxChunkBytes;
  double stream_rate = 0;
  double stream_burst = 10;
  int max_streams_per_peer = 64;
  int max_streams_per_connection = 100;
  double request_timeout = 10;
  double rejection_log_rate = 5;
  bool yield_between_writes = true;
  int first_level_priority_ms = 20;
};

// Adds --name with env FLEXGS_NAME (dashes -> underscores, upper case).
template <typename T>
CLI::Option* Opt(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  std::string env = "FLEXGS_";
  for (char c : name) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return app.add_option("--" + name, value, help)->envname(env)->capture_default_str();
}

// protobuf's own messages (e.g. "String field ... contains invalid UTF-8 data" for
// every such request a client sends) go through spdlog, at most one a second after a
// burst of 5, so that a client cannot flood the log with them.
void ProtobufLog(google::protobuf::LogLevel level, const char* /*filename*/, int /*line*/, const std::string& message) {
  static LogThrottle throttle(1, 5);
  uint64_t suppressed = 0;
  if (level != google::protobuf::LOGLEVEL_FATAL && !throttle.Allow(&suppressed)) return;
  spdlog::warn("protobuf: {}{}", EscapeClientString(message, 512),
               suppressed > 0 ? fmt::format(" [{} similar lines suppressed]", suppressed) : std::string());
}

absl::Status LogDevice(const std::string& text) {
  auto device = ParseDevice(text);
  if (!device.ok()) return device.status();
  std::string why;
  const bool cuda = CudaAvailable(&why);
  if (*device == Device::kCuda && !cuda) {
    return absl::FailedPreconditionError("--device cuda: " + why);
  }
  const char* resolved = *device == Device::kCpu ? "cpu" : (cuda ? "cuda" : "cpu");
  // Planning and GI of plain PLY scenes run on the CPU in the server today; the
  // device is resolved (and a requested GPU verified) so deployments fail early.
  spdlog::info("device: requested {}, resolved {}{}; scene planning runs on the CPU", text, resolved,
               *device == Device::kAuto && !cuda ? " (" + why + ")" : std::string());
  return absl::OkStatus();
}

int Run(const Flags& f) {
  // Signals are taken by one thread with sigwait, so block them before any other
  // thread (gRPC's, spdlog's, the plan workers') exists and inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::Status st = LogDevice(f.device); !st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }

  // Security settings are checked before anything listens: a typo must not leave a
  // server running in plaintext or without authentication.
  auto credentials = MakeServerCredentials({f.tls_cert, f.tls_key, f.tls_ca});
  if (!credentials.ok()) {
    spdlog::error("{}", std::string(credentials.status().message()));
    return 1;
  }
  auto authenticator = LoadTokenAuthenticator(f.tokens_file, std::getenv("FLEXGS_TOKENS"));
  if (!authenticator.ok()) {
    spdlog::error("{}", std::string(authenticator.status().message()));
    return 1;
  }
  spdlog::info("transport: {}{}", credentials->mode,
               f.tls_ca.empty() ? std::string() : " (client certificates required, CA " + f.tls_ca + ")");
  if (*authenticator != nullptr) {
    spdlog::info("authentication: bearer tokens, {} loaded from {}", (*authenticator)->size(),
                 f.tokens_file.empty() ? std::string("FLEXGS_TOKENS") : f.tokens_file);
  } else {
    spdlog::info("authentication: off (no --tokens-file or FLEXGS_TOKENS)");
  }
  spdlog::info(
      "limits: request messages <= {} bytes within {} s, client chunk size <= {} bytes, new streams per "
      "address: {}, streams: {} in all, {} per client, {} per connection",
      f.max_request_bytes, f.request_timeout, f.max_client_chunk_bytes,
      f.stream_rate > 0 ? fmt::format("{}/s, burst {}", f.stream_rate, f.stream_burst) : "unlimited", f.max_streams,
      f.max_streams_per_peer > 0 ? std::to_string(f.max_streams_per_peer) : "unlimited", f.max_streams_per_connection);

  ServerMetrics metrics;
  if (f.metrics_port > 0) {
    auto port = metrics.StartExposer(f.metrics_host, f.metrics_port, f.metrics_max_connections,
                                     std::chrono::milliseconds(static_cast<int64_t>(f.metrics_request_timeout * 1000)));
    if (!port.ok()) {
      spdlog::error("{}", std::string(port.status().message()));
      return 1;
    }
    spdlog::info("metrics on http://{}:{}/metrics", f.metrics_host, *port);
  }

  SceneRegistry registry;
  PlanCache::Options cache_options;
  cache_options.capacity_bytes = f.plan_cache_bytes;
  cache_options.workers = f.plan_workers;
  PlanCache::Hooks hooks;
  hooks.on_hit = [&metrics] { metrics.PlanCacheHit(); };
  hooks.on_miss = [&metrics] { metrics.PlanCacheMiss(); };
  hooks.on_computed = [&metrics](double s) { metrics.PlanComputed(s); };
  hooks.on_size = [&metrics](uint64_t entries, uint64_t bytes) { metrics.PlanCacheSize(entries, bytes); };
  PlanCache cache(cache_options, hooks);

  SceneServiceOptions service_options;
  service_options.max_streams = f.max_streams;
  service_options.max_bytes_in_flight = f.max_inflight_bytes;
  service_options.stall_timeout = std::chrono::milliseconds(static_cast<int64_t>(f.stall_timeout * 1000));
  service_options.default_max_chunk_bytes = f.max_chunk_bytes;
  service_options.max_client_chunk_bytes = f.max_client_chunk_bytes;
  service_options.authenticator = *authenticator;
  service_options.stream_rate = f.stream_rate;
  service_options.stream_burst = f.stream_burst;
  service_options.max_streams_per_peer = f.max_streams_per_peer;
  service_options.request_timeout = std::chrono::milliseconds(static_cast<int64_t>(f.request_timeout * 1000));
  service_options.rejection_log_rate = f.rejection_log_rate;
  service_options.yield_between_writes = f.yield_between_writes;
  service_options.first_level_priority = std::chrono::milliseconds(f.first_level_priority_ms);
  SceneService service(&registry, &cache, &metrics, service_options);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(f.host + ":" + std::to_string(f.port), credentials->credentials, &bound_port);
  builder.RegisterService(&service);
  // Requests are tiny; a small receive limit is cheap protection (larger messages
  // get RESOURCE_EXHAUSTED from gRPC before any handler runs).
  builder.SetMaxReceiveMessageSize(f.max_request_bytes);
  // Find dead peers during long streams: a ping every keepalive-time, the connection
  // (and its streams, counted CANCELLED) closed when none is answered within
  // keepalive-timeout. Accept client pings down to every 10 s, or our own interval
  // when that is shorter (a client configured like us is never told "too many pings").
  const int keepalive_ms = static_cast<int>(f.keepalive_time * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(f.keepalive_timeout * 1000));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, std::min(10'000, keepalive_ms));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // At most this many concurrent HTTP/2 streams per connection (SETTINGS_MAX_
  // CONCURRENT_STREAMS). A client that exceeds it after acknowledging the setting loses
  // the connection (gRPC 1.51: a connection error); one that never acknowledges it is
  // still held by the service's own caps, which count every call from its headers.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, f.max_streams_per_connection);
  // Requests are small: the server's receive windows need no bandwidth probing, and
  // without it a client cannot grow them to buffer more in the server.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  grpc::ResourceQuota quota("flexgs-server");
  if (f.resource_quota_bytes > 0) {
    // A backstop for gRPC's own buffers; the service's limits are the real control.
    quota.Resize(f.resource_quota_bytes);
    builder.SetResourceQuota(quota);
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    spdlog::error("cannot listen on {}:{}", f.host, f.port);
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", false);
  health->SetServingStatus(kServiceName, false);
  std::cout << "listening on " << bound_port << std::endl;
  spdlog::info("listening on {}:{} (NOT_SERVING until scenes are loaded)", f.host, bound_port);

  SceneLoadOptions load;
  load.gi_views = f.gi_views;
  load.gi_size = f.gi_size;
  load.threads = f.threads;
  SceneRescanner::Options rescan_options;
  rescan_options.dir = f.scenes;
  rescan_options.load = load;
  rescan_options.interval = std::chrono::milliseconds(static_cast<int64_t>(f.rescan_interval * 1000));
  rescan_options.on_failures = [&metrics](uint64_t n) { metrics.SceneReloadFailed(n); };
  // A scene's default canonical script starts planning as soon as the scene is loaded.
  const auto warm = [&registry, &cache, &f](const std::vector<std::string>& ids) {
    for (const std::string& id : ids)
      WarmDefaultScript(registry, cache, id, f.max_chunk_bytes, f.max_client_chunk_bytes);
  };
  rescan_options.on_loaded = warm;
  SceneRescanner rescanner(&registry, &cache, rescan_options);

  std::atomic<bool> stopping{false};
  std::thread signal_thread([&] {
    int sig = 0;
    // SIGHUP asks for a rescan (taken up once the initial load is done); SIGTERM or
    // SIGINT end the loop.
    while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
      spdlog::info("SIGHUP: rescanning {}", f.scenes);
      rescanner.Request();
    }
    stopping.store(true);
    rescanner.RequestStop();
    spdlog::info("{}: draining for up to {} s", sig == SIGTERM ? "SIGTERM" : "SIGINT", f.drain_seconds);
    health->Shutdown();  // every service NOT_SERVING, for good
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(f.drain_seconds * 1000)));
    spdlog::info("gRPC server shut down");
  });

  absl::Status loaded = registry.LoadDirectory(f.scenes, load, &stopping);
  int exit_code = 0;
  if (!loaded.ok()) {
    spdlog::error("{}", std::string(loaded.message()));
    exit_code = 1;
    // Shut down through the signal thread so there is exactly one shutdown path.
    pthread_kill(signal_thread.native_handle(), SIGTERM);
  } else if (!stopping.load()) {
    if (registry.size() == 0) spdlog::warn("no scenes in {}: serving an empty list", f.scenes);
    service.SetReady(true);
    health->SetServingStatus(kServiceName, true);
    health->SetServingStatus("", true);
    spdlog::info("SERVING {} scene(s)", registry.size());
    std::vector<std::string> ids;
    for (const auto& scene : registry.List()) ids.push_back(scene->id);
    warm(ids);
    rescanner.Start();
    if (f.rescan_interval > 0) {
      spdlog::info("rescanning {} every {} s and on SIGHUP", f.scenes, f.rescan_interval);
    } else {
      spdlog::info("rescanning {} on SIGHUP only", f.scenes);
    }
  }
  server->Wait();
  signal_thread.join();
  rescanner.Stop();
  metrics.StopExposer();
  server.reset();  // reactors are all done; the cache and registry can go now
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace
}  // namespace flexgs::server

int main(int argc, char** argv) {
  // Debian's Abseil is built with Mutex deadlock detection on (a debugging aid): every
  // lock gRPC takes then updates a global lock graph, about 4 % of the server's CPU under
  // load (perf of bench_server's 64 streams: GraphCycles gone, absl 8.6 -> 4.2 %).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  flexgs::server::Flags f;
  CLI::App app{"flexgs-server: stream elastic 3D Gaussian Splatting scenes over gRPC"};
  using flexgs::server::Opt;
  Opt(app, "host", f.host, "Address to listen on");
  Opt(app, "port", f.port, "gRPC port (0: pick a free one; printed as 'listening on PORT')");
  Opt(app, "scenes", f.scenes, "Directory of *.flexgs bundles and *.ply scenes")->required();
  Opt(app, "metrics-host", f.metrics_host,
      "Address for the Prometheus endpoint (0.0.0.0 to let other hosts scrape; plain HTTP, no token)");
  Opt(app, "metrics-port", f.metrics_port, "Prometheus /metrics port (0 disables)");
  Opt(app, "metrics-max-connections", f.metrics_max_connections,
      "Open /metrics connections; a new one closes the oldest that has not sent its request")
      ->check(CLI::Range(1, 65536));
  Opt(app, "metrics-request-timeout", f.metrics_request_timeout,
      "Seconds a /metrics connection has to send its request (and to take the response)")
      ->check(CLI::Range(0.05, 3600.0));
  Opt(app, "device", f.device, "auto, cpu or cuda");
  Opt(app, "max-streams", f.max_streams, "Concurrent StreamScene calls; more get RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1 << 20));
  Opt(app, "max-inflight-bytes", f.max_inflight_bytes, "Payload bytes in writes not yet completed, all streams");
  Opt(app, "stall-timeout", f.stall_timeout, "Seconds a write may take before the stream is cancelled")
      ->check(CLI::Range(0.01, 86400.0));
  Opt(app, "plan-cache-bytes", f.plan_cache_bytes, "Memory for cached stream scripts");
  Opt(app, "plan-workers", f.plan_workers, "Plans computed at once")->check(CLI::Range(1, 256));
  Opt(app, "threads", f.threads, "CPU threads for GI at load time (0 = all)");
  Opt(app, "drain-seconds", f.drain_seconds, "On SIGTERM, seconds running streams get before cancellation")
      ->check(CLI::Range(0.0, 3600.0));
  Opt(app, "max-chunk-bytes", f.max_chunk_bytes, "Default largest message when a request gives none");
  Opt(app, "gi-views", f.gi_views, "Orbit views for the GI of plain PLY scenes")->check(CLI::Range(1, 1000));
  Opt(app, "gi-size", f.gi_size, "Square size of those views")->check(CLI::Range(16, 4096));
  Opt(app, "resource-quota-bytes", f.resource_quota_bytes, "gRPC ResourceQuota backstop (0: none)");
  Opt(app, "rescan-interval", f.rescan_interval,
      "Seconds between rescans of --scenes for added, changed and removed scenes (0: only on SIGHUP)")
      ->check(CLI::Range(0.0, 86400.0));
  Opt(app, "keepalive-time", f.keepalive_time, "Seconds between HTTP/2 keepalive pings to each client")
      ->check(CLI::Range(0.5, 86400.0));
  Opt(app, "keepalive-timeout", f.keepalive_timeout,
      "Seconds a keepalive ping may go unanswered before the connection and its streams are dropped")
      ->check(CLI::Range(0.5, 3600.0));
  Opt(app, "log-level", f.log_level, "trace, debug, info, warn, error");
  Opt(app, "tls-cert", f.tls_cert, "TLS: the server's PEM certificate chain (with --tls-key)");
  Opt(app, "tls-key", f.tls_key, "TLS: the PEM private key of --tls-cert");
  Opt(app, "tls-ca", f.tls_ca, "Mutual TLS: PEM CA bundle; clients must present a certificate it signed");
  Opt(app, "tokens-file", f.tokens_file,
      "Bearer tokens, one 'TOKEN SCENE[,SCENE...]' or 'TOKEN *' per line (or FLEXGS_TOKENS inline)");
  Opt(app, "max-request-bytes", f.max_request_bytes, "Largest request message accepted (RESOURCE_EXHAUSTED above)")
      ->check(CLI::Range(4 << 10, 64 << 20));
  Opt(app, "max-client-chunk-bytes", f.max_client_chunk_bytes,
      "Largest max_chunk_bytes a request may ask for (INVALID_ARGUMENT above)");
  Opt(app, "stream-rate", f.stream_rate, "New StreamScene calls per second per client address (0: unlimited)")
      ->check(CLI::Range(0.0, 1e6));
  Opt(app, "stream-burst", f.stream_burst, "New streams a client address may start at once after being idle")
      ->check(CLI::Range(1.0, 1e6));
  Opt(app, "max-streams-per-peer", f.max_streams_per_peer,
      "Concurrent StreamScene calls per client address (and token, with tokens), counted from the call's headers "
      "(0: no cap; behind a proxy every client has the proxy's address)")
      ->check(CLI::Range(0, 1 << 20));
  Opt(app, "max-streams-per-connection", f.max_streams_per_connection,
      "Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS)")
      ->check(CLI::Range(1, 1 << 20));
  Opt(app, "request-timeout", f.request_timeout,
      "Seconds from a call's headers to its complete request message (DEADLINE_EXCEEDED after)")
      ->check(CLI::Range(0.05, 3600.0));
  Opt(app, "rejection-log-rate", f.rejection_log_rate,
      "'stream rejected' log lines per second after a burst of 20; the rest are counted (0: log every one)")
      ->check(CLI::Range(0.0, 1e6));
  Opt(app, "yield-between-writes", f.yield_between_writes,
      "Start each write after a stream's first level from gRPC's executor, so new calls are taken and sent their "
      "first levels between running streams' messages (false: inline; less CPU per byte, but a burst of calls is "
      "served one stream after another)");
  Opt(app, "first-level-priority-ms", f.first_level_priority_ms,
      "A stream past its first level waits, up to this many ms per message and 5x in all, while streams admitted "
      "less than this long ago are still sending their first levels, so a burst of new clients gets first pictures "
      "before refinements (0: off)")
      ->check(CLI::Range(0, 10000));
  CLI11_PARSE(app, argc, argv);
  // Logs go to stderr: stdout carries only the machine-readable "listening on PORT".
  spdlog::set_default_logger(spdlog::stderr_color_mt("flexgs-server"));
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  google::protobuf::SetLogHandler(&flexgs::server::ProtobufLog);
  if (absl::Status st = flexgs::server::ValidateChunkLimits(f.max_chunk_bytes, f.max_client_chunk_bytes); !st.ok()) {
    std::cerr << st.message() << "\n";
    return 1;
  }
  return flexgs::server::Run(f);
}

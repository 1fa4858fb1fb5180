// MetricsHttpServer: the /metrics endpoint, a small HTTP/1.x server on one thread
// of its own that cannot be locked out by clients that connect and send nothing.
//
// - One poll() loop serves every connection; no connection ever blocks another.
// - A request must arrive complete within `request_timeout` of the connection being
//   accepted, and the response must be taken within `request_timeout` of being
//   ready; otherwise the connection is closed. Every response says
//   "Connection: close", so there is no keep-alive idle state.
// - At most `max_connections` connections are open: when another arrives, the
//   oldest one that has not yet sent a complete request and was accepted at least
//   `eviction_grace` ago is closed to make room, once the new one is accepted
//   (never for nobody). Without such a one, new
//   connections wait in the kernel's listen backlog (their requests can arrive
//   there) instead of being accepted and closed: a flood of idle connections then
//   cannot close a scrape between its connect and its request.
// - Requests: GET or HEAD of /metrics (a query string is ignored) -> 200 with the
//   Prometheus text format from `render`; other paths 404, other methods 405,
//   malformed 400, a request head over 8 KiB 431.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace flexgs::server {

class MetricsHttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // IPv4 or IPv6 literal ("::", "[::1]") or a name
    int port = 0;                    // 0: any free port
    int max_connections = 64;
    std::chrono::milliseconds request_timeout{5000};
    // Time a new connection has to send its request before a newer one may evict it
    // (at most request_timeout). Long enough for a client that sends its request
    // right after connecting, short enough to cycle idle connections.
    std::chrono::milliseconds eviction_grace{100};
  };
  struct Stats {
    uint64_t served = 0;     // 200 responses written completely
    uint64_t timed_out = 0;  // closed by the request timeout
    uint64_t evicted = 0;    // closed to make room for a new connection
  };

  MetricsHttpServer() = default;
  ~MetricsHttpServer();  // Stop()
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Binds, listens and starts the thread; returns the bound port. `render` is called
  // on the server's thread for every /metrics request.
  absl::StatusOr<int> Start(const Options& options, std::function<std::string()> render);
  // Closes every connection and joins the thread. Idempotent.
  void Stop();

  Stats stats() const;

 private:
  void Loop();

  Options options_;
  std::function<std::string()> render_;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // Stop() writes to [1] to end poll()
  std::thread thread_;
  std::atomic<uint64_t> served_{0}, timed_out_{0}, evicted_{0};
};

}  // namespace flexgs::server

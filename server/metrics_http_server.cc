#include "server/metrics_http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace flexgs::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxRequestHead = 8 << 10;
constexpr int kMaxAcceptsPerRound = 256;

struct Conn {
  int fd = -1;
  Clock::time_point evictable_from;  // accepted + the eviction grace
  Clock::time_point deadline;
  bool writing = false;
  bool ok_response = false;
  bool closed = false;
  std::string in;
  std::string out;
  size_t sent = 0;
};

std::string Response(int code, const char* reason, const std::string& body, bool head,
                     const char* content_type = "text/plain; charset=utf-8", const char* extra = "") {
  std::string r = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                               "\r\nContent-Length: ", body.size(), "\r\n", extra, "Connection: close\r\n\r\n");
  if (!head) r += body;
  return r;
}

// Where the request head ends (index past the blank line), or npos.
size_t HeadEnd(const std::string& in) {
  size_t crlf = in.find("\r\n\r\n");
  size_t lf = in.find("\n\n");
  if (crlf != std::string::npos && (lf == std::string::npos || crlf + 2 <= lf)) return crlf + 4;
  if (lf != std::string::npos) return lf + 2;
  return std::string::npos;
}

void Answer(Conn& c, const std::function<std::string()>& render) {
  const size_t eol = c.in.find('\n');
  std::string line = c.in.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const size_t s1 = line.find(' ');
  const size_t s2 = s1 == std::string::npos ? std::string::npos : line.find(' ', s1 + 1);
  if (s2 == std::string::npos || line.compare(s2 + 1, 7, "HTTP/1.") != 0) {
    c.out = Response(400, "Bad Request", "bad request\n", false);
    return;
  }
  const std::string method = line.substr(0, s1);
  std::string path = line.substr(s1 + 1, s2 - s1 - 1);
  path = path.substr(0, path.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    c.out = Response(405, "Method Not Allowed", "only GET and HEAD\n", false, "text/plain; charset=utf-8",
                     "Allow: GET, HEAD\r\n");
  } else if (path != "/metrics") {
    c.out = Response(404, "Not Found", "metrics are at /metrics\n", head);
  } else {
    c.out = Response(200, "OK", render(), head, "text/plain; version=0.0.4; charset=utf-8");
    c.ok_response = true;
  }
}

void CloseConn(Conn& c) {
  if (c.closed) return;
  // Read what is left so that close() does not send a reset that could make the
  // peer drop a response it has not read yet.
  char buf[1024];
  while (recv(c.fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {}
  close(c.fd);
  c.closed = true;
}

}  // namespace

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::StatusOr<int> MetricsHttpServer::Start(const Options& options, std::function<std::string()> render) {
  Stop();
  options_ = options;
  render_ = std::move(render);
  std::string host = options.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options.port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot serve metrics on ", options.host, ":", options.port, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
      why = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", options.host, ":", options.port, ": ", why));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (pipe2(wake_fd_, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("metrics server: pipe: ", std::strerror(errno)));
  }
  listen_fd_ = fd;
  thread_ = std::thread([this] { Loop(); });
  return bound_port;
}

void MetricsHttpServer::Stop() {
  if (thread_.joinable()) {
    const char byte = 1;
    (void)!write(wake_fd_[1], &byte, 1);
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_fd_[0], &wake_fd_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

MetricsHttpServer::Stats MetricsHttpServer::stats() const {
  return Stats{served_.load(), timed_out_.load(), evicted_.load()};
}

namespace {

// Reads what `c` has sent; once its request head is complete (or too long), prepares
// the response and switches it to writing. Closes it when the peer went away first.
void ReadRequest(Conn& c, Clock::time_point now, std::chrono::milliseconds timeout,
                 const std::function<std::string()>& render) {
  char buf[4096];
  bool eof = false;
  for (;;) {
    const ssize_t got = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got > 0) {
      c.in.append(buf, static_cast<size_t>(got));
      if (c.in.size() > kMaxRequestHead) break;
      continue;
    }
    if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof = true;
    break;
  }
  const size_t head_end = HeadEnd(c.in);
  if (head_end != std::string::npos && head_end <= kMaxRequestHead) {
    Answer(c, render);
  } else if (c.in.size() > kMaxRequestHead) {
    c.out = Response(431, "Request Header Fields Too Large", "request head over 8 KiB\n", false);
  } else if (eof) {
    CloseConn(c);
    return;
  }
  if (!c.out.empty()) {
    c.writing = true;
    c.deadline = now + timeout;
  }
}

// Writes what the socket takes; closes the connection once the response is out (true
// when that response was a 200).
bool WriteResponse(Conn& c) {
  while (c.sent < c.out.size()) {
    const ssize_t put = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (put > 0) {
      c.sent += static_cast<size_t>(put);
      continue;
    }
    if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
    CloseConn(c);  // the peer went away
    return false;
  }
  shutdown(c.fd, SHUT_WR);
  CloseConn(c);
  return c.ok_response;
}

}  // namespace

void MetricsHttpServer::Loop() {
  const auto timeout = std::max(options_.request_timeout, std::chrono::milliseconds(1));
  const auto grace = std::clamp(options_.eviction_grace, std::chrono::milliseconds(0), timeout);
  const size_t max_conns = static_cast<size_t>(std::max(1, options_.max_connections));
  std::list<Conn> conns;  // in accept order: the oldest first
  std::vector<pollfd> fds;
  std::vector<std::list<Conn>::iterator> polled;
  // The oldest connection that may be closed to make room: still without a complete
  // request and past its grace.
  const auto victim_at = [&](Clock::time_point now) {
    return std::find_if(conns.begin(), conns.end(),
                        [now](const Conn& c) { return !c.writing && now >= c.evictable_from; });
  };
  for (;;) {
    fds.clear();
    polled.clear();
    Clock::time_point now = Clock::now();
    Clock::time_point next = now + std::chrono::seconds(1);
    // At the cap with no connection to close, new ones wait in the listen backlog
    // (where their requests can arrive) until a slot frees or a grace ends.
    const bool room = conns.size() < max_conns || victim_at(now) != conns.end();
    fds.push_back({wake_fd_[0], POLLIN, 0});
    fds.push_back({listen_fd_, static_cast<short>(room ? POLLIN : 0), 0});
    for (auto it = conns.begin(); it != conns.end(); ++it) {
      fds.push_back({it->fd, static_cast<short>(it->writing ? POLLOUT : POLLIN), 0});
      polled.push_back(it);
      next = std::min(next, it->deadline);
      if (!room && !it->writing) next = std::min(next, it->evictable_from);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
    const int n = poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(wait, 0, 1000)));
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;  // Stop()
    now = Clock::now();

    for (size_t i = 0; n > 0 && i < polled.size(); ++i) {
      Conn& c = *polled[i];
      if (fds[i + 2].revents == 0) continue;
      if (!c.writing) ReadRequest(c, now, timeout, render_);
      if (!c.closed && c.writing && WriteResponse(c)) served_.fetch_add(1);
    }

    now = Clock::now();
    for (Conn& c : conns) {
      if (!c.closed && now >= c.deadline) {
        CloseConn(c);
        timed_out_.fetch_add(1);
      }
    }
    conns.remove_if([](const Conn& c) { return c.closed; });

    // Accept first, then make room: a connection is evicted only for one that is
    // really waiting. Not tied to this round's poll of the listen socket, because a
    // round woken by a grace ending must accept what waited in the backlog.
    for (int k = 0; k < kMaxAcceptsPerRound; ++k) {
      if (conns.size() >= max_conns && victim_at(now) == conns.end()) break;  // the rest wait
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;  // EAGAIN, or a connection that went away before accept
      while (conns.size() >= max_conns) {
        // The oldest connection past its grace still without a complete request goes
        // -- unless its request has arrived since the last poll: then it is answered.
        auto victim = victim_at(now);
        if (victim == conns.end()) break;
        ReadRequest(*victim, now, timeout, render_);
        if (!victim->closed && victim->writing) {
          if (WriteResponse(*victim)) served_.fetch_add(1);
          if (victim->closed) conns.erase(victim);
          continue;
        }
        if (!victim->closed) {
          CloseConn(*victim);
          evicted_.fetch_add(1);
        }
        conns.erase(victim);
      }
      if (conns.size() >= max_conns) {
        close(fd);  // every candidate was being answered: rare, and the cap holds
        continue;
      }
      Conn c;
      c.fd = fd;
      c.evictable_from = now + grace;
      c.deadline = now + timeout;
      conns.push_back(std::move(c));
    }
  }
  for (Conn& c : conns) CloseConn(c);
}

}  // namespace flexgs::server

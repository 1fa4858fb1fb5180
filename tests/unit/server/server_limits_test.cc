// Server security and request limits: the bearer-token authenticator, the per-peer
// stream rate limiter (fake clock), the per-peer stream cap, the chunk-size and string
// limits, escaping of client strings for logs, the TLS flag checks, the /metrics HTTP
// server against idle connections, and SceneService with all of them over a real
// in-process gRPC server.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "client/channel_credentials.h"
#include "flexgs/v1/scene_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/log_escape.h"
#include "server/metrics_http_server.h"
#include "server/peer_rate_limiter.h"
#include "server/plan_cache.h"
#include "server/scene_registry.h"
#include "server/scene_service.h"
#include "server/server_credentials.h"
#include "server/server_metrics.h"
#include "server/stream_request.h"
#include "server/token_authenticator.h"
#include "spdlog/spdlog.h"
#include "stream/resume_token.h"
#include "tests/support/test_models.h"

namespace flexgs::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kTokenA[] = "token-for-scene-a-0123456789";
constexpr char kTokenAll[] = "token-for-all-scenes-abcdefgh";

// A directory for this process's files, removed at exit.
fs::path TempDir() {
  // Never destroyed: the atexit handler runs after static destructors would have.
  static const fs::path* dir = [] {
    auto* d =
        new fs::path(fs::temp_directory_path() / "flexgs-tests" / ("server_limits_test-" + std::to_string(::getpid())));
    fs::create_directories(*d);
    std::atexit([] { fs::remove_all(TempDir()); });
    return d;
  }();
  return *dir;
}

// ---------------------------------------------------------------------------
// TokenAuthenticator

TEST(TokenAuthenticatorTest, FileGrantsScenesOrEverything) {
  auto auth = TokenAuthenticator::ParseFile(
      absl::StrCat("# clients\n\n", kTokenA, " a\n  ", kTokenAll, "\t*   \n# end\nkiosk-token-xyz-0000 a,b,c\n"),
      "tokens.txt");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->size(), 3u);
  auto a = auth->Authenticate(absl::StrCat("Bearer ", kTokenA));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE((*a)->Allows("a"));
  EXPECT_FALSE((*a)->Allows("b"));
  auto all = auth->Authenticate(absl::StrCat("bearer  ", kTokenAll, " "));  // scheme is case-insensitive
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE((*all)->Allows("anything"));
  auto kiosk = auth->Authenticate("BEARER kiosk-token-xyz-0000");
  ASSERT_TRUE(kiosk.ok()) << kiosk.status();
  EXPECT_TRUE((*kiosk)->Allows("c"));
  EXPECT_FALSE((*kiosk)->Allows("d"));
}

TEST(TokenAuthenticatorTest, InlineEntriesAreSeparatedBySemicolonsOrNewlines) {
  auto auth =
      TokenAuthenticator::ParseInline(absl::StrCat(kTokenA, " a; ", kTokenAll, " *\nthird-token-0123456789 b;"));
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->size(), 3u);
  auto bad = TokenAuthenticator::ParseInline(absl::StrCat(kTokenA, " a; short b"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), StartsWith("FLEXGS_TOKENS entry 2: token is 5 characters"));
}

TEST(TokenAuthenticatorTest, BadLinesNameFileAndLineButNeverTheToken) {
  const std::string good = absl::StrCat(kTokenA, " a\n");
  struct Case {
    std::string line;
    std::string secret;  // must not appear in the message
    std::string want;
  };
  const std::vector<Case> cases = {
      {"shorttoken a", "shorttoken", "tokens.txt:2: token is 10 characters; at least 16"},
      {"secret-secret-secret-1", "secret-secret-secret-1", "tokens.txt:2: expected 'TOKEN SCENE[,SCENE...]'"},
      {"secret-secret-secret-2 a, b", "secret-secret-secret-2", "tokens.txt:2: expected"},
      {"secret-secret-secret-3 a,,b", "secret-secret-secret-3", "tokens.txt:2: empty scene id"},
      {"secret-secret-secret-4 a,*", "secret-secret-secret-4", "tokens.txt:2: '*' must stand alone"},
      {"secret:secret-secret-5 a", "secret:secret-secret-5", "tokens.txt:2: token may only contain"},
      {"secret-secret=secret-6 a", "secret-secret=secret-6", "tokens.txt:2: token may only contain"},
      {absl::StrCat(kTokenA, " b"), kTokenA, "tokens.txt:2: the same token as line 1"},
  };
  for (const Case& c : cases) {
    auto auth = TokenAuthenticator::ParseFile(good + c.line + "\n", "tokens.txt");
    ASSERT_FALSE(auth.ok()) << c.line;
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_THAT(std::string(auth.status().message()), StartsWith(c.want)) << c.line;
    EXPECT_THAT(std::string(auth.status().message()), Not(HasSubstr(c.secret))) << c.line;
  }
  auto empty = TokenAuthenticator::ParseFile("# nothing\n\n", "tokens.txt");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "tokens.txt: no tokens");
}

TEST(TokenAuthenticatorTest, MissingMalformedAndUnknownTokensAreUnauthenticated) {
  auto auth = TokenAuthenticator::ParseFile(absl::StrCat(kTokenA, " a\n"), "t");
  ASSERT_TRUE(auth.ok());
  const std::string wrong = "token-for-scene-a-0123456780";  // one character off
  // Named, so that they outlive the views below (temporaries would dangle: ASan).
  const std::string basic = absl::StrCat("Basic ", kTokenA), bearer_wrong = "Bearer " + wrong;
  for (const auto& header : std::vector<std::optional<std::string_view>>{std::nullopt, "", "Bearer", "Bearer   ",
                                                                         kTokenA, basic, bearer_wrong}) {
    auto r = auth->Authenticate(header);
    ASSERT_FALSE(r.ok()) << (header ? *header : "(none)");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(std::string(r.status().message()), Not(HasSubstr(wrong)));
  }
}

TEST(TokenAuthenticatorTest, PermissionMessageIsTheSameForEveryScene) {
  TokenGrant grant;
  grant.scenes = {"a"};
  EXPECT_TRUE(TokenAuthenticator::CheckScene(grant, "a").ok());
  const absl::Status existing = TokenAuthenticator::CheckScene(grant, "b");
  const absl::Status missing = TokenAuthenticator::CheckScene(grant, "no-such-scene");
  EXPECT_EQ(existing.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(existing, missing);
}

TEST(TokenAuthenticatorTest, LoadsFromAFileOrTheEnvironmentButNotBoth) {
  const std::string path = (TempDir() / "tokens.txt").string();
  ASSERT_TRUE(WriteFileAtomically(path, absl::StrCat(kTokenAll, " *\n")).ok());
  auto none = LoadTokenAuthenticator("", nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
  auto empty_env = LoadTokenAuthenticator("", "");
  ASSERT_TRUE(empty_env.ok());
  EXPECT_EQ(*empty_env, nullptr);
  auto from_file = LoadTokenAuthenticator(path, nullptr);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ((*from_file)->size(), 1u);
  auto from_env = LoadTokenAuthenticator("", "abcdefghijklmnopqrstuvwxyz a,b");
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ((*from_env)->size(), 1u);
  auto both = LoadTokenAuthenticator(path, "abcdefghijklmnopqrstuvwxyz a");
  EXPECT_EQ(both.status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = LoadTokenAuthenticator(path + ".missing", nullptr);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("tokens file"));
}

// ---------------------------------------------------------------------------
// PeerRateLimiter

struct FakeClock {
  PeerRateLimiter::Clock::time_point t{std::chrono::hours(1)};
  std::function<PeerRateLimiter::Clock::time_point()> Fn() {
    return [this] { return t; };
  }
};

TEST(PeerRateLimiterTest, BurstThenSteadyRatePerPeer) {
  FakeClock clock;
  PeerRateLimiter limiter(2.0, 3.0, 100, clock.Fn());
  std::chrono::milliseconds retry{0};
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.1", &retry)) << i;
  EXPECT_FALSE(limiter.TryAcquire("ipv4:10.0.0.1", &retry));
  EXPECT_EQ(retry.count(), 500);                             // one token at 2/s
  EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.2", &retry));  // other peers have their own bucket
  clock.t += std::chrono::milliseconds(400);
  EXPECT_FALSE(limiter.TryAcquire("ipv4:10.0.0.1", &retry));
  EXPECT_EQ(retry.count(), 100);
  clock.t += std::chrono::milliseconds(100);
  EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.1", &retry));
  EXPECT_FALSE(limiter.TryAcquire("ipv4:10.0.0.1", &retry));
  // Over a long run the admitted rate is the configured one: 10 s -> 20 streams.
  int admitted = 0;
  for (int ms = 0; ms < 10'000; ms += 10) {
    clock.t += std::chrono::milliseconds(10);
    while (limiter.TryAcquire("ipv4:10.0.0.1", &retry)) ++admitted;
  }
  EXPECT_EQ(admitted, 20);
  // An idle peer gets the full burst back, never more.
  clock.t += std::chrono::hours(1);
  admitted = 0;
  while (limiter.TryAcquire("ipv4:10.0.0.1", &retry)) ++admitted;
  EXPECT_EQ(admitted, 3);
}

TEST(PeerRateLimiterTest, IdlePeersAreEvictedAndTheMapIsBounded) {
  FakeClock clock;
  PeerRateLimiter limiter(1.0, 2.0, /*max_peers=*/4, clock.Fn());
  std::chrono::milliseconds retry{0};
  for (int p = 0; p < 4; ++p) EXPECT_TRUE(limiter.TryAcquire("peer" + std::to_string(p), &retry));
  EXPECT_EQ(limiter.tracked_peers(), 4u);
  // peer3 (most recently used) empties its bucket; a fifth peer pushes out peer0, the
  // least recently used, and peer3 keeps its state.
  EXPECT_TRUE(limiter.TryAcquire("peer3", &retry));
  EXPECT_FALSE(limiter.TryAcquire("peer3", &retry));
  EXPECT_TRUE(limiter.TryAcquire("peer4", &retry));
  EXPECT_EQ(limiter.tracked_peers(), 4u);
  EXPECT_FALSE(limiter.TryAcquire("peer3", &retry));
  for (int i = 0; i < 1000; ++i) limiter.TryAcquire("flood" + std::to_string(i), &retry);
  EXPECT_EQ(limiter.tracked_peers(), 4u);
  // After burst / rate = 2 s every bucket is full again, so all are dropped.
  clock.t += std::chrono::seconds(2);
  EXPECT_TRUE(limiter.TryAcquire("peer3", &retry));
  EXPECT_EQ(limiter.tracked_peers(), 1u);
}

TEST(PeerRateLimiterTest, PeerAddressDropsThePort) {
  EXPECT_EQ(PeerAddress("ipv4:127.0.0.1:54321"), "ipv4:127.0.0.1");
  EXPECT_EQ(PeerAddress("ipv6:[::1]:50051"), "ipv6:[::1]");
  EXPECT_EQ(PeerAddress("ipv6:%5B::1%5D:50051"), "ipv6:[::1]");
  EXPECT_EQ(PeerAddress("ipv6:[fe80::1]"), "ipv6:[fe80::1]");
  EXPECT_EQ(PeerAddress("unix:/tmp/sock"), "unix:/tmp/sock");
  EXPECT_EQ(PeerAddress(""), "");
}

TEST(PeerStreamLimiterTest, CapsEachKeyAndForgetsIdleOnes) {
  PeerStreamLimiter limiter(2);
  EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.1"));
  EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.1"));
  EXPECT_FALSE(limiter.TryAcquire("ipv4:10.0.0.1"));
  EXPECT_EQ(limiter.count("ipv4:10.0.0.1"), 2);
  EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.1 token@1"));  // another token, same address
  EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.2"));
  limiter.Release("ipv4:10.0.0.1");
  EXPECT_TRUE(limiter.TryAcquire("ipv4:10.0.0.1"));
  EXPECT_EQ(limiter.tracked_peers(), 3u);
  for (const char* key : {"ipv4:10.0.0.1", "ipv4:10.0.0.1", "ipv4:10.0.0.1 token@1", "ipv4:10.0.0.2"}) {
    limiter.Release(key);
  }
  EXPECT_EQ(limiter.tracked_peers(), 0u);
  limiter.Release("never-seen");  // harmless
  EXPECT_EQ(limiter.tracked_peers(), 0u);
}

// ---------------------------------------------------------------------------
// Client strings in logs and status messages

TEST(LogEscapeTest, ControlBytesAreEscapedAndLongStringsCut) {
  EXPECT_EQ(EscapeClientString("guitar_v2-1.flexgs"), "guitar_v2-1.flexgs");
  EXPECT_EQ(EscapeClientString("a\nb"), "a\\nb");
  EXPECT_EQ(EscapeClientString("a\\nb"), "a\\\\nb");  // a literal backslash stays distinguishable
  EXPECT_EQ(EscapeClientString(std::string("x\n[info] SERVING\r\t\x1b[2J\0y", 24)),
            "x\\n[info] SERVING\\r\\t\\x1b[2J\\x00y");
  EXPECT_EQ(EscapeClientString(std::string("x\n[info] SERVING\x1b\x00\x7f\xc3\xa9", 21)),
            "x\\n[info] SERVING\\x1b\\x00\\x7f\\xc3\\xa9");
  EXPECT_EQ(EscapeClientString(std::string("a\nb\x1b\x00\xff", 6)), "a\\nb\\x1b\\x00\\xff");
  const std::string long_id(60000, 'A');
  const std::string cut = EscapeClientString(long_id);
  EXPECT_EQ(cut, std::string(kClientStringPrefixBytes, 'A') + "...(60000 bytes)");
  // Worst case: every kept byte escaped to four characters, plus the length.
  const std::string worst = EscapeClientString(std::string(100000, '\x01'));
  EXPECT_LE(worst.size(), 4 * kClientStringPrefixBytes + 24);
  EXPECT_EQ(worst.find_first_of(std::string("\n\r\0\x1b", 4)), std::string::npos);
  EXPECT_EQ(EscapeClientString("abcdef", 3), "abc...(6 bytes)");
  EXPECT_EQ(EscapeClientString(""), "");
}

TEST(LogEscapeTest, ThrottleAllowsABurstThenTheRateAndCountsTheRest) {
  FakeClock clock;
  LogThrottle throttle(2.0, 3.0, clock.Fn());
  uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(throttle.Allow(&suppressed)) << i;
    EXPECT_EQ(suppressed, 0u);
  }
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(throttle.Allow(&suppressed));
  clock.t += std::chrono::milliseconds(500);  // one line at 2/s
  EXPECT_TRUE(throttle.Allow(&suppressed));
  EXPECT_EQ(suppressed, 10u);  // what was left out is reported with the next line
  EXPECT_FALSE(throttle.Allow(&suppressed));
  clock.t += std::chrono::hours(1);  // never more than the burst
  int allowed = 0;
  while (throttle.Allow(&suppressed)) ++allowed;
  EXPECT_EQ(allowed, 3);
  LogThrottle off(0, 1, clock.Fn());
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(off.Allow(&suppressed));
}

// ---------------------------------------------------------------------------
// /metrics: idle and half-open connections cannot lock it out

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

// Sends `request` on a new connection; returns the whole response (empty after 2 s).
std::string Fetch(int port, const std::string& request) {
  const int fd = Connect(port);
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// True when the server closed `fd` within `ms` milliseconds.
bool ClosedWithin(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

TEST(MetricsHttpServerTest, ServesWhileIdleConnectionsAreEvictedAndTimedOut) {
  MetricsHttpServer server;
  MetricsHttpServer::Options options;
  options.max_connections = 4;
  options.request_timeout = std::chrono::milliseconds(800);
  options.eviction_grace = std::chrono::milliseconds(20);
  auto port = server.Start(options, [] { return std::string("flexgs_up 1\n"); });
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  // Twice the cap of silent and half-sent connections.
  std::vector<int> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(Connect(*port));
    if (i % 2 == 1) {
      ASSERT_GT(::send(held.back(), "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL), 0);
    }
  }
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string r = Fetch(*port, get);
    EXPECT_THAT(r, StartsWith("HTTP/1.1 200 OK\r\n")) << i;
    EXPECT_THAT(r, HasSubstr("Content-Type: text/plain; version=0.0.4"));
    EXPECT_THAT(r, HasSubstr("\r\n\r\nflexgs_up 1\n"));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
  }
  EXPECT_GE(server.stats().evicted, 4u);  // the oldest idle ones made room
  // The rest are closed by the request timeout.
  int closed = 0;
  for (int fd : held) closed += ClosedWithin(fd, 3000) ? 1 : 0;
  EXPECT_EQ(closed, 8);
  EXPECT_GE(server.stats().timed_out, 1u);
  for (int fd : held) ::close(fd);
  EXPECT_EQ(server.stats().served, 3u);
  // Other requests.
  EXPECT_THAT(Fetch(*port, "GET /other HTTP/1.0\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(Fetch(*port, "POST /metrics HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(Fetch(*port, "garbage\r\n\r\n"), StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(Fetch(*port, "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'x') + "\r\n\r\n"),
              StartsWith("HTTP/1.1 431"));
  const std::string head = Fetch(*port, "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(head, Not(HasSubstr("flexgs_up")));
  server.Stop();
  server.Stop();  // idempotent
}

// Room is made for a connection that is waiting, never ahead of one: events on open
// connections do not evict an idle one past its grace.
TEST(MetricsHttpServerTest, NothingIsEvictedWithoutANewcomer) {
  MetricsHttpServer server;
  MetricsHttpServer::Options options;
  options.max_connections = 2;
  options.request_timeout = std::chrono::milliseconds(8000);
  options.eviction_grace = std::chrono::milliseconds(10);
  auto port = server.Start(options, [] { return std::string("flexgs_up 1\n"); });
  ASSERT_TRUE(port.ok()) << port.status();
  const int idle = Connect(*port);
  const int trickle = Connect(*port);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // both past their grace
  for (const char* part : {"GET /met", "rics HTTP/1.1\r\n", "Host: x\r\n"}) {
    ASSERT_GT(::send(trickle, part, std::strlen(part), MSG_NOSIGNAL), 0);  // a loop round each
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  EXPECT_FALSE(ClosedWithin(idle, 100));
  EXPECT_FALSE(ClosedWithin(trickle, 1));
  EXPECT_EQ(server.stats().evicted, 0u);
  ::close(idle);
  ::close(trickle);
}

// A flood of idle connections arriving between a client's connect and its request
// must not close that client's connection: it is not evicted within its grace, and
// the flood waits in the listen backlog meanwhile.
TEST(MetricsHttpServerTest, AFloodDoesNotEvictAConnectionWithinItsGrace) {
  MetricsHttpServer server;
  MetricsHttpServer::Options options;
  options.max_connections = 4;
  options.request_timeout = std::chrono::milliseconds(8000);
  options.eviction_grace = std::chrono::milliseconds(3000);
  auto port = server.Start(options, [] { return std::string("flexgs_up 1\n"); });
  ASSERT_TRUE(port.ok()) << port.status();
  const int scrape = Connect(*port);  // first in the backlog, so accepted first
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::vector<int> flood;
  for (int i = 0; i < 12; ++i) flood.push_back(Connect(*port));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the old server evicted here
  const std::string get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(scrape, get.data(), get.size(), MSG_NOSIGNAL), static_cast<ssize_t>(get.size()));
  std::string response;
  char buf[4096];
  for (;;) {
    pollfd p{scrape, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) break;
    const ssize_t got = ::recv(scrape, buf, sizeof buf, 0);
    if (got <= 0) break;
    response.append(buf, static_cast<size_t>(got));
  }
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  // The server counts a response after closing its connection: wait for the count.
  for (int i = 0; i < 200 && server.stats().served == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server.stats().served, 1u);
  EXPECT_EQ(server.stats().evicted, 0u);
  ::close(scrape);
  for (int fd : flood) ::close(fd);
}

// ---------------------------------------------------------------------------
// Chunk-size limits and the scenes a request names

TEST(ChunkLimitTest, ServerFlagsMustBeInTheCodecRangeAndConsistent) {
  EXPECT_TRUE(ValidateChunkLimits(256 << 10, kMaxChunkBytes).ok());
  EXPECT_TRUE(ValidateChunkLimits(kMinChunkBytes, kMinChunkBytes).ok());
  auto low = ValidateChunkLimits(256 << 10, kMinChunkBytes - 1);
  EXPECT_EQ(low.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(low.message()), HasSubstr("--max-client-chunk-bytes 4095 is outside [4096, 4194304]"));
  auto high = ValidateChunkLimits(kMaxChunkBytes + 1, kMaxChunkBytes);
  EXPECT_THAT(std::string(high.message()), HasSubstr("--max-chunk-bytes 4194305 is outside"));
  auto inverted = ValidateChunkLimits(128 << 10, 64 << 10);
  EXPECT_EQ(inverted.message(), "--max-chunk-bytes 131072 is above --max-client-chunk-bytes 65536");
}

TEST(ChunkLimitTest, RequestsAboveTheLimitAreInvalidAndNameIt) {
  EXPECT_TRUE(CheckClientChunkBytes(0, 65536).ok());  // 0: the server's default
  EXPECT_TRUE(CheckClientChunkBytes(65536, 65536).ok());
  const absl::Status over = CheckClientChunkBytes(65537, 65536);
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(over.message()),
              HasSubstr("max_chunk_bytes 65537 is above this server's limit of 65536 bytes"));
}

TEST(ChunkLimitTest, ScenesNamedByARequestIncludeTheResumeTokens) {
  v1::StreamSceneRequest r;
  EXPECT_TRUE(SceneIdsNamedBy(r).empty());
  r.set_scene_id("a");
  EXPECT_EQ(SceneIdsNamedBy(r), std::vector<std::string>{"a"});
  StreamParams p;
  p.scene_id = "b";
  p.model_digest = std::string(64, '0');
  p.top_ratio = 0.5;
  p.ladder = {0.5};
  p.max_chunk_bytes = 65536;
  r.set_resume_token(EncodeResumeToken(p));
  EXPECT_EQ(SceneIdsNamedBy(r), (std::vector<std::string>{"a", "b"}));
  r.clear_scene_id();
  EXPECT_EQ(SceneIdsNamedBy(r), std::vector<std::string>{"b"});
  r.set_resume_token("garbage");  // refused later as INVALID_ARGUMENT, before any lookup
  EXPECT_TRUE(SceneIdsNamedBy(r).empty());
}

// ---------------------------------------------------------------------------
// TLS flag checks (valid certificates are exercised by tests/process/server_security_test.sh)

TEST(TlsFilesTest, BadCombinationsAndFilesAreClearErrors) {
  const fs::path dir = TempDir();
  const std::string not_pem = (dir / "not.pem").string();
  ASSERT_TRUE(WriteFileAtomically(not_pem, "hello\n").ok());
  const std::string fake_pem = (dir / "fake.pem").string();
  ASSERT_TRUE(WriteFileAtomically(fake_pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").ok());

  auto plain = MakeServerCredentials({});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->mode, "plaintext");
  EXPECT_EQ(MakeServerCredentials({fake_pem, "", ""}).status().message(), "TLS needs both --tls-cert and --tls-key");
  EXPECT_THAT(std::string(MakeServerCredentials({"", "", fake_pem}).status().message()), HasSubstr("--tls-ca"));
  auto missing = MakeServerCredentials({(dir / "nope.pem").string(), fake_pem, ""});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), StartsWith("--tls-cert: "));
  auto garbage = MakeServerCredentials({fake_pem, fake_pem, ""});
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(garbage.status().message()), HasSubstr("holds no PEM certificate"));

  EXPECT_TRUE(client::MakeChannelCredentials({}).ok());
  EXPECT_EQ(client::MakeChannelCredentials({"", fake_pem, ""}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client::MakeChannelCredentials({"", fake_pem, fake_pem}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(client::MakeChannelCredentials({not_pem, "", ""}).status().message()),
              HasSubstr("is not a PEM file"));
  EXPECT_TRUE(client::MakeChannelCredentials({fake_pem, "", ""}).ok());

  const std::string token_file = (dir / "token").string();
  ASSERT_TRUE(WriteFileAtomically(token_file, absl::StrCat(kTokenA, "\r\n")).ok());
  auto token = client::ReadBearerToken(token_file);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, kTokenA);
  ASSERT_TRUE(WriteFileAtomically(token_file, "two words\n").ok());
  EXPECT_EQ(client::ReadBearerToken(token_file).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// SceneService with authentication, a stream rate and a chunk limit

const SceneRegistry& Registry() {
  static SceneRegistry* registry = [] {
    spdlog::set_level(spdlog::level::warn);
    auto* r = new SceneRegistry;
    for (const char* id : {"a", "b"}) {
      ElasticModel m = ::flexgs::testing::HeuristicTestModel(2000, id[0], 1);
      m.digest = std::string(64, id[0] == 'a' ? '1' : '2');
      EXPECT_TRUE(r->Add(id, "", std::move(m)).ok());
    }
    return r;
  }();
  return *registry;
}

class SecureServer {
 public:
  explicit SecureServer(SceneServiceOptions options) {
    cache_ = std::make_unique<PlanCache>(PlanCache::Options{}, PlanCache::Hooks{});
    service_ = std::make_unique<SceneService>(&Registry(), cache_.get(), &metrics_, options);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    service_->SetReady(true);
    server_->GetHealthCheckService()->SetServingStatus("", true);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
    stub_ = v1::SceneService::NewStub(channel_);
  }
  ~SecureServer() {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
  }

  v1::SceneService::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  int port() const { return port_; }
  ServerMetrics& metrics() { return metrics_; }

 private:
  ServerMetrics metrics_;
  std::unique_ptr<PlanCache> cache_;
  std::unique_ptr<SceneService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SceneService::Stub> stub_;
  int port_ = 0;
};

void Authorize(grpc::ClientContext& ctx, const std::string& token) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
}

grpc::Status GetScene(SecureServer& s, const std::string& token, const std::string& scene) {
  grpc::ClientContext ctx;
  Authorize(ctx, token);
  v1::GetSceneRequest request;
  request.set_scene_id(scene);
  v1::SceneInfo info;
  return s.stub().GetScene(&ctx, request, &info);
}

struct StreamOutcome {
  grpc::Status status;
  size_t messages = 0;
  std::string resume_token;
  std::string retry_after;
};

StreamOutcome Stream(SecureServer& s, const std::string& token, const v1::StreamSceneRequest& request) {
  grpc::ClientContext ctx;
  Authorize(ctx, token);
  auto reader = s.stub().StreamScene(&ctx, request);
  StreamOutcome out;
  v1::StreamChunk chunk;
  while (reader->Read(&chunk)) {
    if (out.messages++ == 0) {
      v1::StreamHeader header;
      if (header.ParseFromString(chunk.payload())) out.resume_token = header.resume_token();
    }
  }
  out.status = reader->Finish();
  auto it = ctx.GetServerTrailingMetadata().find("flexgs-retry-after-ms");
  if (it != ctx.GetServerTrailingMetadata().end()) out.retry_after = std::string(it->second.data(), it->second.size());
  return out;
}

v1::StreamSceneRequest Request(const std::string& scene, uint32_t max_chunk_bytes = 0) {
  v1::StreamSceneRequest r;
  r.set_scene_id(scene);
  r.set_ratio(0.1);
  r.set_max_chunk_bytes(max_chunk_bytes);
  return r;
}

std::shared_ptr<const TokenAuthenticator> Tokens() {
  auto auth = TokenAuthenticator::ParseFile(absl::StrCat(kTokenA, " a\n", kTokenAll, " *\n"), "tokens");
  EXPECT_TRUE(auth.ok()) << auth.status();
  return std::make_shared<const TokenAuthenticator>(*std::move(auth));
}

TEST(SecureSceneServiceTest, TokensGateEveryRpcWithoutRevealingWhichScenesExist) {
  SceneServiceOptions options;
  options.authenticator = Tokens();
  SecureServer server(options);

  // ListScenes: a token sees only its scenes.
  for (const auto& [token, want] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{{kTokenA, {"a"}}, {kTokenAll, {"a", "b"}}}) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::ListScenesResponse list;
    ASSERT_TRUE(server.stub().ListScenes(&ctx, {}, &list).ok());
    std::vector<std::string> ids;
    for (const auto& s : list.scenes()) ids.push_back(s.scene_id());
    EXPECT_EQ(ids, want);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx, "");
    v1::ListScenesResponse list;
    EXPECT_EQ(server.stub().ListScenes(&ctx, {}, &list).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  // GetScene
  EXPECT_TRUE(GetScene(server, kTokenA, "a").ok());
  EXPECT_EQ(GetScene(server, "", "a").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetScene(server, "not-a-known-token-000000", "a").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const grpc::Status denied_existing = GetScene(server, kTokenA, "b");
  const grpc::Status denied_missing = GetScene(server, kTokenA, "no-such-scene");
  EXPECT_EQ(denied_existing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied_missing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied_existing.error_message(), denied_missing.error_message());
  EXPECT_EQ(GetScene(server, kTokenAll, "no-such-scene").error_code(), grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext ctx;  // two authorization entries are refused, not guessed between
    Authorize(ctx, kTokenAll);
    ctx.AddMetadata("authorization", std::string("Bearer ") + kTokenA);
    v1::GetSceneRequest request;
    request.set_scene_id("a");
    v1::SceneInfo info;
    EXPECT_EQ(server.stub().GetScene(&ctx, request, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  // StreamScene, including a resume token for a scene the token may not read.
  const StreamOutcome ok = Stream(server, kTokenA, Request("a"));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_GT(ok.messages, 2u);
  EXPECT_EQ(Stream(server, "", Request("a")).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const StreamOutcome s_existing = Stream(server, kTokenA, Request("b"));
  const StreamOutcome s_missing = Stream(server, kTokenA, Request("no-such-scene"));
  EXPECT_EQ(s_existing.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s_missing.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s_existing.status.error_message(), s_missing.status.error_message());
  EXPECT_EQ(s_existing.status.error_message(), denied_existing.error_message());
  const StreamOutcome b = Stream(server, kTokenAll, Request("b"));
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  v1::StreamSceneRequest resume;
  resume.set_resume_token(b.resume_token);
  resume.set_resume_from_sequence(1);
  EXPECT_EQ(Stream(server, kTokenA, resume).status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  resume.set_scene_id("a");  // naming an allowed scene does not help
  EXPECT_EQ(Stream(server, kTokenA, resume).status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  resume.clear_scene_id();
  const StreamOutcome resumed = Stream(server, kTokenAll, resume);
  EXPECT_TRUE(resumed.status.ok()) << resumed.status.error_message();
  EXPECT_EQ(resumed.messages, b.messages - 1);

  // The health service needs no token.
  {
    auto health = grpc::health::v1::Health::NewStub(server.channel());
    grpc::ClientContext ctx;
    Authorize(ctx, "");
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }

  const std::string metrics = server.metrics().Render();
  EXPECT_THAT(metrics, HasSubstr("flexgs_auth_failures_total{code=\"UNAUTHENTICATED\"} 5"));
  EXPECT_THAT(metrics, HasSubstr("flexgs_auth_failures_total{code=\"PERMISSION_DENIED\"} 6"));
  EXPECT_THAT(metrics, HasSubstr("flexgs_streams_rejected_total{reason=\"permission_denied\"} 4"));
  EXPECT_THAT(metrics, HasSubstr("flexgs_streams_rejected_total{reason=\"unauthenticated\"} 1"));
  EXPECT_THAT(metrics, Not(HasSubstr(kTokenA)));
}

TEST(SecureSceneServiceTest, StreamRateAndChunkLimitsRefuseWithTheirCodes) {
  SceneServiceOptions options;
  options.stream_rate = 0.001;  // one new stream per 1000 s after the burst: no refill during the test
  options.stream_burst = 2;
  options.default_max_chunk_bytes = 16 << 10;
  options.max_client_chunk_bytes = 64 << 10;
  SecureServer server(options);
  const StreamOutcome over = Stream(server, "", Request("a", (64 << 10) + 1));
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(over.status.error_message(), HasSubstr("limit of 65536 bytes"));
  const StreamOutcome at_limit = Stream(server, "", Request("a", 64 << 10));
  EXPECT_TRUE(at_limit.status.ok()) << at_limit.status.error_message();
  // Both calls above took a token: the third new stream from this address is refused.
  const StreamOutcome limited = Stream(server, "", Request("a"));
  EXPECT_EQ(limited.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.status.error_message(), HasSubstr("too many new streams from this address"));
  ASSERT_FALSE(limited.retry_after.empty());
  EXPECT_GT(std::stoll(limited.retry_after), 900'000);  // ~1000 s until the next token
  // Unary RPCs are not rate limited.
  EXPECT_TRUE(GetScene(server, "", "a").ok());
  EXPECT_THAT(server.metrics().Render(), HasSubstr("flexgs_streams_rejected_total{reason=\"rate_limited\"} 1"));
  EXPECT_THAT(server.metrics().Render(), HasSubstr("flexgs_streams_rejected_total{reason=\"max_streams\"} 0"));
}

TEST(SecureSceneServiceTest, PerPeerCapCountsStreamsPerAddressAndToken) {
  SceneServiceOptions options;
  options.authenticator = Tokens();
  options.max_streams_per_peer = 2;
  SecureServer server(options);
  // Streams that stall: a small client window that is never read beyond the header.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 << 10);
  args.SetInt("flexgs.test.channel", 1);  // a connection of its own
  auto stub = v1::SceneService::NewStub(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server.port()),
                                                                  grpc::InsecureChannelCredentials(), args));
  struct Held {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::StreamChunk>> reader;
  };
  v1::StreamSceneRequest big = Request("a", 16 << 10);
  big.set_ratio(1.0);
  big.set_encoding(v1::ENCODING_LOSSLESS);
  std::vector<std::unique_ptr<Held>> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(std::make_unique<Held>());
    Authorize(held.back()->ctx, kTokenA);
    held.back()->reader = stub->StreamScene(&held.back()->ctx, big);
    v1::StreamChunk header;
    ASSERT_TRUE(held.back()->reader->Read(&header)) << i;
  }
  // The same address and token: refused at once, with the retry hint.
  const StreamOutcome third = Stream(server, kTokenA, Request("a"));
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << third.status.error_message();
  EXPECT_THAT(third.status.error_message(), HasSubstr("too many concurrent streams from this client (limit 2)"));
  EXPECT_EQ(third.retry_after, "1000");
  // Another token from the same address has slots of its own; unary calls are not
  // counted with streams.
  const StreamOutcome other = Stream(server, kTokenAll, Request("a"));
  EXPECT_TRUE(other.status.ok()) << other.status.error_message();
  EXPECT_TRUE(GetScene(server, kTokenA, "a").ok());
  for (auto& h : held) {
    h->ctx.TryCancel();
    v1::StreamChunk c;
    while (h->reader->Read(&c)) {}
    EXPECT_EQ(h->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // The slots come back once the server has seen the cancellations.
  grpc::Status again;
  for (int i = 0; i < 100; ++i) {
    again = Stream(server, kTokenA, Request("a")).status;
    if (again.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(again.ok()) << again.error_message();
  EXPECT_THAT(server.metrics().Render(), HasSubstr("flexgs_streams_rejected_total{reason=\"peer_limit\"} "));
}

TEST(SecureSceneServiceTest, LongStringsAreInvalidAndNeverEchoedWhole) {
  SecureServer server(SceneServiceOptions{});
  const std::string long_id = "\x1b" + std::string(9000, 'y');
  const grpc::Status get = GetScene(server, "", long_id);
  EXPECT_EQ(get.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(get.error_message(), HasSubstr("at most 256 bytes"));
  EXPECT_THAT(get.error_message(), HasSubstr("(9001 bytes)"));
  EXPECT_LT(get.error_message().size(), 400u);
  EXPECT_EQ(get.error_message().find('\x1b'), std::string::npos);
  const StreamOutcome stream = Stream(server, "", Request(long_id));
  EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(stream.status.error_message(), get.error_message());
  v1::StreamSceneRequest token = Request("a");
  token.set_resume_token(std::string(kMaxResumeTokenBytes + 1, 't'));
  EXPECT_EQ(Stream(server, "", token).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // At the limit: looked up, and the message shows only a prefix.
  const grpc::Status missing = GetScene(server, "", std::string(kMaxSceneIdBytes, 'z'));
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_message(), "no scene '" + std::string(kClientStringPrefixBytes, 'z') + "...(256 bytes)'");
  EXPECT_EQ(GetScene(server, "", "a\nb").error_message(), "no scene 'a\\nb'");
}

}  // namespace
}  // namespace flexgs::server

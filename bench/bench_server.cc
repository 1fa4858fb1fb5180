// bench_server: a loopback load test of the real flexgs-server binary.
//
// The server runs as a child process (not in-process) so that its CPU time and peak
// memory can be read from /proc/<pid>/stat and /proc/<pid>/status without counting the
// clients. The scene is a heuristic guitar bundle made once with `flexgs elasticize`.
// N concurrent clients (one thread and one TCP connection each, sync API) stream the
// scene, round after round, in three experiments:
//   cold  fresh server, every client asks the same budget: the server started the
//         default script when the scene loaded, so requests join or hit it -- what a
//         deploy sees first;
//   hit   the same budget again: every request is served from the plan cache;
//   distinct  every request asks a distinct budget (ratios spread over [0.05, 0.30)):
//         before canonical streams each computed its own plan; now every budget cuts
//         the one script the cold round built, so all are hits.
// Every message is verified (sequence, CRC-32C, trailer counts); every call has a
// deadline; the child is killed on every exit path (and by PR_SET_PDEATHSIG if this
// process dies).
//   bench_server [--clients 64] [--hit-rounds 20] [--distinct-rounds 16] [--json out.json]
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include "absl/synchronization/mutex.h"
#include "base/crc32c.h"
#include "flexgs/v1/scene_service.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

#ifndef FLEXGS_DATA_DIR
#define FLEXGS_DATA_DIR "../shared/data"
#endif

namespace flexgs {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// ---------------------------------------------------------------------------------
// Child processes.

// fork + exec with stdout/stderr redirected. The child asks for SIGKILL when this
// process dies so that a crashed or killed benchmark never leaves a server behind.
pid_t Spawn(const std::vector<std::string>& argv, int stdout_fd, int stderr_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
  if (stdout_fd >= 0) dup2(stdout_fd, STDOUT_FILENO);
  if (stderr_fd >= 0) dup2(stderr_fd, STDERR_FILENO);
  execv(args[0], args.data());
  _exit(127);
}

// Exit status, or -1 after killing the child when it ran past `timeout_s`.
int WaitFor(pid_t pid, double timeout_s) {
  const auto end = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    if (Clock::now() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Owns the server child: SIGTERM (graceful), then SIGKILL, on every exit path.
class ServerProcess {
 public:
  ~ServerProcess() { Stop(); }
  void Start(pid_t pid) { pid_ = pid; }
  pid_t pid() const { return pid_; }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    if (WaitFor(pid_, 5) < 0) std::cerr << "server did not stop on SIGTERM; killed\n";
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

struct ProcSample {
  double cpu_s = 0;      // utime + stime
  uint64_t hwm_kib = 0;  // VmHWM: peak resident set
  uint64_t rss_kib = 0;  // VmRSS
};

ProcSample SampleProc(pid_t pid) {
  ProcSample s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // The command name (field 2) may hold spaces; fields are counted after its ')'.
  const auto close = line.rfind(')');
  if (close != std::string::npos) {
    std::istringstream rest(line.substr(close + 1));
    std::vector<std::string> f;
    std::string tok;
    while (rest >> tok) f.push_back(tok);
    // f[0] is field 3 (state): utime is field 14, stime field 15.
    if (f.size() > 12) {
      const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / tck;
    }
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) s.hwm_kib = std::stoull(line.substr(6));
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kib = std::stoull(line.substr(6));
  }
  return s;
}

// A free TCP port on 127.0.0.1 for the metrics endpoint (the server prints only the
// gRPC port). Racy in principle; good enough on a benchmark machine.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// Plain HTTP/1.0 GET of /metrics: the plan-cache counters confirm that the hit and
// distinct-budget experiments really were hits.
std::string ScrapeMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string body;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[16384];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) body.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return body;
}

// Sum of the samples of one metric (all label sets).
double MetricValue(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != ' ' && next != '{') continue;
    sum += std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
  }
  return sum;
}

// The q-quantile of what a Prometheus histogram observed between two scrapes, as the
// upper bound of the bucket it falls in (so "<= X"; the last finite bound when it falls
// beyond); 0 when nothing was observed.
double HistogramQuantile(const std::string& before, const std::string& after, const std::string& name, double q) {
  const std::string prefix = name + "_bucket{le=\"";
  auto buckets = [&](const std::string& text) {
    std::vector<std::pair<double, double>> out;  // (le, cumulative count)
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(prefix, 0) != 0) continue;
      const size_t end = line.find('"', prefix.size());
      if (end == std::string::npos) continue;
      const std::string le = line.substr(prefix.size(), end - prefix.size());
      const double bound = le == "+Inf" ? std::numeric_limits<double>::infinity() : std::strtod(le.c_str(), nullptr);
      out.push_back({bound, std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr)});
    }
    return out;
  };
  const auto b0 = buckets(before), b1 = buckets(after);
  if (b1.empty() || b0.size() != b1.size()) return 0;
  const double total = b1.back().second - b0.back().second;
  if (total <= 0) return 0;
  double finite = 0;  // past the last finite bound: report that bound
  for (size_t i = 0; i < b1.size(); ++i) {
    if (std::isfinite(b1[i].first)) finite = b1[i].first;
    if (b1[i].second - b0[i].second >= q * total) return finite;
  }
  return finite;
}

// ---------------------------------------------------------------------------------
// Clients.

struct StreamResult {
  bool ok = false;
  std::string error;
  double ttfc_s = 0;  // first message received
  double ttfl_s = 0;  // first LEVEL_END received: the client can render level 0
  double total_s = 0;
  uint64_t bytes = 0;  // StreamChunk payload bytes
};

StreamResult RunStream(v1::SceneService::Stub* stub, const std::string& scene, double ratio, double timeout_s) {
  StreamResult r;
  v1::StreamSceneRequest request;
  request.set_scene_id(scene);
  request.set_ratio(ratio);
  request.set_encoding(v1::ENCODING_QUANTIZED);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  const auto t0 = Clock::now();
  auto reader = stub->StreamScene(&ctx, request);
  v1::StreamChunk chunk;
  uint64_t expected = 0, total = 0;
  bool trailer = false, have_level = false;
  while (reader->Read(&chunk)) {
    const auto now = Clock::now();
    if (expected == 0) r.ttfc_s = Seconds(t0, now);
    if (chunk.sequence() != expected) {
      r.error = "sequence " + std::to_string(chunk.sequence()) + ", expected " + std::to_string(expected);
    } else if (Crc32c(chunk.payload()) != chunk.crc32c()) {
      r.error = "CRC mismatch at sequence " + std::to_string(chunk.sequence());
    } else if (chunk.kind() == v1::CHUNK_KIND_HEADER) {
      v1::StreamHeader h;
      if (!h.ParseFromString(chunk.payload())) r.error = "unparsable header";
      total = h.total_messages();
    } else if (chunk.kind() == v1::CHUNK_KIND_LEVEL_END && !have_level) {
      have_level = true;
      r.ttfl_s = Seconds(t0, now);
    } else if (chunk.kind() == v1::CHUNK_KIND_TRAILER) {
      v1::StreamTrailer t;
      trailer = t.ParseFromString(chunk.payload());
      if (!trailer || t.messages() != chunk.sequence() + 1) r.error = "bad trailer";
    }
    ++expected;
    r.bytes += chunk.payload().size();
    if (!r.error.empty()) {
      ctx.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  r.total_s = Seconds(t0, Clock::now());
  if (r.error.empty() && !status.ok()) {
    r.error = "rpc error " + std::to_string(status.error_code()) + ": " + status.error_message();
  }
  if (r.error.empty() && (!trailer || expected != total || !have_level)) r.error = "incomplete stream";
  r.ok = r.error.empty();
  return r;
}

struct Client {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::SceneService::Stub> stub;
};

struct Experiment {
  std::string name;
  std::string note;
  int rounds = 0;
  int streams = 0;
  int failures = 0;
  std::string first_error;
  double wall_s = 0;  // summed over rounds: start gate to last stream done
  std::vector<double> ttfc, ttfl, total;
  uint64_t bytes = 0;
  double server_cpu_s = 0;
  uint64_t hwm_kib = 0;  // VmHWM after the experiment (peak over the server's life)
  uint64_t rss_kib = 0;
  double hits = 0, misses = 0;  // plan-cache counter deltas
  // The server's own time to first chunk (request arrival to first write done), from its
  // histogram: upper bounds of the p50 / p99 buckets.
  double server_ttfc_p50_s = 0, server_ttfc_p99_s = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank: p99 of 64 samples is the 64th, i.e. the worst.
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  k = std::clamp<size_t>(k, 1, v.size());
  return v[k - 1];
}

struct BenchConfig {
  std::string scene = "guitar";
  // Hit rounds are cheap and their CPU time is small, so more of them keep the
  // 10 ms /proc tick resolution out of the CPU-per-GB figure.
  int hit_rounds = 20;
  int distinct_rounds = 16;
  double ratio = 0.15;
  double timeout_s = 30;
  double budget_s = 100;  // whole run; rounds past it are skipped
};

// Runs `rounds` rounds of all clients at once; ratio_of(round, client) is the budget.
template <typename RatioFn>
Experiment RunExperiment(const std::string& name, const std::string& note, int rounds, std::vector<Client>& clients,
                         const BenchConfig& cfg, pid_t server, int metrics_port, Clock::time_point run_start,
                         RatioFn ratio_of) {
  Experiment e;
  e.name = name;
  e.note = note;
  const std::string m0 = ScrapeMetrics(metrics_port);
  const ProcSample before = SampleProc(server);
  for (int round = 0; round < rounds; ++round) {
    if (round > 0 && Seconds(run_start, Clock::now()) > cfg.budget_s) {
      std::cerr << name << ": time budget reached after " << round << " round(s)\n";
      break;
    }
    const int n = static_cast<int>(clients.size());
    std::vector<StreamResult> results(n);
    std::mutex mu;
    std::condition_variable cv;
    bool go = false;
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return go; });
        }
        results[i] = RunStream(clients[i].stub.get(), cfg.scene, ratio_of(round, i), cfg.timeout_s);
      });
    }
    // All threads exist before the gate opens, so thread creation is not timed.
    const auto t0 = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu);
      go = true;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
    e.wall_s += Seconds(t0, Clock::now());
    ++e.rounds;
    for (const auto& r : results) {
      ++e.streams;
      if (!r.ok) {
        ++e.failures;
        if (e.first_error.empty()) e.first_error = r.error;
        continue;
      }
      e.ttfc.push_back(r.ttfc_s);
      e.ttfl.push_back(r.ttfl_s);
      e.total.push_back(r.total_s);
      e.bytes += r.bytes;
    }
  }
  const ProcSample after = SampleProc(server);
  const std::string m1 = ScrapeMetrics(metrics_port);
  e.server_cpu_s = after.cpu_s - before.cpu_s;
  e.hwm_kib = after.hwm_kib;
  e.rss_kib = after.rss_kib;
  e.hits = MetricValue(m1, "flexgs_plan_cache_hits_total") - MetricValue(m0, "flexgs_plan_cache_hits_total");
  e.misses = MetricValue(m1, "flexgs_plan_cache_misses_total") - MetricValue(m0, "flexgs_plan_cache_misses_total");
  e.server_ttfc_p50_s = HistogramQuantile(m0, m1, "flexgs_stream_time_to_first_chunk_seconds", 0.50);
  e.server_ttfc_p99_s = HistogramQuantile(m0, m1, "flexgs_stream_time_to_first_chunk_seconds", 0.99);
  return e;
}

// Derived figures, shared by the text table and the JSON.
struct Figures {
  double streams_per_s, ttfc_p50_ms, ttfc_p99_ms, ttfl_p50_ms, ttfl_p99_ms, total_p50_ms, total_p99_ms, mb_per_s,
      cpu_s_per_gb, peak_rss_mib, rss_mib, mb_per_stream;
};

Figures Derive(const Experiment& e) {
  Figures f{};
  const int ok = e.streams - e.failures;
  f.streams_per_s = e.wall_s > 0 ? ok / e.wall_s : 0;
  f.ttfc_p50_ms = 1e3 * Percentile(e.ttfc, 0.50);
  f.ttfc_p99_ms = 1e3 * Percentile(e.ttfc, 0.99);
  f.ttfl_p50_ms = 1e3 * Percentile(e.ttfl, 0.50);
  f.ttfl_p99_ms = 1e3 * Percentile(e.ttfl, 0.99);
  f.total_p50_ms = 1e3 * Percentile(e.total, 0.50);
  f.total_p99_ms = 1e3 * Percentile(e.total, 0.99);
  f.mb_per_s = e.wall_s > 0 ? static_cast<double>(e.bytes) / 1e6 / e.wall_s : 0;
  f.cpu_s_per_gb = e.bytes > 0 ? e.server_cpu_s / (static_cast<double>(e.bytes) / 1e9) : 0;
  f.peak_rss_mib = static_cast<double>(e.hwm_kib) / 1024.0;
  f.rss_mib = static_cast<double>(e.rss_kib) / 1024.0;
  f.mb_per_stream = ok > 0 ? static_cast<double>(e.bytes) / 1e6 / ok : 0;
  return f;
}

void PrintTable(const std::vector<Experiment>& exps) {
  std::printf(
      "| experiment | streams (failed) | plan hits/misses | streams/s | TTFC p50/p99 ms | "
      "server's TTFC p50/p99 ms | first level p50/p99 ms | stream p50/p99 ms | MB/stream | MB/s | "
      "server CPU s/GB | server peak RSS MiB |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const auto& e : exps) {
    const Figures f = Derive(e);
    std::printf(
        "| %s | %d (%d) | %.0f/%.0f | %.1f | %.1f / %.1f | <= %g / <= %g | %.1f / %.1f | %.1f / %.1f | %.3f | "
        "%.1f | %.1f | %.1f |\n",
        e.name.c_str(), e.streams, e.failures, e.hits, e.misses, f.streams_per_s, f.ttfc_p50_ms, f.ttfc_p99_ms,
        1e3 * e.server_ttfc_p50_s, 1e3 * e.server_ttfc_p99_s, f.ttfl_p50_ms, f.ttfl_p99_ms, f.total_p50_ms,
        f.total_p99_ms, f.mb_per_stream, f.mb_per_s, f.cpu_s_per_gb, f.peak_rss_mib);
  }
  for (const auto& e : exps) {
    std::printf("- %s: %s%s\n", e.name.c_str(), e.note.c_str(),
                e.first_error.empty() ? "" : (" (first error: " + e.first_error + ")").c_str());
  }
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

bool WriteJson(const std::string& path, const std::vector<Experiment>& exps, int clients, double setup_s) {
  std::ofstream out(path);
  out << "{\n  \"clients\": " << clients << ",\n  \"setup_seconds\": " << setup_s << ",\n  \"experiments\": [\n";
  for (size_t i = 0; i < exps.size(); ++i) {
    const Experiment& e = exps[i];
    const Figures f = Derive(e);
    out << "    {\"name\": \"" << JsonEscape(e.name) << "\", \"rounds\": " << e.rounds << ", \"streams\": " << e.streams
        << ", \"failures\": " << e.failures << ", \"first_error\": \"" << JsonEscape(e.first_error)
        << "\", \"plan_cache_hits\": " << e.hits << ", \"plan_cache_misses\": " << e.misses
        << ", \"wall_seconds\": " << e.wall_s << ", \"streams_per_second\": " << f.streams_per_s
        << ", \"ttfc_p50_ms\": " << f.ttfc_p50_ms << ", \"ttfc_p99_ms\": " << f.ttfc_p99_ms
        << ", \"server_ttfc_p50_ms_at_most\": " << 1e3 * e.server_ttfc_p50_s
        << ", \"server_ttfc_p99_ms_at_most\": " << 1e3 * e.server_ttfc_p99_s
        << ", \"first_level_p50_ms\": " << f.ttfl_p50_ms << ", \"first_level_p99_ms\": " << f.ttfl_p99_ms
        << ", \"stream_p50_ms\": " << f.total_p50_ms << ", \"stream_p99_ms\": " << f.total_p99_ms
        << ", \"payload_bytes\": " << e.bytes << ", \"mb_per_second\": " << f.mb_per_s
        << ", \"server_cpu_seconds\": " << e.server_cpu_s << ", \"server_cpu_seconds_per_gb\": " << f.cpu_s_per_gb
        << ", \"server_peak_rss_mib\": " << f.peak_rss_mib << ", \"server_rss_mib\": " << f.rss_mib << "}"
        << (i + 1 < exps.size() ? "," : "") << "\n";
  }
  out << "  ]\n}\n";
  return static_cast<bool>(out);
}

// ---------------------------------------------------------------------------------

int Main(int argc, char** argv) {
  // Defaults: the binaries next to this one in the build tree (build/bench/..).
  std::error_code ec;
  const fs::path build_dir = fs::read_symlink("/proc/self/exe", ec).parent_path().parent_path();
  std::string flexgs_bin = (build_dir / "tools" / "flexgs").string();
  std::string server_bin = (build_dir / "server" / "flexgs-server").string();
  std::string ply = std::string(FLEXGS_DATA_DIR) + "/guitar.ply";
  std::string json_path;
  int n_clients = 64;
  BenchConfig cfg;
  CLI::App app{"bench_server: loopback load test of flexgs-server"};
  app.add_option("--flexgs", flexgs_bin, "The flexgs tool (for elasticize)")->capture_default_str();
  app.add_option("--server", server_bin, "The flexgs-server binary")->capture_default_str();
  app.add_option("--ply", ply, "Scene PLY")->capture_default_str();
  app.add_option("--clients", n_clients, "Concurrent clients")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--hit-rounds", cfg.hit_rounds, "Rounds of the hit experiment")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--distinct-rounds", cfg.distinct_rounds, "Rounds of the distinct-budget experiment")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--ratio", cfg.ratio, "Ratio budget")->capture_default_str()->check(CLI::Range(0.01, 0.9));
  app.add_option("--timeout-s", cfg.timeout_s, "Deadline of each call")->capture_default_str();
  app.add_option("--budget-s", cfg.budget_s, "Stop starting rounds after this long")->capture_default_str();
  app.add_option("--json", json_path, "Also write the figures here");
  CLI11_PARSE(app, argc, argv);

  const auto run_start = Clock::now();
  char tmpl[] = "/tmp/flexgs-bench-server.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const fs::path work(tmpl);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{work};
  fs::create_directories(work / "scenes");
  const std::string log_path = (work / "log.txt").string();
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  auto dump_log = [&] {
    std::ifstream in(log_path);
    std::cerr << "--- log ---\n" << in.rdbuf() << "\n";
  };

  // The heuristic bundle: GI over 16 orbit views of 256x256 (cheap, and the model
  // size -- what streaming cost depends on -- is the same as with more views).
  const std::string bundle = (work / "scenes" / (cfg.scene + ".flexgs")).string();
  pid_t pid =
      Spawn({flexgs_bin, "elasticize", ply, "--out", bundle, "--orbit", "16", "--width", "256", "--height", "256"},
            log_fd, log_fd);
  if (int rc = WaitFor(pid, 90); rc != 0) {
    std::cerr << "flexgs elasticize failed (" << rc << ")\n";
    dump_log();
    return 1;
  }

  const int metrics_port = FreePort();
  int out_pipe[2];
  if (pipe(out_pipe) != 0) return 1;
  ServerProcess server;
  server.Start(Spawn({server_bin, "--host", "127.0.0.1", "--port", "0", "--scenes", (work / "scenes").string(),
                      "--metrics-host", "127.0.0.1", "--metrics-port", std::to_string(metrics_port), "--max-streams",
                      std::to_string(std::max(256, 2 * n_clients)), "--drain-seconds", "1", "--log-level", "warn"},
                     out_pipe[1], log_fd));
  close(out_pipe[1]);
  // "listening on PORT" is the only thing the server writes to stdout.
  std::string out;
  int port = 0;
  const auto listen_end = Clock::now() + std::chrono::seconds(30);
  while (port == 0 && Clock::now() < listen_end) {
    pollfd p{out_pipe[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    const ssize_t n = read(out_pipe[0], buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (const auto at = out.find("listening on "); at != std::string::npos && out.find('\n', at) != std::string::npos) {
      port = std::atoi(out.c_str() + at + 13);
    }
  }
  close(out_pipe[0]);
  if (port == 0) {
    std::cerr << "server printed no 'listening on PORT'\n";
    dump_log();
    return 1;
  }
  const std::string addr = "127.0.0.1:" + std::to_string(port);

  // Health: SERVING for the scene service once the scenes are loaded.
  {
    auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
    auto health = grpc::health::v1::Health::NewStub(channel);
    bool serving = false;
    const auto end = Clock::now() + std::chrono::seconds(60);
    while (!serving && Clock::now() < end) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
      grpc::health::v1::HealthCheckRequest req;
      req.set_service("flexgs.v1.SceneService");
      grpc::health::v1::HealthCheckResponse resp;
      serving = health->Check(&ctx, req, &resp).ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
      if (!serving) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!serving) {
      std::cerr << "server never SERVING\n";
      dump_log();
      return 1;
    }
  }
  const double setup_s = Seconds(run_start, Clock::now());

  // One channel (one TCP connection) per client, like independent viewers. A local
  // subchannel pool keeps gRPC from sharing one connection between equal channels.
  std::vector<Client> clients(n_clients);
  for (auto& c : clients) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(8 << 20);
    c.channel = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
    // Connect before timing: TTFC measures the stream, not the TCP/HTTP2 handshake.
    if (!c.channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::cerr << "client could not connect to " << addr << "\n";
      return 1;
    }
    c.stub = v1::SceneService::NewStub(c.channel);
  }

  std::vector<Experiment> exps;
  const double base = cfg.ratio;
  exps.push_back(RunExperiment(
      "cold", "fresh server, all ask ratio " + std::to_string(base) + ": the script warmed at load, joined or hit", 1,
      clients, cfg, server.pid(), metrics_port, run_start, [base](int, int) { return base; }));
  exps.push_back(RunExperiment("hit", "plan cached; all ask the same ratio", cfg.hit_rounds, clients, cfg, server.pid(),
                               metrics_port, run_start, [base](int, int) { return base; }));
  const int n = n_clients;
  const int rounds = cfg.distinct_rounds;
  exps.push_back(RunExperiment(
      "distinct", "every request a distinct budget, ratios over [0.05, 0.30): one script cut", rounds, clients, cfg,
      server.pid(), metrics_port, run_start,
      [n, rounds](int round, int i) { return 0.05 + 0.25 * (round * n + i) / static_cast<double>(rounds * n); }));
  server.Stop();

  std::printf("flexgs-server on %s, %d clients, scene %s (%s), setup %.1f s, total %.1f s\n", addr.c_str(), n_clients,
              cfg.scene.c_str(), ply.c_str(), setup_s, Seconds(run_start, Clock::now()));
  PrintTable(exps);
  if (!json_path.empty() && !WriteJson(json_path, exps, n_clients, setup_s)) {
    std::cerr << "cannot write " << json_path << "\n";
    return 1;
  }
  int failures = 0;
  for (const auto& e : exps) failures += e.failures;
  if (failures > 0) dump_log();
  return failures == 0 ? 0 : 2;
}

}  // namespace
}  // namespace flexgs

int main(int argc, char** argv) {
  // The clients' side of the benchmark, lean as flexgs-server (Abseil's deadlock detection: ~4 % CPU).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return flexgs::Main(argc, argv);
}

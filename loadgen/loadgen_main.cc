// flexgs-loadgen: a load generator for flexgs-server that CI can run (ghz cannot be
// installed here, and it cannot read slowly or time levels). One process keeps N
// StreamScene calls in flight over several HTTP/2 connections, verifies every stream,
// and reports latency percentiles (first chunk, each LEVEL_END, completion),
// throughput and outcomes by status code.
//
//   flexgs-loadgen --target 127.0.0.1:50051 --scene guitar --concurrency 64 --total 1000
//                  --budgets ratio:0.05,ratio:0.15@3,bytes:2MiB --json
//
// Exit codes: 0 every stream completed (or was cancelled on purpose), 1 bad arguments,
// 2 any stream failed or failed verification.
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/budget_spec.h"
#include "client/channel_credentials.h"
#include "loadgen/load_report.h"
#include "loadgen/load_runner.h"
#include "loadgen/load_spec.h"

namespace {

using flexgs::loadgen::LoadConfig;

int BadArgs(const std::string& message) {
  std::cerr << "flexgs-loadgen: error: " << message << "\nRun with --help for the options.\n";
  return 1;
}

// Longest time any flag may give (115 days): far beyond any run, and small enough that
// seconds * 1e6 fits the int64 microseconds the deadlines are computed in.
constexpr double kMaxSeconds = 1e7;
constexpr int kMaxInt = std::numeric_limits<int>::max();

// The checks CLI11 cannot make (its own ranges, allowed values and exclusions are
// declared with the flags): lists, rates and budget mixes, "one of --total and
// --duration", and every seconds or fraction flag, since CLI::Range lets NaN through
// and cannot leave a bound open.
absl::Status Validate(LoadConfig& c, const std::vector<std::string>& scene_flags, bool have_total, bool have_duration) {
  if (c.target.empty()) return absl::InvalidArgumentError("--target HOST:PORT is required");
  auto scenes = flexgs::loadgen::ParseSceneList(scene_flags);
  if (!scenes.ok()) return scenes.status();
  c.scenes = *std::move(scenes);
  if (!have_total && !have_duration) {
    return absl::InvalidArgumentError("give exactly one of --total N and --duration SECONDS");
  }
  if (have_duration && !(c.duration_s > 0 && c.duration_s <= kMaxSeconds)) {
    return absl::InvalidArgumentError("--duration must be in (0, 1e7] seconds");
  }
  if (!(c.timeout_s > 0 && c.timeout_s <= kMaxSeconds)) {
    return absl::InvalidArgumentError("--timeout-s must be in (0, 1e7] seconds");
  }
  if (!(c.slow_fraction >= 0 && c.slow_fraction <= 1)) {
    return absl::InvalidArgumentError("--slow-readers must be a fraction in [0, 1]");
  }
  if (!(c.cancel_fraction >= 0 && c.cancel_fraction <= 1)) {
    return absl::InvalidArgumentError("--cancel-fraction must be a fraction in [0, 1]");
  }
  if (!(c.stuck_fraction >= 0 && c.stuck_fraction <= 1)) {
    return absl::InvalidArgumentError("--stuck-readers must be a fraction in [0, 1]");
  }
  if (!(c.stuck_seconds > 0 && c.stuck_seconds <= kMaxSeconds)) {
    return absl::InvalidArgumentError("--stuck-seconds must be in (0, 1e7] seconds");
  }
  auto rate = flexgs::client::ParseBitRate(c.slow_rate_text);
  if (!rate.ok()) {
    // The parser names flexgs-client's flag; name ours.
    std::string message(rate.status().message());
    if (absl::StartsWith(message, "--max-bandwidth")) message.erase(0, sizeof("--max-bandwidth") - 1);
    return absl::InvalidArgumentError(absl::StrCat("--slow-read-rate", message));
  }
  c.slow_rate_bytes_per_s = *rate;
  if (!(c.connect_timeout_s >= 0 && c.connect_timeout_s <= kMaxSeconds)) {
    return absl::InvalidArgumentError("--connect-timeout-s must be in [0, 1e7] seconds");
  }
  if (!(c.progress_s >= 0 && c.progress_s <= kMaxSeconds)) {
    return absl::InvalidArgumentError("--progress-s must be in [0, 1e7] seconds");
  }
  // The budget mix is parsed again by RunLoad; parsing here reports it as a flag error.
  auto budgets = flexgs::loadgen::ParseBudgetMix(c.budgets_text);
  if (!budgets.ok()) return budgets.status();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as flexgs-server: a debug aid, ~4 % CPU
  LoadConfig c;
  c.slow_rate_text = "1Mbit";
  std::vector<std::string> scene_flags;
  std::string encoding = "quantized";
  bool json = false;
  CLI::App app{"flexgs-loadgen: concurrent StreamScene load against a flexgs-server, every stream verified"};
  app.add_option("--target", c.target, "Server: HOST:PORT or any gRPC target (dns:///name:port)")->required();
  app.add_option("--scene", scene_flags, "Scene id; repeatable or a comma list (stream k asks scene k mod count)");
  app.add_option("--concurrency", c.concurrency, "Streams in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(1, kMaxInt));
  auto* total = app.add_option("--total", c.total, "Streams to run in all")
                    ->check(CLI::Range(uint64_t{1}, std::numeric_limits<uint64_t>::max()));
  auto* duration =
      app.add_option("--duration", c.duration_s, "Start streams for this many seconds (the last ones then finish)");
  total->excludes(duration);
  app.add_option("--budgets", c.budgets_text,
                 "Budget mix, e.g. ratio:0.05,ratio:0.15@3,bytes:2MiB,gaussians:20000 (@W: weight; "
                 "weighted round robin)")
      ->capture_default_str();
  app.add_option("--slow-readers", c.slow_fraction, "Fraction of streams that read through a token bucket")
      ->capture_default_str();
  app.add_option("--slow-read-rate", c.slow_rate_text, "Slow readers' rate (1Mbit, 500kbit, 2MB/s, ...)")
      ->capture_default_str();
  app.add_option("--cancel-fraction", c.cancel_fraction,
                 "Fraction of streams cancelled at a random message (counted as cancelled, not failed)")
      ->capture_default_str();
  app.add_option("--stuck-readers", c.stuck_fraction,
                 "Fraction of streams that stop reading after the header for --stuck-seconds, then drain the "
                 "call (counted as stuck by how it ended, e.g. CANCELLED by the server's stall watchdog; not as "
                 "failed)")
      ->capture_default_str();
  app.add_option("--stuck-seconds", c.stuck_seconds, "How long stuck readers stop reading")->capture_default_str();
  app.add_option("--encoding", encoding, "quantized or lossless")
      ->capture_default_str()
      ->check(CLI::IsMember({"quantized", "lossless"}));
  app.add_flag("--verify,!--no-verify", c.verify,
               "Decode every stream (SceneAssembler); --no-verify checks only sequence, CRC-32C and counts")
      ->capture_default_str();
  app.add_flag("--json", json, "Print the report as JSON on stdout");
  app.add_option("--timeout-s", c.timeout_s, "Deadline of each stream in seconds")->capture_default_str();
  app.add_option("--seed", c.seed, "Seed for slow-reader, cancel and cancel-point choices")->capture_default_str();
  app.add_option("--channels", c.channels, "Channels (HTTP/2 connections); 0: one per 16 streams")
      ->capture_default_str()
      ->check(CLI::Range(0, kMaxInt));
  app.add_option("--threads", c.threads, "Completion-queue threads; 0: hardware threads")
      ->capture_default_str()
      ->check(CLI::Range(0, kMaxInt));
  app.add_option("--max-chunk-bytes", c.max_chunk_bytes, "Largest message wanted; 0: server default")
      ->capture_default_str();
  app.add_option("--connect-timeout-s", c.connect_timeout_s, "How long to wait for channels before starting")
      ->capture_default_str();
  app.add_option("--progress-s", c.progress_s, "Progress line on stderr every this many seconds; 0: none")
      ->capture_default_str();
  std::string token_file;
  app.add_option("--tls-ca", c.tls_ca, "Use TLS, verifying the server with this CA bundle (PEM)");
  app.add_option("--tls-cert", c.tls_cert, "Client certificate for mutual TLS (PEM)");
  app.add_option("--tls-key", c.tls_key, "Client key for mutual TLS (PEM)");
  app.add_option("--token-file", token_file, "Send the bearer token in this file with every stream");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return BadArgs(e.what());
  }
  if (absl::Status st = Validate(c, scene_flags, total->count() > 0, duration->count() > 0); !st.ok()) {
    return BadArgs(std::string(st.message()));
  }
  c.lossless = encoding == "lossless";
  if (!token_file.empty()) {
    auto token = flexgs::client::ReadBearerToken(token_file);
    if (!token.ok()) return BadArgs(std::string(token.status().message()));
    c.bearer_token = *std::move(token);
  }

  flexgs::loadgen::RunInfo info;
  auto stats = flexgs::loadgen::RunLoad(c, &info);
  if (!stats.ok()) return BadArgs(std::string(stats.status().message()));
  if (json) {
    // Error messages come from the server (or whatever answers at --target): invalid
    // UTF-8 there is replaced rather than thrown on.
    const auto report = flexgs::loadgen::ReportJson(c, *stats, info);
    std::cout << report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else {
    std::cout << flexgs::loadgen::ReportText(c, *stats, info) << std::flush;
  }
  return flexgs::loadgen::ExitCode(*stats);
}

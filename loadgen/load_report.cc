#include "loadgen/load_report.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace flexgs::loadgen {
namespace {

void Append(std::vector<double>& to, std::vector<double>&& from) {
  if (to.empty()) {
    to = std::move(from);
  } else {
    to.insert(to.end(), from.begin(), from.end());
  }
}

struct Summary {
  size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;  // milliseconds
};

Summary Summarize(std::vector<double> seconds) {
  Summary s;
  s.n = seconds.size();
  if (s.n == 0) return s;
  std::sort(seconds.begin(), seconds.end());
  s.p50 = 1e3 * Percentile(seconds, 0.50);
  s.p90 = 1e3 * Percentile(seconds, 0.90);
  s.p99 = 1e3 * Percentile(seconds, 0.99);
  s.max = 1e3 * seconds.back();
  return s;
}

// No samples: the percentiles are null rather than a misleading 0.
nlohmann::json SummaryJson(const std::vector<double>& seconds) {
  const Summary s = Summarize(seconds);
  nlohmann::json j = {{"n", s.n}};
  for (const auto& [name, v] : {std::pair{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}}) {
    // Microsecond resolution is all a steady_clock difference across threads can claim.
    j[name] = s.n > 0 ? nlohmann::json(std::round(v * 1e3) / 1e3) : nlohmann::json(nullptr);
  }
  return j;
}

nlohmann::json LatencyJson(const LatencySamples& l) {
  nlohmann::json levels = nlohmann::json::array();
  for (size_t k = 0; k < l.level_end_s.size(); ++k) {
    nlohmann::json j = SummaryJson(l.level_end_s[k]);
    j["level"] = k;
    levels.push_back(std::move(j));
  }
  return {{"first_chunk", SummaryJson(l.first_chunk_s)},
          {"level_end", std::move(levels)},
          {"completion", SummaryJson(l.completion_s)}};
}

std::string Row(const std::string& name, const std::vector<double>& seconds) {
  const Summary s = Summarize(seconds);
  if (s.n == 0) return absl::StrFormat("  %-22s %7d %9s %9s %9s %9s\n", name, 0, "-", "-", "-", "-");
  return absl::StrFormat("  %-22s %7d %9.1f %9.1f %9.1f %9.1f\n", name, s.n, s.p50, s.p90, s.p99, s.max);
}

std::string LatencyTable(const std::string& title, const LatencySamples& l) {
  std::string out = absl::StrFormat("%s\n  %-22s %7s %9s %9s %9s %9s\n", title, "", "n", "p50", "p90", "p99", "max");
  out += Row("first chunk (header)", l.first_chunk_s);
  for (size_t k = 0; k < l.level_end_s.size(); ++k) {
    out += Row(absl::StrCat("level ", k, " LEVEL_END"), l.level_end_s[k]);
  }
  out += Row("completion", l.completion_s);
  return out;
}

double PerSecond(double amount, double wall_s) { return wall_s > 0 ? amount / wall_s : 0; }

}  // namespace

void LatencySamples::Merge(LatencySamples&& other) {
  Append(first_chunk_s, std::move(other.first_chunk_s));
  Append(completion_s, std::move(other.completion_s));
  if (level_end_s.size() < other.level_end_s.size()) level_end_s.resize(other.level_end_s.size());
  for (size_t k = 0; k < other.level_end_s.size(); ++k) Append(level_end_s[k], std::move(other.level_end_s[k]));
}

uint64_t RunStats::failed() const {
  uint64_t n = 0;
  for (const auto& [code, count] : failed_by_code) n += count;
  return n;
}

void RunStats::Merge(RunStats&& other) {
  started += other.started;
  completed += other.completed;
  cancelled += other.cancelled;
  stuck += other.stuck;
  for (const auto& [code, count] : other.stuck_by_code) stuck_by_code[code] += count;
  interrupted += other.interrupted;
  verification_failures += other.verification_failures;
  for (const auto& [code, count] : other.failed_by_code) failed_by_code[code] += count;
  for (auto& [code, message] : other.example_error) example_error.emplace(code, std::move(message));
  slow_streams += other.slow_streams;
  payload_bytes += other.payload_bytes;
  messages += other.messages;
  fast.Merge(std::move(other.fast));
  slow.Merge(std::move(other.slow));
}

int ExitCode(const RunStats& stats) { return stats.failed() > 0 || stats.verification_failures > 0 ? 2 : 0; }

nlohmann::json ReportJson(const LoadConfig& config, const RunStats& stats, const RunInfo& info) {
  nlohmann::json j;
  j["target"] = config.target;
  j["scenes"] = config.scenes;
  j["concurrency"] = config.concurrency;
  j["total"] = config.total > 0 ? nlohmann::json(config.total) : nlohmann::json(nullptr);
  j["duration_s"] = config.total > 0 ? nlohmann::json(nullptr) : nlohmann::json(config.duration_s);
  j["budgets"] = info.budgets;
  j["encoding"] = config.lossless ? "lossless" : "quantized";
  j["verify"] = config.verify;
  j["slow_readers"] = {{"fraction", config.slow_fraction},
                       {"rate", config.slow_rate_text},
                       {"rate_bytes_per_s", config.slow_rate_bytes_per_s}};
  j["cancel_fraction"] = config.cancel_fraction;
  j["stuck_readers"] = {{"fraction", config.stuck_fraction}, {"seconds", config.stuck_seconds}};
  j["timeout_s"] = config.timeout_s;
  j["seed"] = config.seed;
  j["channels"] = {{"fast", info.fast_channels},
                   {"slow", info.slow_channels},
                   {"stuck", info.stuck_channels},
                   {"not_ready", info.channels_not_ready}};
  j["threads"] = info.threads;

  j["counts"] = {{"started", stats.started},
                 {"completed", stats.completed},
                 {"cancelled", stats.cancelled},
                 {"stuck", stats.stuck},
                 {"stuck_by_code", stats.stuck_by_code},
                 {"interrupted", stats.interrupted},
                 {"failed", stats.failed()},
                 {"failed_by_code", stats.failed_by_code},
                 {"verification_failures", stats.verification_failures},
                 {"slow_readers", stats.slow_streams}};
  j["errors"] = stats.example_error;
  j["throughput"] = {{"wall_s", info.wall_s},
                     {"connect_s", info.connect_s},
                     {"streams_per_s", PerSecond(static_cast<double>(stats.completed), info.wall_s)},
                     {"mb_per_s", PerSecond(static_cast<double>(stats.payload_bytes) / 1e6, info.wall_s)},
                     {"payload_bytes", stats.payload_bytes},
                     {"messages", stats.messages}};
  j["latency_ms"] = LatencyJson(stats.fast);
  if (stats.slow_streams > 0) j["latency_ms_slow_readers"] = LatencyJson(stats.slow);
  j["client_cpu_s"] = info.client_cpu_s;
  j["client_cpu_cores"] = PerSecond(info.client_cpu_s, info.wall_s);
  j["exit_code"] = ExitCode(stats);
  return j;
}

std::string ReportText(const LoadConfig& config, const RunStats& stats, const RunInfo& info) {
  std::string out;
  out += absl::StrFormat("flexgs-loadgen -> %s  scenes: %s  budgets: %s\n", config.target,
                         absl::StrJoin(config.scenes, ","), absl::StrJoin(info.budgets, ","));
  std::string slow_channels;
  if (info.slow_channels > 0) slow_channels = absl::StrFormat(" + %d slow-reader", info.slow_channels);
  if (info.stuck_channels > 0) slow_channels += absl::StrFormat(" + %d stuck-reader", info.stuck_channels);
  out += absl::StrFormat("concurrency %d over %d%s channel(s), %d thread(s), encoding %s, verify %s, seed %d\n",
                         config.concurrency, info.fast_channels, slow_channels, info.threads,
                         config.lossless ? "lossless" : "quantized", config.verify ? "on" : "off", config.seed);
  if (info.channels_not_ready > 0) {
    out += absl::StrFormat("warning: %d channel(s) were not READY after %.1f s of connecting\n",
                           info.channels_not_ready, config.connect_timeout_s);
  }
  out += "\n";
  out += absl::StrFormat("streams     started %d  completed %d  cancelled %d  failed %d  verification failures %d",
                         stats.started, stats.completed, stats.cancelled, stats.failed(), stats.verification_failures);
  if (stats.stuck > 0) out += absl::StrFormat("  stuck %d", stats.stuck);
  if (stats.interrupted > 0) out += absl::StrFormat("  interrupted %d", stats.interrupted);
  if (stats.slow_streams > 0) out += absl::StrFormat("  (slow readers %d)", stats.slow_streams);
  out += "\n";
  if (!stats.failed_by_code.empty()) {
    std::vector<std::string> parts;
    for (const auto& [code, count] : stats.failed_by_code) parts.push_back(absl::StrCat(code, ": ", count));
    out += absl::StrCat("failed by    ", absl::StrJoin(parts, ", "), "\n");
  }
  if (!stats.stuck_by_code.empty()) {
    std::vector<std::string> parts;
    for (const auto& [code, count] : stats.stuck_by_code) parts.push_back(absl::StrCat(code, ": ", count));
    out += absl::StrCat("stuck ended ", absl::StrJoin(parts, ", "), "\n");
  }
  out += absl::StrFormat(
      "throughput  %.2f s wall, %.1f streams/s, %.1f MB/s (%.1f MB payload in %d messages), client CPU %.1f s "
      "(%.2f cores)\n\n",
      info.wall_s, PerSecond(static_cast<double>(stats.completed), info.wall_s),
      PerSecond(static_cast<double>(stats.payload_bytes) / 1e6, info.wall_s),
      static_cast<double>(stats.payload_bytes) / 1e6, stats.messages, info.client_cpu_s,
      PerSecond(info.client_cpu_s, info.wall_s));
  out += LatencyTable(stats.slow_streams > 0 ? "latency ms (other readers)" : "latency ms", stats.fast);
  if (stats.slow_streams > 0) {
    out += "\n" + LatencyTable(absl::StrCat("latency ms (slow ", config.slow_rate_text, ")"), stats.slow);
  }
  if (!stats.example_error.empty()) {
    out += "\nfirst error per kind:\n";
    for (const auto& [code, message] : stats.example_error) out += absl::StrCat("  ", code, ": ", message, "\n");
  }
  return out;
}

}  // namespace flexgs::loadgen

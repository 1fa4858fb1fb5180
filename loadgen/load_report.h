// What a load run measured, and how it is printed: a text table for people, JSON for
// CI. The counters are exact; latencies are kept as raw samples (a few doubles per
// stream) so percentiles are exact too, not bucket estimates.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loadgen/load_spec.h"

namespace flexgs::loadgen {

// Seconds since each stream's call was started, from completed and deliberately
// cancelled streams (a stream that failed has no meaningful timings).
struct LatencySamples {
  std::vector<double> first_chunk_s;             // the header arrived
  std::vector<std::vector<double>> level_end_s;  // [level index]: that level's LEVEL_END arrived
  std::vector<double> completion_s;              // status OK after the trailer (completed streams only)

  void Merge(LatencySamples&& other);
};

// Every started stream ends in exactly one of: completed, cancelled (deliberately, by
// --cancel-fraction), stuck (a --stuck-readers stream that got its header and then
// stopped reading; how the server or the deadline ended it is counted by code),
// interrupted (SIGINT/SIGTERM to the load generator), a verification failure, or a
// failure with a gRPC status code.
struct RunStats {
  uint64_t started = 0;
  uint64_t completed = 0;
  uint64_t cancelled = 0;
  uint64_t stuck = 0;
  std::map<std::string, uint64_t> stuck_by_code;  // how stuck streams ended: "CANCELLED" (stall watchdog), ...
  uint64_t interrupted = 0;
  uint64_t verification_failures = 0;
  std::map<std::string, uint64_t> failed_by_code;    // "UNAVAILABLE" -> count
  std::map<std::string, std::string> example_error;  // code name or "VERIFICATION" -> first message seen
  uint64_t slow_streams = 0;                         // streams that read through the token bucket
  uint64_t payload_bytes = 0;                        // StreamChunk payload bytes received, all streams
  uint64_t messages = 0;                             // StreamChunk messages received, all streams
  LatencySamples fast, slow;                         // split by reader kind: slow readers' times are their own rate's

  uint64_t failed() const;  // sum of failed_by_code
  void Merge(RunStats&& other);
};

// How the run was carried out (not what it measured).
struct RunInfo {
  int fast_channels = 0, slow_channels = 0, stuck_channels = 0, threads = 0;
  int channels_not_ready = 0;        // not READY within connect_timeout_s when the clock started
  double connect_s = 0;              // time spent connecting channels (before the clock)
  double wall_s = 0;                 // first stream started to last stream ended
  double client_cpu_s = 0;           // this process, user + system, during wall_s
  std::vector<std::string> budgets;  // labels, in the weighted cycle's order of first use
};

// The exit status: 2 when any stream failed or failed verification (deliberate
// cancellations and interruptions do not count), else 0.
int ExitCode(const RunStats& stats);

nlohmann::json ReportJson(const LoadConfig& config, const RunStats& stats, const RunInfo& info);
std::string ReportText(const LoadConfig& config, const RunStats& stats, const RunInfo& info);

}  // namespace flexgs::loadgen

// What flexgs-loadgen is asked to do, parsed from its flags: the budget mix, the scene
// list, and the small pure helpers (deterministic per-stream choices, percentiles) that
// the runner and the report share. No gRPC here, so it can be tested on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flexgs::loadgen {

// Everything one run needs; filled from the flags by loadgen_main.cc, which validates it.
struct LoadConfig {
  std::string target;               // any gRPC target: HOST:PORT, dns:///name:port, unix:path
  std::vector<std::string> scenes;  // stream k asks scenes[k % size]
  int concurrency = 16;             // streams in flight at once
  uint64_t total = 0;               // streams to run; 0: run for duration_s instead
  double duration_s = 0;            // start streams until then, then let the last ones finish
  std::string budgets_text = "ratio:0.15";
  double slow_fraction = 0;  // share of streams that read through a token bucket
  double slow_rate_bytes_per_s = 0;
  std::string slow_rate_text;
  double cancel_fraction = 0;  // share of streams cancelled at a random message
  double stuck_fraction = 0;   // share of streams that stop reading after the header...
  double stuck_seconds = 60;   // ...for this long, then drain the call to see how it ended
  bool lossless = false;       // ENCODING_LOSSLESS instead of ENCODING_QUANTIZED
  bool verify = true;          // full decode (SceneAssembler); else sequence/CRC/trailer only
  double timeout_s = 60;       // per stream deadline
  uint64_t seed = 1;
  int channels = 0;                       // 0: ceil(concurrency / kStreamsPerChannel)
  int threads = 0;                        // 0: hardware threads (at most concurrency)
  uint32_t max_chunk_bytes = 0;           // 0: server default
  double connect_timeout_s = 10;          // channels are connected before the clock starts
  double progress_s = 10;                 // stderr progress line period; 0: none
  std::string tls_ca, tls_cert, tls_key;  // TLS / mutual TLS as flexgs-client; empty: plaintext
  std::string bearer_token;               // sent as "authorization: Bearer <token>" when set
};

// Default channel sharing. Each channel is its own HTTP/2 connection (local subchannel
// pool), and all of a channel's streams share that connection's MAX_CONCURRENT_STREAMS,
// its connection flow-control window and one TCP flow. 16 per connection keeps those
// out of what is measured, and gives a balancer tier (L4, or replicated L7 proxies in
// front of the servers) several connections to spread: it places connections, and a
// single one would pin the whole load to one proxy.
inline constexpr int kStreamsPerChannel = 16;

// One entry of --budgets: exactly one of ratio / bytes / gaussians is meaningful.
struct Budget {
  enum class Kind { kRatio, kBytes, kGaussians };
  Kind kind = Kind::kRatio;
  double ratio = 0;        // kRatio, in (0, 1]
  uint64_t bytes = 0;      // kBytes: StreamSceneRequest.memory_bytes
  uint64_t gaussians = 0;  // kGaussians, > 0
  int weight = 1;          // "@w": share of streams relative to the other entries
  std::string label;       // "ratio:0.05" as typed (weight left off), for reports
};

// Largest weight accepted: the weighted cycle holds sum(weights) entries.
inline constexpr int kMaxBudgetWeight = 1000;

// "ratio:0.05,ratio:0.15@3,bytes:2MiB,gaussians:20000". Sizes take the units of
// client::ParseByteSize. INVALID_ARGUMENT naming the bad entry for an unknown kind, a
// ratio outside (0, 1], a zero count or size, a weight outside 1..kMaxBudgetWeight, or
// an empty list.
absl::StatusOr<std::vector<Budget>> ParseBudgetMix(absl::string_view text);

// The order in which streams take budgets: smooth weighted round robin (as nginx
// balances upstreams), one cycle of sum(weights) indices into `budgets`. Each entry
// appears `weight` times, spread out rather than in runs, so any window of streams
// sees the mix; with equal weights it is plain round robin. Deterministic, so two runs
// with the same flags send the same requests.
std::vector<int> WeightedCycle(const std::vector<Budget>& budgets);

// --scene values, each possibly a comma list; empty items are errors, duplicates kept
// (a duplicate is a way to weight a scene).
absl::StatusOr<std::vector<std::string>> ParseSceneList(const std::vector<std::string>& values);

// A well-mixed 64-bit value for (seed, stream index): every stream's random choices
// (slow reader, cancelled, cancel point) depend only on these two, not on which thread
// ran it or when, so a run is reproducible with --seed.
uint64_t StreamSeed(uint64_t seed, uint64_t stream_index);

// Nearest-rank percentile of sorted samples (p in (0, 1]): p99 of 64 samples is the
// 64th, the worst, so a percentile is always a value that was observed and
// p50 <= p90 <= p99 <= max holds by construction. 0 for no samples.
double Percentile(const std::vector<double>& sorted, double p);

}  // namespace flexgs::loadgen

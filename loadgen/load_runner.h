// The load itself: `concurrency` StreamScene calls kept in flight against one target
// until `total` streams have run (or `duration_s` has passed), each verified as it
// arrives, with the timings and outcomes collected into RunStats.
#pragma once

#include "absl/status/statusor.h"
#include "loadgen/load_report.h"
#include "loadgen/load_spec.h"

namespace flexgs::loadgen {

// Runs the load described by `config` (flags already range-checked). INVALID_ARGUMENT
// only for a config that cannot run (bad budget mix, no scenes); everything that
// happens on the wire -- refused connections, gRPC errors, corrupt streams -- is counted
// in the returned RunStats, never returned as an error. `info` receives how the run was
// carried out.
//
// SIGINT and SIGTERM are blocked in the calling thread (and so in every thread started
// after, gRPC's included) and handled here: the first stops new streams and cancels
// those in flight, which are then counted as interrupted, and the report still comes
// out. Call it before anything else in the process starts threads.
absl::StatusOr<RunStats> RunLoad(const LoadConfig& config, RunInfo* info);

}  // namespace flexgs::loadgen

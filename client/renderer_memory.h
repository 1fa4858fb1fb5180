// The memory the client's renderer draws on, which an "auto" budget is a share of:
// the CUDA device's free memory when the CUDA renderer runs, else the host's
// MemAvailable. Here rather than in budget_spec.h because it needs the GPU code
// (kernels/), which flexgs_client_util does not link.
#pragma once

#include "absl/status/statusor.h"
#include "client/budget_spec.h"

namespace flexgs::client {

// With use_cuda, the current CUDA device's free memory (QueryCudaMemory; its
// UNAVAILABLE/INTERNAL passed on) as {free, "cuda:<name>"}; otherwise ProbeHostMemory().
absl::StatusOr<MemoryProbe> ProbeRendererMemory(bool use_cuda);

}  // namespace flexgs::client

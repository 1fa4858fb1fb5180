// The memory the client's renderer draws on, which an "auto" budget is a share of:
// the CUDA device's free memory when the CUDA renderer runs, else the host's
// MemAvailable. Here rather than in budget_spec.h because it needs the GPU code
// (kernels/), which flexgs_client_util does not link.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "client/budget_spec.h"

namespace flexgs::client {

// With use_cuda, the current CUDA device's free memory (QueryCudaMemory; its
// UNAVAILABLE/INTERNAL passed on) as {free, "cuda:<name>"}; otherwise ProbeHostMemory().
absl::StatusOr<MemoryProbe> ProbeRendererMemory(bool use_cuda);

// The probe an "auto" budget needs (ProbeRendererMemory), or none for other budgets.
absl::StatusOr<std::optional<MemoryProbe>> ProbeForBudget(const BudgetSpec& spec, bool use_cuda);

// A byte budget and where it came from ("explicit", "auto: 50% of ... available on
// ..."); 0 and "" for a ratio or Gaussian-count budget. `probe` must be set for "auto".
struct ByteBudget {
  uint64_t bytes = 0;
  std::string source;
};
absl::StatusOr<ByteBudget> ResolveByteBudget(const BudgetSpec& spec, const std::optional<MemoryProbe>& probe);

}  // namespace flexgs::client

// Client memory budget -> how many Gaussians (and which top ratio) it can hold.
//
// Resident bytes per Gaussian for SH degree d = the client's float32 layout,
// RawBytesPerGaussian(d) (56 B at SH 0 ... 236 B at SH 3), plus a per-Gaussian
// rendering overhead (projected footprint, colour, sort keys and tile lists, measured
// in the client; kRenderOverheadBytesPerGaussian). count = floor(bytes / per_gaussian),
// e_max = min(1, count / N).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"

namespace flexgs {

inline constexpr uint64_t kRenderOverheadBytesPerGaussian = 72;

uint64_t ResidentBytesPerGaussian(int sh_degree);

struct Budget {
  enum class Kind { kMemoryBytes, kRatio, kGaussians } kind = Kind::kRatio;
  double value = 0;  // bytes, ratio or count
};

struct BudgetDecision {
  double top_ratio = 0;         // e_max in (0, 1]
  uint64_t gaussians = 0;       // Gaussians at e_max
  uint64_t resident_bytes = 0;  // client bytes at e_max
};

// INVALID_ARGUMENT for zero, negative, NaN or absurd values (naming them);
// FAILED_PRECONDITION when the budget cannot hold the smallest level (floor(ladder[0] N),
// at least 1 Gaussian), with the minimum bytes in the message.
absl::StatusOr<BudgetDecision> DecideBudget(const Budget& budget, uint64_t model_gaussians, int sh_degree,
                                            const std::vector<double>& ladder);

}  // namespace flexgs

// What the user types for a memory budget, a link rate or a size, parsed into numbers.
//
//   --budget 512MiB | 1.5GB | 300000000 | auto | auto:0.5
//   --max-bandwidth 10Mbit | 2.5MB/s | 100kbit
//
// "auto" means a fraction (default kDefaultAutoFraction) of the memory the renderer
// would use: free GPU memory when the CUDA renderer runs, else the host's MemAvailable
// (/proc/meminfo). The GPU probe is client/renderer_memory.h: nothing here needs a GPU.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flexgs::client {

inline constexpr double kDefaultAutoFraction = 0.5;

// Bytes: a non-negative number with an optional unit B, kB/KB, MB, GB, TB (powers of
// 1000) or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive for the SI prefix
// letter, optional space. Fractions allowed ("1.5GiB"); the result is floored.
// INVALID_ARGUMENT naming the text for anything else, negative, NaN or > 2^62.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// A link rate in bytes per second: "<number><unit>" with unit bit/kbit/Mbit/Gbit
// (also bps/kbps/Mbps/Gbps; powers of 1000, bits) or B/s, kB/s, MB/s, GB/s, KiB/s,
// MiB/s (bytes). Must be > 0 and finite.
absl::StatusOr<double> ParseBitRate(absl::string_view text);

struct BudgetSpec {
  enum class Kind { kBytes, kRatio, kGaussians, kAuto };
  Kind kind = Kind::kAuto;
  uint64_t bytes = 0;                           // kBytes
  double ratio = 0;                             // kRatio, in (0, 1]
  uint64_t gaussians = 0;                       // kGaussians, > 0
  double auto_fraction = kDefaultAutoFraction;  // kAuto, in (0, 1]
};

// "--budget" text: a byte size, "auto" or "auto:<fraction>".
absl::StatusOr<BudgetSpec> ParseBudgetSpec(absl::string_view text);

// Where an "auto" budget comes from.
struct MemoryProbe {
  uint64_t available_bytes = 0;  // free GPU memory or host MemAvailable
  std::string source;            // "cuda:<device name>" or "host:/proc/meminfo"
};

// Host MemAvailable from `meminfo_path`. UNAVAILABLE when unreadable or unparsable.
absl::StatusOr<MemoryProbe> ProbeHostMemory(const std::string& meminfo_path = "/proc/meminfo");

// floor(fraction * probe.available_bytes); INVALID_ARGUMENT for a fraction outside (0, 1].
absl::StatusOr<uint64_t> AutoBudgetBytes(const MemoryProbe& probe, double fraction);

// Human-readable size ("512.0 MiB") for messages and the progress bar.
std::string FormatBytes(uint64_t bytes);

}  // namespace flexgs::client

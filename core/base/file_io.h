// Whole-file reads and crash-safe whole-file writes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flexgs {

// Default ceiling for ReadFileToString: 64 GiB, far above any real scene but low
// enough that a corrupt size or a runaway device file cannot exhaust memory.
inline constexpr uint64_t kDefaultMaxFileBytes = uint64_t{1} << 36;

// Reads the whole file at `path`. Errors (all mention the path):
//   NotFound          the file does not exist
//   PermissionDenied  it cannot be opened for reading
//   InvalidArgument   it is a directory
//   ResourceExhausted it is larger than `max_bytes`
//   DataLoss          a read failed or the file shrank while being read
absl::StatusOr<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes = kDefaultMaxFileBytes);

// Replaces the file at `path` with `data` so that readers see either the old
// contents or the new, never a mix: writes a temporary file in the same
// directory, fsyncs it, then renames it over `path`. The temporary file is
// removed on failure. The new file gets mode 0644.
absl::Status WriteFileAtomically(const std::string& path, std::string_view data);

}  // namespace flexgs

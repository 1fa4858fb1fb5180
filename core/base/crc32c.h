// CRC-32C (Castagnoli), as used by iSCSI, GCS and gRPC-adjacent protocols: the
// checksum every stream message carries over its payload.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace flexgs {

// Extends `crc` (0 to start) over `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);
inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

}  // namespace flexgs

#include "client/renderer_memory.h"

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"

namespace flexgs::client {

absl::StatusOr<MemoryProbe> ProbeRendererMemory(bool use_cuda) {
  if (!use_cuda) return ProbeHostMemory();
  auto info = QueryCudaMemory();
  if (!info.ok()) return info.status();
  return MemoryProbe{info->free_bytes, absl::StrCat("cuda:", info->device_name)};
}

}  // namespace flexgs::client

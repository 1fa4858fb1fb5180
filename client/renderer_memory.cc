#include "client/renderer_memory.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/backend.h"

namespace flexgs::client {

absl::StatusOr<MemoryProbe> ProbeRendererMemory(bool use_cuda) {
  if (!use_cuda) return ProbeHostMemory();
  auto info = QueryCudaMemory();
  if (!info.ok()) return info.status();
  return MemoryProbe{info->free_bytes, absl::StrCat("cuda:", info->device_name)};
}

absl::StatusOr<std::optional<MemoryProbe>> ProbeForBudget(const BudgetSpec& spec, bool use_cuda) {
  if (spec.kind != BudgetSpec::Kind::kAuto) return std::optional<MemoryProbe>();
  auto probe = ProbeRendererMemory(use_cuda);
  if (!probe.ok()) return probe.status();
  return std::optional<MemoryProbe>(*std::move(probe));
}

absl::StatusOr<ByteBudget> ResolveByteBudget(const BudgetSpec& spec, const std::optional<MemoryProbe>& probe) {
  ByteBudget budget;
  if (spec.kind == BudgetSpec::Kind::kAuto) {
    if (!probe) return absl::InvalidArgumentError("an auto budget needs a memory probe");
    auto bytes = AutoBudgetBytes(*probe, spec.auto_fraction);
    if (!bytes.ok()) return bytes.status();
    budget.bytes = *bytes;
    budget.source = absl::StrFormat("auto: %.0f%% of %s available on %s", spec.auto_fraction * 100,
                                    FormatBytes(probe->available_bytes), probe->source);
  } else if (spec.kind == BudgetSpec::Kind::kBytes) {
    budget.bytes = spec.bytes;
    budget.source = "explicit";
  }
  return budget;
}

}  // namespace flexgs::client

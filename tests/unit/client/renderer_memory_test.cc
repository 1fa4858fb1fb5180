// The renderer's memory probe (client/renderer_memory.h) and the CUDA free-memory query
// it relies on (kernels/backend.h): host MemAvailable without CUDA, the device's free
// memory or UNAVAILABLE with the reason with it.
#include "client/renderer_memory.h"

#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"

namespace flexgs::client {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ProbeRendererMemoryTest, HostWithoutCuda) {
  if (!std::ifstream("/proc/meminfo")) GTEST_SKIP() << "no /proc/meminfo on this system";
  auto probe = ProbeRendererMemory(/*use_cuda=*/false);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->source, "host:/proc/meminfo");
  EXPECT_GT(probe->available_bytes, 0u);
}

TEST(ProbeRendererMemoryTest, CudaIsFreeDeviceMemoryOrUnavailable) {
  std::string why;
  const bool available = CudaAvailable(&why);
  auto probe = ProbeRendererMemory(/*use_cuda=*/true);
  if (!available) {
    ASSERT_EQ(probe.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(probe.status().message(), HasSubstr(why));
    return;
  }
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_GT(probe->available_bytes, 0u);
  EXPECT_THAT(probe->source, StartsWith("cuda:"));
  EXPECT_GT(probe->source.size(), std::string("cuda:").size());
}

TEST(QueryCudaMemoryTest, UnavailableWithReasonOrPlausibleNumbers) {
  std::string why;
  const bool available = CudaAvailable(&why);
  auto info = QueryCudaMemory();
  if (!available) {
    ASSERT_EQ(info.status().code(), absl::StatusCode::kUnavailable) << info.status();
    EXPECT_FALSE(info.status().message().empty());
    EXPECT_FALSE(why.empty());
    EXPECT_THAT(info.status().message(), HasSubstr(why));
    return;
  }
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GT(info->free_bytes, 0u);
  EXPECT_GE(info->total_bytes, info->free_bytes);
  EXPECT_FALSE(info->device_name.empty());
}

TEST(ResolveByteBudgetTest, ExplicitAutoAndOtherKinds) {
  auto explicit_spec = ParseBudgetSpec("64MiB");
  ASSERT_TRUE(explicit_spec.ok());
  auto none = ProbeForBudget(*explicit_spec, /*use_cuda=*/false);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "only an auto budget depends on the machine";
  auto b = ResolveByteBudget(*explicit_spec, std::nullopt);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->bytes, 64u << 20);
  EXPECT_EQ(b->source, "explicit");

  auto auto_spec = ParseBudgetSpec("auto:0.25");
  ASSERT_TRUE(auto_spec.ok());
  const MemoryProbe probe{uint64_t{1} << 30, "host"};
  b = ResolveByteBudget(*auto_spec, probe);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->bytes, uint64_t{1} << 28);
  EXPECT_THAT(b->source, HasSubstr("auto: 25% of"));
  EXPECT_THAT(b->source, HasSubstr("on host"));
  EXPECT_EQ(ResolveByteBudget(*auto_spec, std::nullopt).status().code(), absl::StatusCode::kInvalidArgument);

  BudgetSpec ratio;
  ratio.kind = BudgetSpec::Kind::kRatio;
  ratio.ratio = 0.1;
  b = ResolveByteBudget(ratio, std::nullopt);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->bytes, 0u);
  EXPECT_EQ(b->source, "");
}

}  // namespace
}  // namespace flexgs::client

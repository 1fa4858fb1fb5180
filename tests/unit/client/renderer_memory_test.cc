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

}  // namespace
}  // namespace flexgs::client

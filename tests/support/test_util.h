// Helpers shared by tests: locating the shared scenes and scratch directories.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

// Defined in AddressSanitizer builds (GCC: __SANITIZE_ADDRESS__, clang: __has_feature),
// for the few checks ASan changes the meaning of (peak RSS, impossible allocations).
#if defined(__SANITIZE_ADDRESS__)
#define FLEXGS_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLEXGS_TEST_UNDER_ASAN 1
#endif
#endif

namespace flexgs::testing {

// Directory holding guitar.ply etc. (env FLEXGS_DATA_DIR overrides the build default).
inline std::filesystem::path DataDir() {
  if (const char* env = std::getenv("FLEXGS_DATA_DIR"); env && *env) return env;
  return FLEXGS_DATA_DIR;
}

// Path of a shared scene, or "" when it is missing (callers GTEST_SKIP with the reason).
inline std::string DataFile(const std::string& name) {
  auto p = DataDir() / name;
  return std::filesystem::exists(p) ? p.string() : std::string();
}

#define FLEXGS_REQUIRE_DATA(var, name)                                                        \
  const std::string var = ::flexgs::testing::DataFile(name);                                  \
  if (var.empty())                                                                            \
  GTEST_SKIP() << "shared scene " << name << " not found in " << ::flexgs::testing::DataDir() \
               << " (set FLEXGS_DATA_DIR)"

// A fresh, empty scratch directory unique to the running test.
inline std::filesystem::path ScratchDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = std::filesystem::temp_directory_path() / "flexgs-tests" /
             (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace flexgs::testing

// Client utilities: budget/rate parsing, the host memory probe, the token bucket and the
// progress line (client/budget_spec.h, client/token_bucket.h, client/progress_bar.h).
// The renderer's (GPU) memory probe is tested in renderer_memory_test.cc.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/budget_spec.h"
#include "client/progress_bar.h"
#include "client/token_bucket.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_util.h"

namespace flexgs::client {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024, kTiB = kGiB * 1024;

// ---------------------------------------------------------------------------------------------
// ParseByteSize

TEST(ParseByteSizeTest, AcceptsPlainNumbersAndEveryUnit) {
  const struct {
    const char* text;
    uint64_t bytes;
  } cases[] = {
      {"0", 0},
      {"300000000", 300000000},
      {"1B", 1},
      {"1kB", 1000},
      {"1KB", 1000},
      {"2MB", 2000000},
      {"3GB", 3000000000},
      {"4TB", 4000000000000},
      {"1KiB", kKiB},
      {"1kiB", kKiB},
      {"512MiB", 512 * kMiB},
      {"2GiB", 2 * kGiB},
      {"4TiB", 4 * kTiB},
      {"1.5GB", 1500000000},
      {"1.5GiB", 3 * kGiB / 2},
      {"1 MiB", kMiB},
      {"  7 kB\t", 7000},
      {".5kB", 500},
      {"1.", 1},
      {"007", 7},
  };
  for (const auto& c : cases) {
    auto bytes = ParseByteSize(c.text);
    ASSERT_TRUE(bytes.ok()) << "'" << c.text << "': " << bytes.status();
    EXPECT_EQ(*bytes, c.bytes) << "'" << c.text << "'";
  }
}

TEST(ParseByteSizeTest, FractionsAreFlooredExactly) {
  EXPECT_EQ(*ParseByteSize("0.5B"), 0u);
  EXPECT_EQ(*ParseByteSize("1.9999B"), 1u);
  EXPECT_EQ(*ParseByteSize("0.1TiB"), 109951162777u);  // 1099511627776 / 10, floored
  EXPECT_EQ(*ParseByteSize("0.001KiB"), 1u);           // 1.024
  // 2^-40 TiB is exactly one byte; any rounding through double or truncated digits would give 0.
  EXPECT_EQ(*ParseByteSize("0.0000000000009094947017729282379150390625TiB"), 1u);
  EXPECT_EQ(*ParseByteSize("0.0000000000009094947017729282379150390624TiB"), 0u);
}

TEST(ParseByteSizeTest, LimitIsTwoToThe62) {
  constexpr uint64_t kLimit = uint64_t{1} << 62;
  EXPECT_EQ(*ParseByteSize("4611686018427387904"), kLimit);
  EXPECT_EQ(*ParseByteSize("4194304TiB"), kLimit);
  for (const char* text : {"4611686018427387905", "4194304.000001TiB", "4194305TiB", "99999999999999999999999999",
                           "18446744073709551616", "184467440737095516160", "36893488147419103232"}) {
    auto bytes = ParseByteSize(text);
    ASSERT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(bytes.status().message(), HasSubstr(text));
    EXPECT_THAT(bytes.status().message(), HasSubstr("too large"));
    EXPECT_THAT(bytes.status().message(), HasSubstr("2^62"));
  }
}

TEST(ParseByteSizeTest, UnknownUnitNamesTextUnitAndTheAcceptedOnes) {
  auto bytes = ParseByteSize("12XB");
  ASSERT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bytes.status().message(),
            "size '12XB': unknown unit 'XB' (expected B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)");
}

TEST(ParseByteSizeTest, RejectsBadInputNamingTheTextAndWhatIsExpected) {
  const struct {
    const char* text;
    const char* problem;
  } cases[] = {
      {"", "empty"},
      {"   ", "empty"},
      {"-1", "negative"},
      {"-0.5GB", "negative"},
      {"+5", "sign"},
      {"nan", "not a finite number"},
      {"NaN", "not a finite number"},
      {"inf", "not a finite number"},
      {"Infinity", "not a finite number"},
      {"MB", "not a number"},
      {"abc", "not a number"},
      {"12MB extra", "unknown unit 'MB extra'"},
      {"1.2.3", "unknown unit '.3'"},
      {"1,000", "unknown unit ',000'"},
      {"0x10", "unknown unit 'x10'"},
      {"12 mb", "unknown unit 'mb'"},  // lower-case b reads as bits
      {"12Mib", "unknown unit 'Mib'"},
      {"1e9", "exponents are not supported"},
      {"1E+3", "exponents are not supported"},
  };
  for (const auto& c : cases) {
    auto bytes = ParseByteSize(c.text);
    ASSERT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument) << "'" << c.text << "'";
    const std::string message(bytes.status().message());
    EXPECT_THAT(message, HasSubstr(std::string("'") + c.text + "'"));
    EXPECT_THAT(message, HasSubstr(c.problem)) << message;
    EXPECT_THAT(message, HasSubstr("(expected ")) << message;
  }
}

TEST(ParseByteSizeTest, ControlCharactersAreEscapedInTheMessage) {
  auto bytes = ParseByteSize("5\x1b[2J");
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(std::string(bytes.status().message()).find('\x1b'), std::string::npos);
  EXPECT_THAT(bytes.status().message(), HasSubstr("\\x1b"));
}

// ---------------------------------------------------------------------------------------------
// ParseBitRate

TEST(ParseBitRateTest, BitAndByteUnits) {
  const struct {
    const char* text;
    double bytes_per_s;
  } cases[] = {
      {"10Mbit", 1.25e6}, {"100kbit", 12500},  {"8bit", 1},
      {"1Gbit", 1.25e8},  {"10Mbps", 1.25e6},  {"8bps", 1},
      {"1kbps", 125},     {"2Gbps", 2.5e8},    {"10 Mbit/s", 1.25e6},
      {"10mbit", 1.25e6}, {"10Kbit", 1250},    {"1B/s", 1},
      {"1kB/s", 1000},    {"2.5MB/s", 2.5e6},  {"1GB/s", 1e9},
      {"1KiB/s", 1024},   {"1MiB/s", 1048576}, {"1GiB/s", 1073741824},
      {"0.5Mbit", 62500}, {" 3 MB/s ", 3e6},
  };
  for (const auto& c : cases) {
    auto rate = ParseBitRate(c.text);
    ASSERT_TRUE(rate.ok()) << "'" << c.text << "': " << rate.status();
    EXPECT_DOUBLE_EQ(*rate, c.bytes_per_s) << "'" << c.text << "'";
  }
}

TEST(ParseBitRateTest, RejectsZeroNegativeNonFiniteMissingOrUnknownUnits) {
  const struct {
    const char* text;
    const char* problem;
  } cases[] = {
      {"0Mbit", "greater than 0"},
      {"0.0B/s", "greater than 0"},
      {"-1Mbit", "negative"},
      {"nanMbit", "not a finite number"},
      {"inf", "not a finite number"},
      {"", "empty"},
      {"10", "missing unit"},
      {"Mbit", "not a number"},
      {"10Xbit", "unknown unit 'Xbit'"},
      {"10Mb", "unknown unit 'Mb'"},  // bits or bytes? refuse to guess
      {"10Tbit", "unknown unit 'Tbit'"},
      {"10Mbit extra", "unknown unit 'Mbit extra'"},
      {"1e3Mbit", "exponents are not supported"},
  };
  for (const auto& c : cases) {
    auto rate = ParseBitRate(c.text);
    ASSERT_EQ(rate.status().code(), absl::StatusCode::kInvalidArgument) << "'" << c.text << "'";
    const std::string message(rate.status().message());
    EXPECT_THAT(message, StartsWith(std::string("--max-bandwidth '") + c.text + "'"));
    EXPECT_THAT(message, HasSubstr(c.problem)) << message;
    EXPECT_THAT(message, HasSubstr("(expected ")) << message;
  }
}

TEST(ParseBitRateTest, OverflowingDigitsAreTooLarge) {
  const std::string huge = std::string(400, '9') + "MB/s";
  auto rate = ParseBitRate(huge);
  ASSERT_EQ(rate.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rate.status().message(), HasSubstr("too large"));
}

// ---------------------------------------------------------------------------------------------
// ParseBudgetSpec

TEST(ParseBudgetSpecTest, Bytes) {
  auto spec = ParseBudgetSpec("512MiB");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind, BudgetSpec::Kind::kBytes);
  EXPECT_EQ(spec->bytes, 512 * kMiB);
  spec = ParseBudgetSpec("300000000");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->bytes, 300000000u);
}

TEST(ParseBudgetSpecTest, Auto) {
  for (const char* text : {"auto", "AUTO", " auto "}) {
    auto spec = ParseBudgetSpec(text);
    ASSERT_TRUE(spec.ok()) << text << ": " << spec.status();
    EXPECT_EQ(spec->kind, BudgetSpec::Kind::kAuto);
    EXPECT_DOUBLE_EQ(spec->auto_fraction, kDefaultAutoFraction);
  }
  auto spec = ParseBudgetSpec("auto:0.25");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind, BudgetSpec::Kind::kAuto);
  EXPECT_DOUBLE_EQ(spec->auto_fraction, 0.25);
  spec = ParseBudgetSpec("auto:1");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_DOUBLE_EQ(spec->auto_fraction, 1.0);
  spec = ParseBudgetSpec("auto:.75");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_DOUBLE_EQ(spec->auto_fraction, 0.75);
}

TEST(ParseBudgetSpecTest, UnknownUnitMessage) {
  auto spec = ParseBudgetSpec("12XB");
  ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spec.status().message(),
            "--budget '12XB': unknown unit 'XB' (expected B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)");
}

TEST(ParseBudgetSpecTest, RejectsBadFractionsZeroAndGarbage) {
  const struct {
    const char* text;
    const char* problem;
  } cases[] = {
      {"auto:0", "outside (0, 1]"},
      {"auto:0.0", "outside (0, 1]"},
      {"auto:1.5", "outside (0, 1]"},
      {"auto:1.0000001", "outside (0, 1]"},
      {"auto:", "empty"},
      {"auto:-0.5", "negative"},
      {"auto:nan", "not a finite number"},
      {"auto:inf", "not a finite number"},
      {"auto:0.5x", "unexpected 'x'"},
      {"auto:50%", "unexpected '%'"},
      {"automatic", "not a number"},
      {"0", "greater than 0"},
      {"0MiB", "greater than 0"},
      {"-5MB", "negative"},
      {"", "empty"},
      {"lots", "not a number"},
      {"5000000000000000000", "too large"},
  };
  for (const auto& c : cases) {
    auto spec = ParseBudgetSpec(c.text);
    ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << "'" << c.text << "'";
    const std::string message(spec.status().message());
    EXPECT_THAT(message, StartsWith(std::string("--budget '") + c.text + "'"));
    EXPECT_THAT(message, HasSubstr(c.problem)) << message;
    EXPECT_THAT(message, HasSubstr("(expected ")) << message;
  }
  // A word that is not a size says that "auto" is an option too.
  EXPECT_THAT(ParseBudgetSpec("lots").status().message(), HasSubstr("'auto'"));
}

// ---------------------------------------------------------------------------------------------
// Memory probes and the auto budget

std::string WriteFile(const std::string& name, const std::string& content) {
  const std::string path = (flexgs::testing::ScratchDir() / name).string();
  std::ofstream(path) << content;
  return path;
}

TEST(ProbeHostMemoryTest, ReadsMemAvailableInKiB) {
  const std::string path = WriteFile("meminfo",
                                     "MemTotal:       32768000 kB\n"
                                     "MemFree:         1000000 kB\n"
                                     "MemAvailable:   16384000 kB\n"
                                     "Buffers:          200000 kB\n");
  auto probe = ProbeHostMemory(path);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->available_bytes, uint64_t{16384000} * 1024);
  EXPECT_EQ(probe->source, "host:" + path);
}

TEST(ProbeHostMemoryTest, UnreadableOrUnparsableIsUnavailableNamingThePath) {
  const std::string missing = (flexgs::testing::ScratchDir() / "no-such-meminfo").string();
  auto probe = ProbeHostMemory(missing);
  ASSERT_EQ(probe.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(probe.status().message(), HasSubstr(missing));

  const struct {
    const char* content;
    const char* problem;
  } cases[] = {
      {"MemTotal: 1000 kB\nMemFree: 10 kB\n", "no MemAvailable"},
      {"", "no MemAvailable"},
      {"MemAvailable: lots kB\n", "cannot parse"},
      {"MemAvailable: 1000\n", "cannot parse"},
      {"MemAvailable: 1000 MB\n", "cannot parse"},
      {"MemAvailable: -1000 kB\n", "cannot parse"},
      {"MemAvailable: 12x34 kB\n", "cannot parse"},
      {"MemAvailable: 99999999999999999999999 kB\n", "cannot parse"},
      {"MemAvailable: 18446744073709551615 kB\n", "implausibly large"},
  };
  for (const auto& c : cases) {
    const std::string path = WriteFile("meminfo", c.content);
    probe = ProbeHostMemory(path);
    ASSERT_EQ(probe.status().code(), absl::StatusCode::kUnavailable) << c.content;
    EXPECT_THAT(probe.status().message(), HasSubstr(path));
    EXPECT_THAT(probe.status().message(), HasSubstr(c.problem)) << probe.status();
  }
}

TEST(ProbeHostMemoryTest, RealProcMeminfo) {
  if (!std::ifstream("/proc/meminfo")) GTEST_SKIP() << "no /proc/meminfo on this system";
  auto probe = ProbeHostMemory();
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_GT(probe->available_bytes, 0u);
  EXPECT_EQ(probe->source, "host:/proc/meminfo");
}

TEST(AutoBudgetBytesTest, FloorOfFraction) {
  EXPECT_EQ(*AutoBudgetBytes({1000, "t"}, 0.5), 500u);
  EXPECT_EQ(*AutoBudgetBytes({1000, "t"}, 1.0 / 3.0), 333u);
  EXPECT_EQ(*AutoBudgetBytes({1001, "t"}, 0.5), 500u);
  EXPECT_EQ(*AutoBudgetBytes({0, "t"}, 0.5), 0u);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(*AutoBudgetBytes({max, "t"}, 1.0), max);
  EXPECT_LE(*AutoBudgetBytes({max, "t"}, 0.9999999999), max);
  EXPECT_EQ(*AutoBudgetBytes({16 * kGiB, "t"}, kDefaultAutoFraction), 8 * kGiB);
}

TEST(AutoBudgetBytesTest, RejectsFractionsOutsideZeroOne) {
  for (double f : {0.0, -0.5, 1.5, std::nan(""), std::numeric_limits<double>::infinity()}) {
    auto bytes = AutoBudgetBytes({1000, "t"}, f);
    ASSERT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument) << f;
    EXPECT_THAT(bytes.status().message(), HasSubstr("(0, 1]"));
  }
}

TEST(FormatBytesTest, BinaryUnitsWithOneDecimal) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(512 * kMiB), "512.0 MiB");
  EXPECT_EQ(FormatBytes(kMiB - 1), "1.0 MiB");  // never "1024.0 KiB"
  EXPECT_EQ(FormatBytes(3 * kGiB / 2), "1.5 GiB");
  EXPECT_EQ(FormatBytes(2 * kTiB), "2.0 TiB");
  EXPECT_EQ(FormatBytes(uint64_t{1} << 62), "4.0 EiB");
  EXPECT_EQ(FormatBytes(std::numeric_limits<uint64_t>::max()), "16.0 EiB");
}

// ---------------------------------------------------------------------------------------------
// TokenBucket

using Clock = TokenBucket::Clock;

// A clock that only moves when the bucket sleeps (or the test advances it).
struct FakeClock {
  Clock::time_point now{};
  std::vector<Clock::duration> sleeps;

  TokenBucket Bucket(double rate, double burst) {
    return TokenBucket(
        rate, burst,
        [this](Clock::duration d) {
          sleeps.push_back(d);
          now += d;
        },
        [this] { return now; });
  }
  void Advance(double seconds) { now += std::chrono::duration_cast<Clock::duration>(Seconds(seconds)); }
  double Elapsed() const { return Seconds(now.time_since_epoch()).count(); }
  using Seconds = std::chrono::duration<double>;
};

double ToSeconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The wait is rounded up to the clock tick, so allow one tick of slack.
constexpr double kTick = std::chrono::duration<double>(Clock::duration(1)).count();

TEST(TokenBucketTest, StartsFullSoOneBurstPassesWithoutWaiting) {
  FakeClock clock;
  TokenBucket bucket = clock.Bucket(1000, 5000);
  EXPECT_EQ(bucket.rate(), 1000);
  EXPECT_EQ(bucket.Acquire(3000), Clock::duration::zero());
  EXPECT_EQ(bucket.Acquire(2000), Clock::duration::zero());
  EXPECT_TRUE(clock.sleeps.empty());
  // Empty now: 1000 bytes at 1000 B/s take exactly one second.
  EXPECT_EQ(bucket.Acquire(1000), std::chrono::seconds(1));
  ASSERT_EQ(clock.sleeps.size(), 1u);
  EXPECT_EQ(clock.sleeps[0], std::chrono::seconds(1));
}

TEST(TokenBucketTest, SleepsExactlyForTheMissingTokens) {
  FakeClock clock;
  TokenBucket bucket = clock.Bucket(1000, 500);
  EXPECT_EQ(bucket.Acquire(500), Clock::duration::zero());
  clock.Advance(0.2);  // refills 200
  const double waited = ToSeconds(bucket.Acquire(300));
  EXPECT_NEAR(waited, 0.1, kTick);
  EXPECT_GE(waited, 0.1 - 1e-12);  // never short
  // Now empty again, with the fake clock exactly at the end of the wait.
  EXPECT_NEAR(ToSeconds(bucket.Acquire(250)), 0.25, kTick);
}

TEST(TokenBucketTest, IdleTimeRefillsOnlyUpToTheBurst) {
  FakeClock clock;
  TokenBucket bucket = clock.Bucket(1000, 500);
  EXPECT_EQ(bucket.Acquire(500), Clock::duration::zero());
  clock.Advance(100);  // would be 100000 tokens without the cap
  EXPECT_EQ(bucket.Acquire(500), Clock::duration::zero());
  EXPECT_NEAR(ToSeconds(bucket.Acquire(500)), 0.5, kTick);
}

TEST(TokenBucketTest, LargeMessageGoesIntoDebtThatTheNextCallPaysOff) {
  FakeClock clock;
  TokenBucket bucket = clock.Bucket(1000, 100);
  // Bigger than the burst: allowed at once from a full bucket, leaving 9900 bytes of debt.
  EXPECT_EQ(bucket.Acquire(10000), Clock::duration::zero());
  EXPECT_NEAR(ToSeconds(bucket.Acquire(1)), 9.901, kTick);
  // From an empty bucket a large message waits for a full burst, then takes the debt.
  EXPECT_NEAR(ToSeconds(bucket.Acquire(10000)), 0.1, kTick);
  EXPECT_NEAR(ToSeconds(bucket.Acquire(100)), 10.0, kTick);
  EXPECT_NEAR(clock.Elapsed(), 9.901 + 0.1 + 10.0, 4 * kTick);
}

TEST(TokenBucketTest, ZeroSizeAcquireNeverWaitsEvenInDebt) {
  FakeClock clock;
  TokenBucket bucket = clock.Bucket(1000, 100);
  EXPECT_EQ(bucket.Acquire(0), Clock::duration::zero());
  EXPECT_EQ(bucket.Acquire(5000), Clock::duration::zero());
  EXPECT_EQ(bucket.Acquire(0), Clock::duration::zero());
  EXPECT_TRUE(clock.sleeps.empty());
  // The debt is still owed.
  EXPECT_NEAR(ToSeconds(bucket.Acquire(1)), 4.901, kTick);
}

TEST(TokenBucketTest, LongRunRateWithinOnePercentForVariedMessageSizes) {
  constexpr double kRate = 1.25e6;  // 10 Mbit/s
  constexpr double kBurst = 64 * 1024;
  FakeClock clock;
  TokenBucket bucket = clock.Bucket(kRate, kBurst);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> size(1, 300000);  // many above the burst, many far below
  std::uniform_real_distribution<double> work(0, 0.02);     // the consumer's own time per message
  uint64_t total = 0;
  for (int i = 0; i < 5000; ++i) {
    const uint64_t bytes = i % 10 == 0 ? 1 : size(rng);  // and some tiny ones
    const double before = clock.Elapsed();
    const Clock::duration waited = bucket.Acquire(bytes);
    EXPECT_NEAR(clock.Elapsed() - before, ToSeconds(waited), 1e-9);
    // Never ahead of the schedule: what has passed (this message counting up to the burst)
    // fits in the initial burst plus the rate times the elapsed time.
    EXPECT_LE(static_cast<double>(total) + std::min(static_cast<double>(bytes), kBurst),
              kBurst + kRate * clock.Elapsed() + 1e-3)
        << "message " << i;
    total += bytes;
    clock.Advance(work(rng));
  }
  const double rate = static_cast<double>(total) / clock.Elapsed();
  EXPECT_NEAR(rate, kRate, 0.01 * kRate) << total << " bytes in " << clock.Elapsed() << " s";
  EXPECT_GT(clock.Elapsed(), 100.0);  // long enough that the initial burst does not matter
}

TEST(TokenBucketTest, OversleepIsCreditedAndEarlyWakeIsNotDoubleCounted) {
  constexpr double kRate = 1e6;
  Clock::time_point now{};
  double factor = 1.5;  // the "real" sleep lasts this multiple of what was asked
  TokenBucket bucket(
      kRate, 1000, [&](Clock::duration d) { now += std::chrono::duration_cast<Clock::duration>(d * factor); },
      [&] { return now; });
  uint64_t total = 0;
  for (int i = 0; i < 2000; ++i) {
    factor = i % 2 == 0 ? 1.5 : 0.5;  // alternate long and short sleeps
    bucket.Acquire(5000);
    total += 5000;
  }
  const double elapsed = std::chrono::duration<double>(now.time_since_epoch()).count();
  EXPECT_NEAR(static_cast<double>(total) / elapsed, kRate, 0.01 * kRate);
}

TEST(TokenBucketTest, InvalidArgumentsDegradeSafely) {
  FakeClock clock;
  // A burst below one byte acts as one byte: the bucket starts with 1 token.
  TokenBucket tiny = clock.Bucket(1, 0);
  EXPECT_EQ(tiny.Acquire(1), Clock::duration::zero());
  EXPECT_NEAR(ToSeconds(tiny.Acquire(1)), 1.0, kTick);
  // A rate that cannot pace (0, NaN, inf) does not divide by zero or sleep forever.
  for (double rate : {0.0, -5.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    TokenBucket unlimited = clock.Bucket(rate, 10);
    EXPECT_EQ(unlimited.Acquire(1000000), Clock::duration::zero()) << rate;
    EXPECT_EQ(unlimited.Acquire(1000000), Clock::duration::zero()) << rate;
  }
}

TEST(TokenBucketTest, RealClockSleepsAtLeastTheReturnedTime) {
  TokenBucket bucket(1e6, 1000);  // 1 MB/s: 1000 bytes = 1 ms
  EXPECT_EQ(bucket.Acquire(1000), Clock::duration::zero());
  const auto start = Clock::now();
  const Clock::duration waited = bucket.Acquire(2000);  // waits for a full burst, then owes 1000
  const Clock::duration waited2 = bucket.Acquire(1);
  const auto spent = Clock::now() - start;
  EXPECT_GT(waited, Clock::duration::zero());
  EXPECT_GE(spent, waited + waited2);
  EXPECT_LT(spent, std::chrono::seconds(2));
}

// ---------------------------------------------------------------------------------------------
// FormatProgressLine

TEST(FormatProgressLineTest, FullLine) {
  ProgressState s;
  s.level = 1;
  s.levels = 4;
  s.ratio = 0.10;
  s.bytes = 2000000;
  s.total_bytes = 4400000;
  s.seconds = 2.0;
  // 2e6/4.4e6 of 20 = 9.09 -> 9 '#'; 1e6 B/s = 8.0 Mbit/s; 2.4e6 B left = 2.4 s -> 3s.
  EXPECT_EQ(FormatProgressLine(s), "level 2/4 (10%)  [#########-----------]  1.9 MiB/4.2 MiB  8.0 Mbit/s  ETA 3s");
}

TEST(FormatProgressLineTest, UnknownTotalHasNoBarAndNoEta) {
  ProgressState s;
  s.level = 0;
  s.levels = 3;
  s.ratio = 0.01;
  s.bytes = kMiB;
  s.seconds = 1.0;
  EXPECT_EQ(FormatProgressLine(s), "level 1/3 (1%)  1.0 MiB  8.4 Mbit/s");
}

TEST(FormatProgressLineTest, ZeroSecondsHasNoRateAndNoEta) {
  ProgressState s;
  s.levels = 2;
  s.ratio = 0.05;
  s.total_bytes = 1024;
  EXPECT_EQ(FormatProgressLine(s, 10), "level 1/2 (5%)  [----------]  0 B/1.0 KiB");
  s.seconds = std::nan("");
  EXPECT_EQ(FormatProgressLine(s, 10), "level 1/2 (5%)  [----------]  0 B/1.0 KiB");
}

TEST(FormatProgressLineTest, BeforeTheHeaderOnlyBytes) {
  ProgressState s;
  EXPECT_EQ(FormatProgressLine(s), "level -  0 B");
}

TEST(FormatProgressLineTest, EtaInMinutesAndDone) {
  ProgressState s;
  s.levels = 5;
  s.level = 4;
  s.ratio = 1.0;
  s.total_bytes = 100000000;
  s.bytes = 1000000;
  s.seconds = 1.0;
  EXPECT_EQ(FormatProgressLine(s, 4), "level 5/5 (100%)  [----]  976.6 KiB/95.4 MiB  8.0 Mbit/s  ETA 1min39s");
  s.seconds = 1e6;  // 1 MB in 11.6 days: the estimate is shown as "a very long time"
  EXPECT_THAT(FormatProgressLine(s, 4), HasSubstr("  ETA >999min"));
  s.seconds = 1.0;
  s.bytes = s.total_bytes;
  EXPECT_EQ(FormatProgressLine(s, 4), "level 5/5 (100%)  [####]  95.4 MiB/95.4 MiB  800.0 Mbit/s  ETA 0s");
  s.bytes = s.total_bytes + 5;  // more than announced: the bar stays full
  EXPECT_THAT(FormatProgressLine(s, 4), HasSubstr("[####]"));
}

TEST(FormatProgressLineTest, SlowRatesAndOddRatiosStayReadable) {
  ProgressState s;
  s.levels = 3;
  s.level = 7;  // out of range: clamped to the last level
  s.ratio = 0.025;
  s.bytes = 12500;
  s.total_bytes = 1000000;
  s.seconds = 1.0;
  // 100 kbit/s; 987500 B left at 12500 B/s = 79 s.
  EXPECT_EQ(FormatProgressLine(s, 0), "level 3/3 (2.5%)  12.2 KiB/976.6 KiB  0.10 Mbit/s  ETA 1min19s");
  s.ratio = std::nan("");
  EXPECT_THAT(FormatProgressLine(s, 0), StartsWith("level 3/3  "));
  s.bytes = 0;  // nothing yet after a second: rate 0, no ETA
  EXPECT_EQ(FormatProgressLine(s, 0), "level 3/3  0 B/976.6 KiB  0.00 Mbit/s");
}

// ---------------------------------------------------------------------------------------------
// ProgressBar

std::string ReadAll(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string content;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) content.append(buf, n);
  return content;
}

ProgressState State(uint64_t bytes) {
  ProgressState s;
  s.levels = 2;
  s.ratio = 0.5;
  s.bytes = bytes;
  s.total_bytes = 4096;
  s.seconds = 1;
  return s;
}

std::string Drawn(const ProgressState& s) { return "\r" + FormatProgressLine(s) + "\x1b[K"; }

TEST(ProgressBarTest, DisabledWritesNothing) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(f, /*enabled=*/false, std::chrono::milliseconds(0));
    bar.Update(State(1));
    bar.Update(State(2));
    bar.Finish();
  }
  EXPECT_EQ(ReadAll(f), "");
  std::fclose(f);
  ProgressBar no_stream(nullptr, /*enabled=*/true);  // no stream to write to: also a no-op
  no_stream.Update(State(1));
  no_stream.Finish();
}

TEST(ProgressBarTest, RedrawsInPlaceAndFinishesWithOneNewline) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(f, true, std::chrono::milliseconds(0));
    bar.Update(State(1024));
    bar.Update(State(2048));
    bar.Finish();
    bar.Finish();             // only once
    bar.Update(State(4096));  // ignored after Finish
  }                           // the destructor does not finish again
  EXPECT_EQ(ReadAll(f), Drawn(State(1024)) + Drawn(State(2048)) + Drawn(State(2048)) + "\n");
  std::fclose(f);
}

TEST(ProgressBarTest, RateLimitedButFinishShowsTheLatestState) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(f, true, std::chrono::hours(1));
    bar.Update(State(1024));  // the first update always draws
    bar.Update(State(2048));  // within the interval: not drawn
    bar.Update(State(3072));
  }  // the destructor finishes with the last state
  EXPECT_EQ(ReadAll(f), Drawn(State(1024)) + Drawn(State(3072)) + "\n");
  std::fclose(f);
}

TEST(ProgressBarTest, ClearErasesTheLineAndTheNextUpdateRedrawsAtOnce) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(f, true, std::chrono::hours(1));
    bar.Clear();  // nothing drawn yet: nothing to erase
    bar.Update(State(1024));
    bar.Clear();              // e.g. before a "level complete" line on stdout
    bar.Clear();              // already erased
    bar.Update(State(2048));  // redrawn despite the interval
  }
  EXPECT_EQ(ReadAll(f), Drawn(State(1024)) + "\r\x1b[K" + Drawn(State(2048)) + Drawn(State(2048)) + "\n");
  std::fclose(f);
}

TEST(ProgressBarTest, FinishWithoutUpdateWritesNothing) {
  char buf[256] = {};
  std::FILE* f = fmemopen(buf, sizeof(buf), "w");
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(f, true);
    bar.Finish();
  }
  std::fclose(f);
  EXPECT_STREQ(buf, "");
}

TEST(ProgressBarTest, WritesIntoMemoryStream) {
  char buf[512] = {};
  std::FILE* f = fmemopen(buf, sizeof(buf) - 1, "w");
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(f, true, std::chrono::milliseconds(0));
    bar.Update(State(4096));
  }
  std::fclose(f);
  EXPECT_EQ(std::string(buf), Drawn(State(4096)) + Drawn(State(4096)) + "\n");
}

TEST(ProgressBarTest, IsTerminal) {
  EXPECT_FALSE(ProgressBar::IsTerminal(nullptr));
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  EXPECT_FALSE(ProgressBar::IsTerminal(file));
  std::fclose(file);
  char buf[16];
  std::FILE* mem = fmemopen(buf, sizeof(buf), "w");
  ASSERT_NE(mem, nullptr);
  EXPECT_FALSE(ProgressBar::IsTerminal(mem));  // no file descriptor at all
  std::fclose(mem);

  // A pseudo-terminal is a terminal.
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    if (master >= 0) close(master);
    GTEST_SKIP() << "no pseudo-terminals here";
  }
  const char* name = ptsname(master);
  ASSERT_NE(name, nullptr);
  // O_NOCTTY: opening a terminal must not make it this process's controlling terminal.
  const int slave = open(name, O_WRONLY | O_NOCTTY);
  ASSERT_GE(slave, 0) << name;
  std::FILE* tty = fdopen(slave, "w");
  ASSERT_NE(tty, nullptr) << name;
  EXPECT_TRUE(ProgressBar::IsTerminal(tty));
  std::fclose(tty);
  close(master);
}

}  // namespace
}  // namespace flexgs::client

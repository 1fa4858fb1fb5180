#include "client/budget_spec.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace flexgs::client {
namespace {

// Sizes are used in uint64 arithmetic (sums, ratios) downstream; 4 EiB is far beyond
// any real budget, and the headroom keeps those sums from wrapping.
constexpr uint64_t kMaxBytes = uint64_t{1} << 62;

constexpr char kByteUnits[] = "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB";
constexpr char kRateUnits[] =
    "bit, kbit, Mbit, Gbit (also bps, kbps, Mbps, Gbps or bit/s, kbit/s, ...) or B/s, kB/s, MB/s, GB/s, KiB/s, "
    "MiB/s, GiB/s";

// Text as it appears in a message: quoted, with control characters escaped so that a
// stray byte cannot break the log line.
std::string Quote(absl::string_view text) { return absl::StrCat("'", absl::CHexEscape(text), "'"); }

absl::Status Invalid(absl::string_view label, absl::string_view text, absl::string_view problem,
                     absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(label, " ", Quote(text), ": ", problem, " (expected ", expected, ")"));
}

// Splits a leading unsigned decimal "<digits>[.<digits>]" (or ".<digits>") off `text`.
// No sign, exponent, "nan" or "inf": what users type for sizes and rates never needs
// them, and refusing them here rejects every non-finite or negative value by syntax.
// Returns false when `text` does not start with such a number.
bool SplitNumber(absl::string_view text, absl::string_view* int_digits, absl::string_view* frac_digits,
                 absl::string_view* rest) {
  size_t i = 0;
  while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) ++i;
  *int_digits = text.substr(0, i);
  *frac_digits = absl::string_view();
  if (i < text.size() && text[i] == '.') {
    const size_t frac_begin = ++i;
    while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) ++i;
    *frac_digits = text.substr(frac_begin, i - frac_begin);
  }
  if (int_digits->empty() && frac_digits->empty()) return false;
  *rest = absl::StripLeadingAsciiWhitespace(text.substr(i));  // "optional space" before the unit
  return true;
}

// Why `text` (already stripped) is not a number, for the message.
std::string NotANumberProblem(absl::string_view text) {
  if (text.empty()) return "empty";
  if (text[0] == '-') return "must not be negative";
  if (text[0] == '+') return "no sign allowed";
  const std::string lower = absl::AsciiStrToLower(text);
  if (absl::StartsWith(lower, "nan") || absl::StartsWith(lower, "inf")) return "not a finite number";
  return "not a number";
}

// "1e9": reported as such, not as the unknown unit "e9".
bool IsExponent(absl::string_view unit) {
  return unit.size() > 1 && (unit[0] == 'e' || unit[0] == 'E') &&
         (absl::ascii_isdigit(static_cast<unsigned char>(unit[1])) || unit[1] == '-' || unit[1] == '+');
}

// The error for text after a number that is not a known unit.
absl::Status BadUnit(absl::string_view label, absl::string_view text, absl::string_view unit, absl::string_view units,
                     absl::string_view expected) {
  if (IsExponent(unit)) return Invalid(label, text, "exponents are not supported", expected);
  return Invalid(label, text, absl::StrCat("unknown unit ", Quote(unit)), units);
}

// 'k', 'm', 'g', 't' (either case) -> 1, 2, 3, 4; anything else -> 0.
int SiPrefixPower(char c) {
  switch (absl::ascii_tolower(static_cast<unsigned char>(c))) {
    case 'k':
      return 1;
    case 'm':
      return 2;
    case 'g':
      return 3;
    case 't':
      return 4;
    default:
      return 0;
  }
}

uint64_t Pow(uint64_t base, int power) {
  uint64_t v = 1;
  for (int i = 0; i < power; ++i) v *= base;
  return v;
}

// Multiplier for a byte-size unit ("", B, kB/KB, ..., KiB, ...); false when unknown.
bool ByteUnitMultiplier(absl::string_view unit, uint64_t* multiplier) {
  if (unit.empty() || unit == "B") {
    *multiplier = 1;
    return true;
  }
  const int power = SiPrefixPower(unit[0]);
  if (power == 0) return false;
  if (unit.substr(1) == "B") {
    *multiplier = Pow(1000, power);
    return true;
  }
  if (unit.substr(1) == "iB") {
    *multiplier = Pow(1024, power);
    return true;
  }
  return false;
}

// Multiplier from a rate unit to bytes per second; false when unknown.
bool RateUnitMultiplier(absl::string_view unit, double* multiplier) {
  int power = 0;
  if (!unit.empty()) {
    power = SiPrefixPower(unit[0]);
    if (power == 4) return false;  // no Tbit or TB/s: no link this client throttles to is that fast
  }
  const absl::string_view base = power > 0 ? unit.substr(1) : unit;
  if (base == "bit" || base == "bps" || base == "bit/s") {
    *multiplier = static_cast<double>(Pow(1000, power)) / 8.0;
    return true;
  }
  if (base == "B/s") {
    *multiplier = static_cast<double>(Pow(1000, power));
    return true;
  }
  if (power > 0 && base == "iB/s") {
    *multiplier = static_cast<double>(Pow(1024, power));
    return true;
  }
  return false;
}

// floor((int_digits.frac_digits) * multiplier) exactly, without going through double
// (which would round "4611686018427387904" or "0.1 TiB"). false when above kMaxBytes.
bool ExactBytes(absl::string_view int_digits, absl::string_view frac_digits, uint64_t multiplier, uint64_t* out) {
  uint64_t whole = 0;
  for (char c : int_digits) {
    if (whole > kMaxBytes / 10) return false;  // checked before "* 10", which could wrap uint64
    whole = whole * 10 + static_cast<uint64_t>(c - '0');
    if (whole > kMaxBytes) return false;
  }
  if (whole > kMaxBytes / multiplier) return false;
  // floor(0.frac * multiplier) by schoolbook multiplication from the last digit: the
  // final carry is the integer part. Exact for any number of digits; the carry stays
  // below `multiplier` (<= 2^40), so nothing overflows.
  uint64_t carry = 0;
  for (size_t i = frac_digits.size(); i-- > 0;) {
    carry = (static_cast<uint64_t>(frac_digits[i] - '0') * multiplier + carry) / 10;
  }
  const uint64_t total = whole * multiplier + carry;
  if (total > kMaxBytes) return false;
  *out = total;
  return true;
}

absl::StatusOr<uint64_t> ParseByteSizeAs(absl::string_view text, absl::string_view label, absl::string_view expected) {
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  absl::string_view int_digits, frac_digits, unit;
  if (!SplitNumber(t, &int_digits, &frac_digits, &unit)) return Invalid(label, text, NotANumberProblem(t), expected);
  uint64_t multiplier = 0;
  if (!ByteUnitMultiplier(unit, &multiplier)) return BadUnit(label, text, unit, kByteUnits, expected);
  uint64_t bytes = 0;
  if (!ExactBytes(int_digits, frac_digits, multiplier, &bytes)) {
    return Invalid(label, text, "too large", "at most 2^62 bytes (4 EiB)");
  }
  return bytes;
}

// A decimal in the SplitNumber syntax as a double (locale-independent, unlike strtod).
bool DecimalToDouble(absl::string_view int_digits, absl::string_view frac_digits, double* out) {
  const std::string number = absl::StrCat(int_digits.empty() ? "0" : int_digits, ".", frac_digits, "0");
  return absl::SimpleAtod(number, out);
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  return ParseByteSizeAs(text, "size",
                         absl::StrCat("a non-negative number with an optional unit ", kByteUnits, ", e.g. 512MiB"));
}

absl::StatusOr<double> ParseBitRate(absl::string_view text) {
  constexpr absl::string_view kLabel = "--max-bandwidth";
  const std::string expected = absl::StrCat("a positive number and a unit ", kRateUnits, ", e.g. 10Mbit");
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  absl::string_view int_digits, frac_digits, unit;
  if (!SplitNumber(t, &int_digits, &frac_digits, &unit)) return Invalid(kLabel, text, NotANumberProblem(t), expected);
  // A bare number is ambiguous (bits or bytes?); a wrong guess is off by 8x.
  if (unit.empty()) return Invalid(kLabel, text, "missing unit", expected);
  double multiplier = 0;
  if (!RateUnitMultiplier(unit, &multiplier)) return BadUnit(kLabel, text, unit, kRateUnits, expected);
  double value = 0;
  if (!DecimalToDouble(int_digits, frac_digits, &value)) return Invalid(kLabel, text, "not a number", expected);
  const double rate = value * multiplier;
  if (!std::isfinite(rate)) return Invalid(kLabel, text, "too large", expected);
  if (!(rate > 0)) return Invalid(kLabel, text, "must be greater than 0", expected);
  return rate;
}

absl::StatusOr<BudgetSpec> ParseBudgetSpec(absl::string_view text) {
  constexpr absl::string_view kLabel = "--budget";
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  BudgetSpec spec;
  if (absl::EqualsIgnoreCase(t, "auto")) {
    spec.kind = BudgetSpec::Kind::kAuto;
    spec.auto_fraction = kDefaultAutoFraction;
    return spec;
  }
  if (absl::StartsWithIgnoreCase(t, "auto:")) {
    constexpr absl::string_view kExpected = "auto:<fraction> with 0 < fraction <= 1, e.g. auto:0.5 for half";
    const absl::string_view f = absl::StripAsciiWhitespace(t.substr(5));
    absl::string_view int_digits, frac_digits, rest;
    if (!SplitNumber(f, &int_digits, &frac_digits, &rest)) {
      return Invalid(kLabel, text, absl::StrCat("fraction ", Quote(f), ": ", NotANumberProblem(f)), kExpected);
    }
    if (!rest.empty()) {
      return Invalid(kLabel, text, absl::StrCat("unexpected ", Quote(rest), " after the fraction"), kExpected);
    }
    double fraction = 0;
    if (!DecimalToDouble(int_digits, frac_digits, &fraction) || !(fraction > 0) || !(fraction <= 1)) {
      return Invalid(kLabel, text, absl::StrCat("fraction ", Quote(f), " is outside (0, 1]"), kExpected);
    }
    spec.kind = BudgetSpec::Kind::kAuto;
    spec.auto_fraction = fraction;
    return spec;
  }
  auto bytes = ParseByteSizeAs(
      text, kLabel,
      absl::StrCat("a byte size with an optional unit ", kByteUnits, " (e.g. 512MiB), 'auto' or 'auto:<fraction>'"));
  if (!bytes.ok()) return bytes.status();
  // A zero budget can hold no level; say so here rather than after connecting.
  if (*bytes == 0) return Invalid(kLabel, text, "must be greater than 0 bytes", "e.g. 512MiB or auto");
  spec.kind = BudgetSpec::Kind::kBytes;
  spec.bytes = *bytes;
  return spec;
}

absl::StatusOr<MemoryProbe> ProbeHostMemory(const std::string& meminfo_path) {
  std::ifstream in(meminfo_path);
  if (!in) {
    const int err = errno;  // capture before anything else can change it
    return absl::UnavailableError(
        absl::StrCat("cannot read ", meminfo_path, ": ", err != 0 ? std::strerror(err) : "open failed"));
  }
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "MemAvailable:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    const size_t space = rest.find_first_of(" \t");
    const absl::string_view number = rest.substr(0, space);
    const absl::string_view unit =
        space == absl::string_view::npos ? absl::string_view() : absl::StripLeadingAsciiWhitespace(rest.substr(space));
    uint64_t kib = 0;
    // The kernel always writes "kB", meaning KiB; anything else is not a meminfo we understand.
    if (unit != "kB" || number.empty() || number[0] == '-' || number[0] == '+' || !absl::SimpleAtoi(number, &kib)) {
      return absl::UnavailableError(
          absl::StrCat("cannot parse ", Quote(line), " in ", meminfo_path, " (expected 'MemAvailable: <number> kB')"));
    }
    if (kib > std::numeric_limits<uint64_t>::max() / 1024) {
      return absl::UnavailableError(
          absl::StrCat("MemAvailable in ", meminfo_path, " is implausibly large: ", Quote(line)));
    }
    return MemoryProbe{kib * 1024, absl::StrCat("host:", meminfo_path)};
  }
  return absl::UnavailableError(
      absl::StrCat("no MemAvailable line in ", meminfo_path, " (Linux reports it since 3.14)"));
}

absl::StatusOr<uint64_t> AutoBudgetBytes(const MemoryProbe& probe, double fraction) {
  if (!(fraction > 0) || !(fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("auto budget fraction ", fraction, " is outside (0, 1]"));
  }
  if (fraction == 1) return probe.available_bytes;  // exact even above 2^53
  // long double keeps the product exact enough that the result never exceeds the input.
  const long double product = static_cast<long double>(fraction) * static_cast<long double>(probe.available_bytes);
  return static_cast<uint64_t>(std::floor(product));
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  double value = static_cast<double>(bytes) / 1024.0;
  // Move up while the value would print as 1024.0 or more (1048575 B is "1.0 MiB", not "1024.0 KiB").
  while (unit + 1 < static_cast<int>(std::size(kUnits)) && value >= 1023.95) {
    value /= 1024.0;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

}  // namespace flexgs::client

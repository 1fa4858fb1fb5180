// Client-supplied strings (scene ids, resume tokens, anything a request carries)
// made safe to put in a log line or a gRPC status message, and a throttle for
// log lines a client can trigger at will.
//
// EscapeClientString keeps printable ASCII (0x20..0x7e) except '\' as it is and
// writes every other byte as an escape ("\n", "\r", "\t", "\\", else "\xNN"), so
// a newline cannot forge a log line and ESC or NUL never reach a terminal. Only the
// first `max_bytes` input bytes are kept; a longer string ends in "...(N bytes)"
// with its full length. The result is at most 4 * max_bytes + 24 bytes long.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace flexgs::server {

// How much of a client string logs and status messages show.
inline constexpr size_t kClientStringPrefixBytes = 64;

std::string EscapeClientString(std::string_view s, size_t max_bytes = kClientStringPrefixBytes);

// A token bucket for log lines: `burst` lines at once, then `per_second`.
// Allow() says whether this line may be written and, when it may, how many lines
// were dropped since the last one written (to be logged with it).
// per_second <= 0: every line is allowed.
class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  LogThrottle(double per_second, double burst, std::function<Clock::time_point()> now = {});

  bool Allow(uint64_t* suppressed);

 private:
  const double rate_, burst_;
  const std::function<Clock::time_point()> now_;
  std::mutex mu_;
  double tokens_;
  Clock::time_point last_;
  uint64_t suppressed_ = 0;
};

}  // namespace flexgs::server

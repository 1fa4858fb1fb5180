// TokenBucket: limits how fast the client *consumes* the stream.
//
// The client asks for tokens before taking each message off the gRPC stream; while it
// waits, gRPC's HTTP/2 flow-control window fills and the server's writes block, so a
// slow reader throttles the sender end to end. That lets one machine show progressive
// delivery over a slow link (--max-bandwidth 10Mbit) without a real one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace flexgs::client {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // rate_bytes_per_s > 0; burst_bytes >= 1 is the most that may pass at once after an
  // idle period (the bucket starts full). `sleep` defaults to std::this_thread::sleep_for
  // and `now` to Clock::now; tests inject fakes.
  TokenBucket(double rate_bytes_per_s, double burst_bytes, std::function<void(Clock::duration)> sleep = {},
              std::function<Clock::time_point()> now = {});

  // Blocks until `bytes` tokens are available, then takes them. A request larger than
  // the burst is allowed and leaves the bucket in debt (the next call waits it off), so
  // the long-run rate holds for any message size. Returns the time spent waiting.
  Clock::duration Acquire(uint64_t bytes);

  double rate() const { return rate_; }

 private:
  double rate_, burst_, tokens_;
  Clock::time_point last_;
  std::function<void(Clock::duration)> sleep_;
  std::function<Clock::time_point()> now_;
};

}  // namespace flexgs::client

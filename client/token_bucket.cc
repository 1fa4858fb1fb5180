#include "client/token_bucket.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <utility>

namespace flexgs::client {

TokenBucket::TokenBucket(double rate_bytes_per_s, double burst_bytes, std::function<void(Clock::duration)> sleep,
                         std::function<Clock::time_point()> now)
    : rate_(rate_bytes_per_s),
      // NaN or < 1 would make a bucket that can never fill; one byte is the smallest useful burst.
      burst_(burst_bytes >= 1 ? burst_bytes : 1),
      tokens_(burst_),
      sleep_(sleep ? std::move(sleep) : [](Clock::duration d) { std::this_thread::sleep_for(d); }),
      now_(now ? std::move(now) : [] { return Clock::now(); }) {
  last_ = now_();
}

TokenBucket::Clock::duration TokenBucket::Acquire(uint64_t bytes) {
  // Nothing to pay for, so never wait, not even off an existing debt.
  if (bytes == 0) return Clock::duration::zero();
  // The caller validates the rate (ParseBitRate); a rate that cannot be divided by, or an
  // infinite one, means "no limit" rather than a division by zero or an endless sleep.
  if (!(rate_ > 0) || std::isinf(rate_)) return Clock::duration::zero();

  // Refill for the time since the last call; idle time beyond a full bucket is lost,
  // which is what bounds a burst.
  const Clock::time_point t = now_();
  if (t > last_) {
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(t - last_).count() * rate_);
    last_ = t;
  }

  // A request above the burst could never see that many tokens, so it waits for a full
  // bucket and goes into debt for the rest; the next call pays the debt off.
  const double need = std::min(static_cast<double>(bytes), burst_);
  Clock::duration waited = Clock::duration::zero();
  if (tokens_ < need) {
    const double seconds = (need - tokens_) / rate_;
    // Round up to the clock's tick so the wait is never short of the tokens it must buy.
    waited = std::chrono::ceil<Clock::duration>(std::chrono::duration<double>(seconds));
    sleep_(waited);
    // Credit exactly the time slept and move the refill point past it. If the real sleep
    // ran long, the next refill credits the extra; if it returned early (or a fake clock
    // did not move), `last_` is ahead of the clock and nothing is credited twice. Either
    // way the long-run rate follows from the schedule, not from sleep accuracy.
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(waited).count() * rate_);
    last_ += waited;
  }
  tokens_ -= static_cast<double>(bytes);
  return waited;
}

}  // namespace flexgs::client

// PeerRateLimiter: how fast each client address may start new streams (--stream-rate,
// --stream-burst). One token bucket per address: `burst` tokens when first seen,
// refilled at `rate_per_s`, one taken per admitted stream.
//
// Memory is bounded: buckets are kept in least-recently-used order, and one idle for
// burst / rate seconds is full again -- the same as a peer never seen -- so it is
// dropped without changing any decision. If `max_peers` addresses are all active at
// once, the least recently used one is dropped (it starts over with a full bucket):
// whoever controls that many addresses could open that many streams anyway.
//
// Keyed by address only (PeerAddress): a client's new connections get new ports. Behind
// a proxy every call comes from the proxy's address, so limit there instead.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace flexgs::server {

class PeerRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kDefaultMaxPeers = 65536;

  // rate_per_s > 0, burst >= 1, max_peers >= 1. `now` defaults to Clock::now (tests
  // inject a fake clock).
  PeerRateLimiter(double rate_per_s, double burst, size_t max_peers = kDefaultMaxPeers,
                  std::function<Clock::time_point()> now = {});

  // Takes a token from `peer`'s bucket and returns true, or returns false (taking
  // nothing) and sets `*retry_after` to when the next token will be there (>= 1 ms).
  bool TryAcquire(const std::string& peer, std::chrono::milliseconds* retry_after);

  size_t tracked_peers() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last;
    std::list<std::string>::iterator lru;  // position in lru_
  };

  const double rate_, burst_;
  const size_t max_peers_;
  const Clock::duration refill_;  // time from empty to full
  const std::function<Clock::time_point()> now_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  std::list<std::string> lru_;  // least recently used first
};

// PeerStreamLimiter: how many streams each client may hold at once
// (--max-streams-per-peer). A count per key (the server's key is the client address,
// plus the token when tokens are on); a key is forgotten when its count returns to
// zero, so the map never holds more keys than there are admitted streams.
class PeerStreamLimiter {
 public:
  explicit PeerStreamLimiter(int max_per_peer);  // >= 1

  // Counts one more stream for `key` and returns true, or returns false (counting
  // nothing) when `key` already holds max_per_peer.
  bool TryAcquire(const std::string& key);
  // Undoes one successful TryAcquire.
  void Release(const std::string& key);

  int max_per_peer() const { return max_; }
  int count(const std::string& key) const;
  size_t tracked_peers() const;

 private:
  const int max_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> counts_;
};

// The address part of a gRPC peer string: "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7",
// "ipv6:[::1]:5" (or its %5B...%5D form) -> "ipv6:[::1]"; other forms ("unix:...")
// are returned unchanged.
std::string PeerAddress(std::string_view peer);

}  // namespace flexgs::server

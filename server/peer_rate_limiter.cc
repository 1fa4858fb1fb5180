#include "server/peer_rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace flexgs::server {

PeerRateLimiter::PeerRateLimiter(double rate_per_s, double burst, size_t max_peers,
                                 std::function<Clock::time_point()> now)
    : rate_(rate_per_s),
      burst_(std::max(1.0, burst)),
      max_peers_(std::max<size_t>(1, max_peers)),
      refill_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(burst_ / rate_))),
      now_(now ? std::move(now) : [] { return Clock::now(); }) {}

bool PeerRateLimiter::TryAcquire(const std::string& peer, std::chrono::milliseconds* retry_after) {
  const Clock::time_point now = now_();
  std::lock_guard<std::mutex> lock(mu_);
  // Buckets idle long enough to be full again carry no information: drop them.
  while (!lru_.empty()) {
    auto it = buckets_.find(lru_.front());
    if (now - it->second.last < refill_) break;
    buckets_.erase(it);
    lru_.pop_front();
  }
  auto it = buckets_.find(peer);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_peers_) {
      buckets_.erase(lru_.front());
      lru_.pop_front();
    }
    lru_.push_back(peer);
    Bucket fresh;
    fresh.tokens = burst_;
    fresh.last = now;
    fresh.lru = std::prev(lru_.end());
    it = buckets_.emplace(peer, fresh).first;
  } else {
    lru_.splice(lru_.end(), lru_, it->second.lru);
  }
  Bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.last).count();
  if (elapsed > 0) b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
  b.last = std::max(b.last, now);
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  const double wait_ms = std::ceil((1.0 - b.tokens) / rate_ * 1000.0);
  *retry_after = std::chrono::milliseconds(static_cast<int64_t>(std::max(1.0, wait_ms)));
  return false;
}

size_t PeerRateLimiter::tracked_peers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buckets_.size();
}

std::string PeerAddress(std::string_view peer) {
  const bool v4 = peer.substr(0, 5) == "ipv4:";
  const bool v6 = peer.substr(0, 5) == "ipv6:";
  if (!v4 && !v6) return std::string(peer);
  const size_t colon = peer.rfind(':');
  if (colon <= 4 || colon + 1 == peer.size()) return std::string(peer);
  for (size_t i = colon + 1; i < peer.size(); ++i) {
    if (peer[i] < '0' || peer[i] > '9') return std::string(peer);
  }
  std::string host(peer.substr(0, colon));
  // gRPC percent-encodes the brackets of IPv6 peers in some versions.
  if (v6) {
    for (auto [from, to] : {std::pair<std::string_view, char>{"%5B", '['}, {"%5D", ']'}}) {
      for (size_t p = host.find(from); p != std::string::npos; p = host.find(from)) host.replace(p, 3, 1, to);
    }
  }
  return host;
}

PeerStreamLimiter::PeerStreamLimiter(int max_per_peer) : max_(max_per_peer) {}

bool PeerStreamLimiter::TryAcquire(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  int& n = counts_[key];
  if (n >= max_) {
    if (n == 0) counts_.erase(key);
    return false;
  }
  ++n;
  return true;
}

void PeerStreamLimiter::Release(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(key);
  if (it == counts_.end()) return;
  if (--it->second <= 0) counts_.erase(it);
}

int PeerStreamLimiter::count(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

size_t PeerStreamLimiter::tracked_peers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_.size();
}

}  // namespace flexgs::server

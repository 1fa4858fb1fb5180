#include "server/log_escape.h"

#include <algorithm>

namespace flexgs::server {

std::string EscapeClientString(std::string_view s, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const size_t keep = std::min(s.size(), max_bytes);
  std::string out;
  out.reserve(keep + 16);
  for (size_t i = 0; i < keep; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        }
    }
  }
  if (keep < s.size()) {
    out += "...(";
    out += std::to_string(s.size());
    out += " bytes)";
  }
  return out;
}

LogThrottle::LogThrottle(double per_second, double burst, std::function<Clock::time_point()> now)
    : rate_(per_second),
      burst_(std::max(1.0, burst)),
      now_(now ? std::move(now) : [] { return Clock::now(); }),
      tokens_(burst_),
      last_(now_()) {}

bool LogThrottle::Allow(uint64_t* suppressed) {
  *suppressed = 0;
  if (rate_ <= 0) return true;
  std::lock_guard<std::mutex> lock(mu_);
  const Clock::time_point t = now_();
  tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(t - last_).count());
  last_ = t;
  if (tokens_ < 1.0) {
    ++suppressed_;
    return false;
  }
  tokens_ -= 1.0;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

}  // namespace flexgs::server

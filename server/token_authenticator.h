// TokenAuthenticator: bearer tokens and the scenes each one may read. No transport:
// SceneService hands it the call's `authorization` metadata and a scene id.
//
// Tokens file (--tokens-file), one grant per line, '#' starts a comment line:
//   TOKEN SCENE[,SCENE...]    the token may read exactly these scene ids
//   TOKEN *                   the token may read every scene
// FLEXGS_TOKENS holds the same entries inline, separated by ';' (or newlines):
//   FLEXGS_TOKENS='kiosk-7f3a9c2e41d8b605 guitar,room; ops-2b8e0d6c91a4f357 *'
// A token is 16 to 4096 characters of RFC 6750's token68 alphabet
// ([A-Za-z0-9-._~+/], then optional '=' padding), so it can travel in a header and
// is not trivially guessable. Bad entries are errors naming the file and line (or the
// entry number), never the token.
//
// Only SHA-256 digests of the tokens are kept. A lookup hashes the presented token
// and compares it with every digest in constant time (CRYPTO_memcmp, no early exit),
// so neither the comparison nor the position of a match shows in the timing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flexgs::server {

// What one token may read.
struct TokenGrant {
  bool all_scenes = false;       // "*"
  std::set<std::string> scenes;  // otherwise exactly these ids

  bool Allows(const std::string& scene_id) const { return all_scenes || scenes.count(scene_id) > 0; }
};

class TokenAuthenticator {
 public:
  // Parses a tokens file's text; `path` names it in errors ("PATH:LINE: ...").
  static absl::StatusOr<TokenAuthenticator> ParseFile(std::string_view text, const std::string& path);
  // Parses FLEXGS_TOKENS' value ("FLEXGS_TOKENS entry N: ..." in errors).
  static absl::StatusOr<TokenAuthenticator> ParseInline(std::string_view text);
  // Reads and parses a tokens file (NOT_FOUND / PERMISSION_DENIED when unreadable).
  static absl::StatusOr<TokenAuthenticator> FromFile(const std::string& path);

  // The grant of the token in an `authorization` metadata value, "Bearer <token>"
  // (scheme case-insensitive). UNAUTHENTICATED when the value is missing (nullopt),
  // malformed or an unknown token; the message never contains the token.
  absl::StatusOr<const TokenGrant*> Authenticate(std::optional<std::string_view> authorization) const;

  // OK when `grant` allows `scene_id`, else PERMISSION_DENIED with a message that
  // does not depend on the scene (so it cannot tell whether the scene exists).
  static absl::Status CheckScene(const TokenGrant& grant, const std::string& scene_id);

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::array<uint8_t, 32> digest;
    TokenGrant grant;
  };
  enum class Layout { kLines, kInline };
  static absl::StatusOr<TokenAuthenticator> Parse(std::string_view text, Layout layout, const std::string& source);

  std::vector<Entry> entries_;
};

// The server's tokens: from `tokens_file` (--tokens-file) or `inline_tokens` (the
// value of FLEXGS_TOKENS; null or empty: unset). Null when neither is given
// (authentication off); INVALID_ARGUMENT when both are.
absl::StatusOr<std::shared_ptr<const TokenAuthenticator>> LoadTokenAuthenticator(const std::string& tokens_file,
                                                                                 const char* inline_tokens);

}  // namespace flexgs::server

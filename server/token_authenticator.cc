#include "server/token_authenticator.h"

#include <openssl/crypto.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/sha256.h"

namespace flexgs::server {
namespace {

constexpr size_t kMinTokenChars = 16;
constexpr size_t kMaxTokenChars = 4096;
// A tokens file is a few lines per client; anything this large is a wrong path.
constexpr uint64_t kMaxTokensFileBytes = 16 << 20;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Splits at runs of spaces/tabs.
std::vector<std::string_view> Fields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsSpace(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !IsSpace(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool IsToken68Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/';
}

// RFC 6750 b64token / RFC 7235 token68: 1*( ALPHA / DIGIT / "-._~+/" ) *"=".
bool IsToken68(std::string_view t) {
  size_t i = 0;
  while (i < t.size() && IsToken68Char(t[i])) ++i;
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

// Why `token` cannot be a token, or "" when it can. Never includes the token.
std::string TokenProblem(std::string_view token) {
  if (token.size() < kMinTokenChars) {
    return absl::StrCat("token is ", token.size(), " characters; at least ", kMinTokenChars, " are required");
  }
  if (token.size() > kMaxTokenChars) return absl::StrCat("token is longer than ", kMaxTokenChars, " characters");
  if (!IsToken68(token)) return "token may only contain A-Z a-z 0-9 - . _ ~ + / (then '=' padding)";
  return "";
}

std::array<uint8_t, 32> Digest(std::string_view token) {
  Sha256 h;
  h.Update(token);
  return h.Finish();
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = (a[i] >= 'A' && a[i] <= 'Z') ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    const char y = (b[i] >= 'A' && b[i] <= 'Z') ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
    if (x != y) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::Parse(std::string_view text, Layout layout,
                                                             const std::string& source) {
  TokenAuthenticator out;
  std::vector<size_t> entry_number;  // where each kept entry was, for duplicate errors
  size_t number = 0;
  while (true) {
    const size_t end = layout == Layout::kLines ? text.find('\n') : text.find_first_of(";\n");
    const std::string_view raw = text.substr(0, end);
    ++number;
    const std::string where =
        layout == Layout::kLines ? absl::StrCat(source, ":", number) : absl::StrCat(source, " entry ", number);
    const std::string_view entry = Trim(raw);
    if (!entry.empty() && entry.front() != '#') {
      const std::vector<std::string_view> fields = Fields(entry);
      if (fields.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": expected 'TOKEN SCENE[,SCENE...]' or 'TOKEN *', found ", fields.size(), " field(s)"));
      }
      if (std::string problem = TokenProblem(fields[0]); !problem.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", problem));
      }
      Entry e;
      e.digest = Digest(fields[0]);
      if (fields[1] == "*") {
        e.grant.all_scenes = true;
      } else {
        std::string_view list = fields[1];
        while (true) {
          const size_t comma = list.find(',');
          const std::string_view scene = list.substr(0, comma);
          if (scene.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty scene id in the list"));
          if (scene == "*") {
            return absl::InvalidArgumentError(absl::StrCat(where, ": '*' must stand alone (it means every scene)"));
          }
          e.grant.scenes.emplace(scene);
          if (comma == std::string_view::npos) break;
          list.remove_prefix(comma + 1);
        }
      }
      for (size_t i = 0; i < out.entries_.size(); ++i) {
        if (out.entries_[i].digest == e.digest) {
          return absl::InvalidArgumentError(absl::StrCat(where, ": the same token as ",
                                                         layout == Layout::kLines ? "line " : "entry ", entry_number[i],
                                                         "; give each token one line"));
        }
      }
      out.entries_.push_back(std::move(e));
      entry_number.push_back(number);
    }
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  if (out.entries_.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": no tokens"));
  return out;
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::ParseFile(std::string_view text, const std::string& path) {
  return Parse(text, Layout::kLines, path);
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::ParseInline(std::string_view text) {
  return Parse(text, Layout::kInline, "FLEXGS_TOKENS");
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromFile(const std::string& path) {
  auto text = ReadFileToString(path, kMaxTokensFileBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("tokens file: ", text.status().message()));
  }
  return ParseFile(*text, path);
}

absl::StatusOr<const TokenGrant*> TokenAuthenticator::Authenticate(
    std::optional<std::string_view> authorization) const {
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError("missing bearer token: send the metadata 'authorization: Bearer <token>'");
  }
  std::string_view value = Trim(*authorization);
  const size_t space = value.find_first_of(" \t");
  if (space == std::string_view::npos || !EqualsIgnoreCase(value.substr(0, space), "bearer")) {
    return absl::UnauthenticatedError("authorization metadata is not 'Bearer <token>'");
  }
  const std::string_view token = Trim(value.substr(space + 1));
  if (token.empty()) return absl::UnauthenticatedError("authorization metadata is not 'Bearer <token>'");
  const std::array<uint8_t, 32> digest = Digest(token);
  // Every digest is compared, and the match is selected without a branch, so the time
  // taken does not depend on which entry (if any) matched.
  size_t found = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const size_t equal = static_cast<size_t>(CRYPTO_memcmp(entries_[i].digest.data(), digest.data(), 32) == 0);
    const size_t mask = ~(equal - 1);  // all ones when equal
    found = (i & mask) | (found & ~mask);
  }
  if (found == entries_.size()) return absl::UnauthenticatedError("unknown bearer token");
  return &entries_[found].grant;
}

absl::Status TokenAuthenticator::CheckScene(const TokenGrant& grant, const std::string& scene_id) {
  if (grant.Allows(scene_id)) return absl::OkStatus();
  return absl::PermissionDeniedError("this token does not grant access to the requested scene");
}

absl::StatusOr<std::shared_ptr<const TokenAuthenticator>> LoadTokenAuthenticator(const std::string& tokens_file,
                                                                                 const char* inline_tokens) {
  const bool have_inline = inline_tokens != nullptr && *inline_tokens != '\0';
  if (!tokens_file.empty() && have_inline) {
    return absl::InvalidArgumentError("give the tokens in --tokens-file or in FLEXGS_TOKENS, not both");
  }
  if (tokens_file.empty() && !have_inline) return std::shared_ptr<const TokenAuthenticator>();
  auto parsed =
      have_inline ? TokenAuthenticator::ParseInline(inline_tokens) : TokenAuthenticator::FromFile(tokens_file);
  if (!parsed.ok()) return parsed.status();
  return std::make_shared<const TokenAuthenticator>(*std::move(parsed));
}

}  // namespace flexgs::server

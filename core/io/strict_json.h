// What nlohmann::json lets through silently when it reads untrusted JSON.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace flexgs {

// Finds the first key that a JSON object repeats. nlohmann keeps the last value of a
// repeated key, so a file could say one thing to us and another to a reader that keeps
// the first; the formats read here reject it instead. Feed it the events of a callback
// parse, after any checks of one's own:
//
//   RepeatedKeyFinder keys;
//   json j = json::parse(text, [&](int, json::parse_event_t e, json& v) { return keys.Observe(e, v); });
//   if (!keys.repeated().empty()) ...
class RepeatedKeyFinder {
 public:
  // Records the keys of every open object. Always true: the element is kept.
  bool Observe(nlohmann::json::parse_event_t event, const nlohmann::json& parsed);

  // The first key found twice in one object, or "" if none was.
  const std::string& repeated() const { return repeated_; }

 private:
  std::vector<std::set<std::string>> open_objects_;
  std::string repeated_;
};

// Parses untrusted JSON text: at most `max_depth` levels of nesting (the parser builds
// nothing below; deeper input is refused, not recursed into) and no key repeated in an
// object. INVALID_ARGUMENT saying which rule failed, or nlohmann's parse error.
absl::StatusOr<nlohmann::json> ParseJsonStrict(std::string_view text, int max_depth);

}  // namespace flexgs
